"""How long and how much memory ``convert_precision`` takes on all-MiniLM-L6-v2 (90 MB FP32).

    python benchmarks/convert_minilm.py [--repeat 5]

Converts the exported MiniLM with the all-FP16 plan (graph inputs and outputs kept FP32) and
prints wall time and peak memory next to the model's size. Targets: under 2 s and under 3x the
model's size on a 2-core CI machine. It prints the numbers and whether each meets its target;
it asserts nothing, so a slow run still reports.

Memory is measured three ways, each with a blind spot:
- tracemalloc peak: Python and numpy allocations only; protobuf's C allocations are not seen.
- ru_maxrss delta: the process's peak RSS; it grows only where the conversion rises above the
  peak that loading the model already set, so it is a lower bound.
- VmHWM after a reset (Linux, /proc/self/clear_refs): the peak RSS of the conversion itself,
  less the RSS before it; the closest to "extra memory the conversion needs".
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from search_spaces import PrecisionPlan
from tuner import convert_precision, load_model
from tuner._model_zoo import real_model_path

TARGET_SECONDS = 2.0
TARGET_MEMORY_RATIO = 3.0
_MIB = 1024 * 1024


def _status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _measure_rss(convert: Callable[[], object]) -> tuple[float, float, float | None]:
    """(seconds, ru_maxrss delta, VmHWM delta), bytes; the first conversion of the process."""
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    rss_before = _status_kib("VmRSS")
    reset = _reset_peak_rss()
    started = time.perf_counter()
    result = convert()
    seconds = time.perf_counter() - started
    hwm_after = _status_kib("VmHWM")
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del result
    hwm_delta = None
    if reset and rss_before is not None and hwm_after is not None:
        hwm_delta = (hwm_after - rss_before) * 1024.0
    return seconds, (maxrss_after - maxrss_before) * 1024.0, hwm_delta


def _measure_tracemalloc(convert: Callable[[], object]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        result = convert()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return float(peak)


def _verdict(value: float, target: float) -> str:
    return "within target" if value <= target else "OVER target"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed conversions (default 5)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    path = real_model_path("minilm")
    locate_seconds = time.perf_counter() - started
    model_bytes = path.stat().st_size
    started = time.perf_counter()
    model = load_model(path)
    load_seconds = time.perf_counter() - started
    plan = PrecisionPlan(lower="fp16", keep_io_types=True)

    def convert() -> object:
        return convert_precision(model, plan)

    # Peak RSS first, while the process's peak is still the one loading set.
    first_seconds, maxrss_delta, hwm_delta = _measure_rss(convert)
    gc.collect()
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = convert()
        times.append(time.perf_counter() - started)
        del result
        gc.collect()
    traced_peak = _measure_tracemalloc(convert)
    result = convert_precision(model, plan)
    report = result.report
    lowered = sum(1 for node in report.nodes if node.precision == plan.lower)

    from google.protobuf.internal import api_implementation

    best, median = min(times), statistics.median(times)
    print(f"model: {path} ({model_bytes / _MIB:.1f} MiB, {len(model.graph.node)} nodes)")
    print(
        f"located in {locate_seconds:.3f} s (export or cache hit), loaded in {load_seconds:.2f} s"
    )
    print(
        f"result: {lowered} of {len(report.nodes)} nodes in {plan.lower}, "
        f"{report.cast_count} Casts, {result.model.ByteSize() / _MIB:.1f} MiB"
    )
    print(f"protobuf backend: {api_implementation.Type()}; python {sys.version.split()[0]}")
    print()
    rows = [
        ("first conversion", f"{first_seconds:.3f} s", ""),
        (
            f"conversion, {args.repeat} runs",
            f"min {best:.3f} s, median {median:.3f} s",
            f"{_verdict(median, TARGET_SECONDS)} ({TARGET_SECONDS:.0f} s)",
        ),
    ]
    memory = [("tracemalloc peak", traced_peak), ("ru_maxrss delta", maxrss_delta)]
    if hwm_delta is not None:
        memory.append(("peak RSS over start (VmHWM)", hwm_delta))
    for label, peak in memory:
        ratio = peak / model_bytes
        rows.append(
            (
                label,
                f"{peak / _MIB:.1f} MiB = {ratio:.2f}x model",
                f"{_verdict(ratio, TARGET_MEMORY_RATIO)} ({TARGET_MEMORY_RATIO:.0f}x)",
            )
        )
    width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows)
    for label, text, verdict in rows:
        print(f"{label:<{width}}  {text:<{value_width}}  {verdict}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
