"""Reading onnxruntime's session profile (the JSON ``end_profiling`` writes).

Each executed node appears as a ``Node`` event named ``<node>_kernel_time`` with its op type, the
execution provider that ran it, and its input/output types. ``ts`` (microseconds) is relative to
``get_profiling_start_time_ns()``, which shares the clock of ``time.time_ns()`` (and CUPTI's): so
each node run becomes an absolute host interval that kernel launches can be matched against.
On the CUDA EP ``dur`` is the host's time to launch the node, not its GPU time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profilers._errors import ProfilingError

_KERNEL_SUFFIX = "_kernel_time"


@dataclass(frozen=True)
class NodeRun:
    """One execution of one node, as the profiler saw it on the host."""

    name: str
    op_type: str
    provider: str
    start_ns: int
    end_ns: int
    thread_id: int
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]


def _types(type_shapes: Any) -> tuple[str, ...]:
    # [{"float": [2, 3]}, {"int64": [2]}] -> ("float", "int64")
    if not isinstance(type_shapes, list):
        return ()
    return tuple(next(iter(entry)) for entry in type_shapes if isinstance(entry, dict) and entry)


def node_runs(events: list[dict[str, Any]], profiling_start_ns: int) -> list[NodeRun]:
    """Every node execution in the profile, ordered by start time."""
    runs = []
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith(_KERNEL_SUFFIX):
            continue
        args = event.get("args", {})
        start = profiling_start_ns + int(event["ts"]) * 1000
        runs.append(
            NodeRun(
                name=event["name"][: -len(_KERNEL_SUFFIX)],
                op_type=str(args.get("op_name", "")),
                provider=str(args.get("provider", "")),
                start_ns=start,
                end_ns=start + int(event.get("dur", 0)) * 1000,
                thread_id=int(event.get("tid", 0)),
                input_types=_types(args.get("input_type_shape")),
                output_types=_types(args.get("output_type_shape")),
            )
        )
    runs.sort(key=lambda r: r.start_ns)
    return runs


def model_run_intervals(
    events: list[dict[str, Any]], profiling_start_ns: int
) -> list[tuple[int, int]]:
    """(start, end) of every ``session.run`` in the profile, in order."""
    intervals = [
        (
            profiling_start_ns + int(e["ts"]) * 1000,
            profiling_start_ns + (int(e["ts"]) + int(e.get("dur", 0))) * 1000,
        )
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    ]
    return sorted(intervals)


def node_runs_of_last_model_runs(
    events: list[dict[str, Any]], profiling_start_ns: int, count: int
) -> list[NodeRun]:
    """The node runs of the last ``count`` model runs (the profiled ones, after warm-up)."""
    intervals = model_run_intervals(events, profiling_start_ns)
    if len(intervals) < count:
        raise ProfilingError(
            f"onnxruntime's profile holds {len(intervals)} runs, expected at least {count} "
            "(its event limit may have been reached)"
        )
    window_start = intervals[-count][0]
    return [r for r in node_runs(events, profiling_start_ns) if r.start_ns >= window_start]


def end_and_read_profile(session: Any) -> tuple[list[dict[str, Any]], int]:
    """Stops the session's profiler; returns its events and start time, and removes the file."""
    start_ns = int(session.get_profiling_start_time_ns())
    path = Path(session.end_profiling())
    try:
        events = json.loads(path.read_text())
    finally:
        path.unlink(missing_ok=True)
    return events, start_ns
