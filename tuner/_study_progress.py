"""What the user sees while a study runs: one line per finished trial."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from search_spaces import PrecisionPlan


@dataclass(frozen=True)
class TrialProgress:
    """One finished trial, as the progress display needs it."""

    number: int
    finished: int  # trials finished in the study so far
    budget: int | None  # n_trials, if the budget has one
    status: str  # measured, reused, rejected, failed
    seed: str | None
    plan: PrecisionPlan
    latency_ms: float | None
    latency_device: str | None
    drift: float | None
    feasible: bool
    failed: bool  # could not be built or run (now, or when the reused plan was measured)
    reason: str | None  # why it failed or was rejected
    best: tuple[int, float] | None  # (trial number, latency) of the fastest feasible trial
    elapsed_s: float


ProgressCallback = Callable[[TrialProgress], None]


def describe_plan(plan: PrecisionPlan, limit: int = 3) -> str:
    """A short account of what a plan keeps in FP32."""
    tf32 = " + TF32" if plan.allow_tf32 else ""
    if plan.keep_all_fp32:
        return f"all FP32{tf32}"
    parts = []
    types = sorted(plan.keep_fp32_op_types)
    if types:
        shown = ", ".join(types[:limit]) + (f" +{len(types) - limit}" if len(types) > limit else "")
        parts.append(f"FP32 op types: {shown}")
    if plan.keep_fp32_nodes:
        parts.append(f"{len(plan.keep_fp32_nodes)} FP32 node(s)")
    return (f"{plan.lower.upper()}" + (f"; {'; '.join(parts)}" if parts else ", nothing kept")
            + tf32)


class TextProgress:
    """Writes one line per trial to a stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr

    def __call__(self, progress: TrialProgress) -> None:
        count = f"{progress.finished}/{progress.budget}" if progress.budget else f"{progress.finished}"
        if progress.latency_ms is not None:
            device = " (CPU)" if progress.latency_device == "cpu" else ""
            latency = f"{progress.latency_ms:8.3f} ms{device}"
        else:
            latency = f"{'not timed':>11}"
        drift = "drift -" if progress.drift is None else (
            "drift inf" if math.isinf(progress.drift) else f"drift {progress.drift:.4g}"
        )
        verdict = "ok" if progress.feasible else ("failed" if progress.failed else "over")
        seed = f" [{progress.seed}]" if progress.seed else ""
        best = f" | best {progress.best[1]:.3f} ms (#{progress.best[0]})" if progress.best else ""
        reason = f" - {progress.reason}" if progress.reason else ""
        self.stream.write(
            f"[{count}] #{progress.number} {progress.status:<8} {latency}  {drift} {verdict}"
            f"  {describe_plan(progress.plan)}{seed}{best}{reason}  ({progress.elapsed_s:.0f} s)\n"
        )
        self.stream.flush()
