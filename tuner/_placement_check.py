"""Runs a converted model once on the CUDA EP with onnxruntime's profiler on, and reports where
each node ran: the conversion's promise is that no compute node falls back to the CPU."""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np
import onnx


def cuda_placement(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[Any, list]:
    """(PlacementReport, outputs) of one profiled run of ``model`` on the CUDA EP, TF32 off."""
    from profilers._ort_profile import end_and_read_profile, node_runs
    from profilers._placement import placement_from_node_runs
    from profilers._sessions import SessionConfig, build_session

    with tempfile.TemporaryDirectory(prefix="amptune-placement-") as folder:
        session = build_session(model, SessionConfig(device="cuda", use_tf32=False),
                                profile_prefix=f"{folder}/profile")
        typed_feeds = {}
        for value in session.get_inputs():
            array = feeds[value.name]
            if value.type == "tensor(float16)":
                array = array.astype(np.float16)
            typed_feeds[value.name] = array
        outputs = session.run(None, typed_feeds)
        events, start_ns = end_and_read_profile(session)
    return placement_from_node_runs(node_runs(events, start_ns), "cuda"), outputs
