"""Tuning runs of tiny models for the CLI and verify tests: real `amptune tune` calls on the CPU EP
with short latency measurements, so that a run of a few trials takes a second or two."""

from __future__ import annotations

from pathlib import Path

import onnx

from tests.tuner._cpu_evaluation import tiny_two_branch_model
from tuner.cli import main

# Short but real measurements: at least 20 ms per candidate, warm-up at most 50 ms.
FAST_TIMING = ["--min-measure-s", "0.02", "--max-warmup-s", "0.05"]
TINY_INPUT = ["--input", "level=8x4:uniform(1000.4,1001.4)"]  # x keeps its default uniform(0,1)


def save_tiny_model(folder: Path) -> Path:
    path = folder / "tiny.onnx"
    onnx.save(tiny_two_branch_model(), str(path))
    return path


def tune_tiny(model: Path, out: Path, *extra: str, n_trials: int = 8) -> int:
    """`amptune tune` of the tiny model: max_rel drift, tolerance 1e-3, on the CPU."""
    return main(["tune", str(model), *TINY_INPUT, "--metric", "max_rel", "--tolerance", "1e-3",
                 "--n-trials", str(n_trials), "--out", str(out), "--device", "cpu",
                 *FAST_TIMING, *extra])
