"""Runs a converted model once on the CUDA EP with onnxruntime's profiler on, and reports where
each node ran: the conversion's promise is that no compute node falls back to the CPU."""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np
import onnx


def cuda_placement(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[Any, list]:
    """(PlacementReport, outputs) of one profiled run of ``model`` on the CUDA EP, TF32 off."""
    from profilers import feeds_for_inputs, graph_inputs
    from profilers._ort_profile import end_and_read_profile, node_runs
    from profilers._placement import placement_from_node_runs
    from profilers._sessions import SessionConfig, build_session

    with tempfile.TemporaryDirectory(prefix="amptune-placement-") as folder:
        session = build_session(model, SessionConfig(device="cuda", use_tf32=False),
                                profile_prefix=f"{folder}/profile")
        fed = {value.name: feeds[value.name] for value in session.get_inputs()}
        (typed_feeds,) = feeds_for_inputs([fed], graph_inputs(model))
        outputs = session.run(None, typed_feeds)
        events, start_ns = end_and_read_profile(session)
    return placement_from_node_runs(node_runs(events, start_ns), "cuda"), outputs
