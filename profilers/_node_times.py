"""Per-node time reports, and how device work is tied to nodes (pure functions of recorded data).

On the CUDA EP, onnxruntime's profiler gives each node run a host interval (when it launched its
work); CUPTI gives each kernel, memcpy and memset its device time and the correlation id of the
runtime or driver API call that launched it, with that call's host time. A GPU activity belongs to
the node whose host interval holds its launch call. On the CPU EP a node's profiled duration is its
compute time. Times are summed per node and per op type (Casts included) and divided by the number
of inferences. The sum is compared with the event-timed (or perf_counter) total of the same runs:
on a GPU, idle gaps between kernels make up the difference, so a sum far below it says the model is
launch-bound.

Node names are those of the graph onnxruntime executed: after its fusions a node may stand for
several ONNX nodes (e.g. ``Conv`` + ``Relu`` as one ``FusedConv``).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from profilers._cupti_trace import ApiCall, GpuActivity
from profilers._errors import ProfilingError
from profilers._ort_profile import NodeRun

# onnxruntime's profile has microsecond timestamps (truncated): allow that much slack at the end.
INTERVAL_SLACK_NS = 2_000


@dataclass(frozen=True)
class NodeTime:
    name: str
    op_type: str
    provider: str
    time_ms: float  # per inference
    activities: float  # GPU: kernels, copies and memsets per inference; CPU: node runs
    share: float  # of the attributed time


@dataclass(frozen=True)
class OpTypeTime:
    op_type: str
    time_ms: float
    nodes: int
    share: float


@dataclass(frozen=True)
class PerNodeReport:
    """Time per node and per op type, per inference, from one clock.

    ``clock`` is ``cupti-gpu`` (device time of the node's kernels) or ``ort-profiler-cpu`` (host
    compute time on the CPU EP). ``profiled_total_ms`` is the per-inference total of the profiled
    runs from the timer (CUDA events or perf_counter); onnxruntime's profiler slows the host, so
    on a GPU those runs can leave the device idle. ``event_total_ms`` is the latency measurement's
    median without the profiler, when the caller has one (:meth:`with_event_total`): the sum is
    judged against it.
    """

    clock: str
    inferences: int
    nodes: tuple[NodeTime, ...]
    op_types: tuple[OpTypeTime, ...]
    attributed_ms: float
    unattributed_ms: float
    profiled_total_ms: float | None = None
    event_total_ms: float | None = None

    def with_event_total(self, total_ms: float) -> PerNodeReport:
        return replace(self, event_total_ms=total_ms)

    @property
    def measured_total_ms(self) -> float | None:
        """The total the per-node sum is judged against: unprofiled if known, else profiled."""
        return self.event_total_ms if self.event_total_ms is not None else self.profiled_total_ms

    def ratio_to(self, total_ms: float) -> float:
        """Attributed per-node sum over a measured total (1.0: all of it accounted for)."""
        return self.attributed_ms / total_ms if total_ms > 0 else float("nan")

    @property
    def warnings(self) -> tuple[str, ...]:
        warnings = []
        if self.unattributed_ms > 0.05 * max(self.attributed_ms, 1e-9):
            warnings.append(
                f"{self.unattributed_ms:.3f} ms per inference of device work could not be tied "
                "to a node (launched outside every node's host interval)"
            )
        total = self.measured_total_ms
        if total and abs(self.attributed_ms / total - 1.0) > 0.10:
            warnings.append(
                f"the per-node sum ({self.attributed_ms:.3f} ms) is "
                f"{self.attributed_ms / total:.0%} of the measured total ({total:.3f} ms)"
                + (": the GPU idles between kernels (launch-bound)"
                   if self.clock == "cupti-gpu" and self.attributed_ms < total else "")
            )
        return tuple(warnings)

    def op_type_time(self, op_type: str) -> float:
        return sum(o.time_ms for o in self.op_types if o.op_type == op_type)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "inferences": self.inferences,
            "attributed_ms": self.attributed_ms,
            "unattributed_ms": self.unattributed_ms,
            "profiled_total_ms": self.profiled_total_ms,
            "event_total_ms": self.event_total_ms,
            "sum_over_profiled_total": (
                self.ratio_to(self.profiled_total_ms) if self.profiled_total_ms else None
            ),
            "sum_over_event_total": (
                self.ratio_to(self.event_total_ms) if self.event_total_ms else None
            ),
            "op_types": [o.__dict__ for o in self.op_types],
            "nodes": [n.__dict__ for n in self.nodes],
            "warnings": list(self.warnings),
        }


def _report(
    clock: str,
    per_node_ns: dict[str, int],
    counts: dict[str, int],
    meta: dict[str, NodeRun],
    unattributed_ns: int,
    inferences: int,
    profiled_total_ms: float | None,
) -> PerNodeReport:
    if inferences < 1:
        raise ProfilingError(f"per-node times need >= 1 inference, got {inferences}")
    attributed_ns = sum(per_node_ns.values())
    nodes = sorted(
        (
            NodeTime(
                name=name,
                op_type=meta[name].op_type,
                provider=meta[name].provider,
                time_ms=ns / 1e6 / inferences,
                activities=counts[name] / inferences,
                share=ns / attributed_ns if attributed_ns else 0.0,
            )
            for name, ns in per_node_ns.items()
        ),
        key=lambda n: (-n.time_ms, n.name),
    )
    by_type: dict[str, list[NodeTime]] = {}
    for node in nodes:
        by_type.setdefault(node.op_type, []).append(node)
    attributed_ms = attributed_ns / 1e6 / inferences
    op_types = sorted(
        (
            OpTypeTime(
                op_type=op_type,
                time_ms=sum(n.time_ms for n in members),
                nodes=len(members),
                share=sum(n.time_ms for n in members) / attributed_ms if attributed_ms else 0.0,
            )
            for op_type, members in by_type.items()
        ),
        key=lambda o: (-o.time_ms, o.op_type),
    )
    return PerNodeReport(
        clock=clock,
        inferences=inferences,
        nodes=tuple(nodes),
        op_types=tuple(op_types),
        attributed_ms=attributed_ms,
        unattributed_ms=unattributed_ns / 1e6 / inferences,
        profiled_total_ms=profiled_total_ms,
    )


def attribute_gpu_time(
    runs: Sequence[NodeRun],
    activities: Sequence[GpuActivity],
    api_calls: Sequence[ApiCall],
    inferences: int,
    profiled_total_ms: float | None = None,
) -> PerNodeReport:
    """Ties each GPU activity to the node whose host interval holds its launch call."""
    launches = {call.correlation_id: call for call in api_calls}
    ordered = sorted(runs, key=lambda r: r.start_ns)
    starts = [r.start_ns for r in ordered]
    per_node_ns: dict[str, int] = {}
    counts: dict[str, int] = {}
    meta: dict[str, NodeRun] = {}
    unattributed_ns = 0
    for activity in activities:
        call = launches.get(activity.correlation_id)
        node = None
        if call is not None:
            index = bisect.bisect_right(starts, call.start_ns) - 1
            if index >= 0 and call.start_ns <= ordered[index].end_ns + INTERVAL_SLACK_NS:
                node = ordered[index]
        if node is None:
            unattributed_ns += activity.duration_ns
            continue
        per_node_ns[node.name] = per_node_ns.get(node.name, 0) + activity.duration_ns
        counts[node.name] = counts.get(node.name, 0) + 1
        meta.setdefault(node.name, node)
    return _report(
        "cupti-gpu", per_node_ns, counts, meta, unattributed_ns, inferences, profiled_total_ms
    )


def cpu_node_times(
    runs: Sequence[NodeRun], inferences: int, profiled_total_ms: float | None = None
) -> PerNodeReport:
    """Per-node times on the CPU EP: each node run's profiled duration is its compute time."""
    per_node_ns: dict[str, int] = {}
    counts: dict[str, int] = {}
    meta: dict[str, NodeRun] = {}
    for run in runs:
        per_node_ns[run.name] = per_node_ns.get(run.name, 0) + (run.end_ns - run.start_ns)
        counts[run.name] = counts.get(run.name, 0) + 1
        meta.setdefault(run.name, run)
    return _report("ort-profiler-cpu", per_node_ns, counts, meta, 0, inferences, profiled_total_ms)
