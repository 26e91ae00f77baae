"""On the GPU host: converted real models run on the CUDA EP with no compute node on the CPU."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from search_spaces import PrecisionPlan
from tuner import convert_precision
from tuner._model_zoo import REAL_MODELS
from tuner._placement_check import cuda_placement

pytestmark = pytest.mark.gpu

MODELS = ["ppocr-det", "ppocr-rec", "ppocr-cls", "silero-vad", "minilm"]


def mixed_plan(model: onnx.ModelProto, lower: str = "fp16") -> PrecisionPlan:
    """Every third lowerable node kept in FP32: many FP32/lower boundaries, so many Casts."""
    lowered = [d.name for d in convert_precision(model, PrecisionPlan(lower=lower)).report.nodes
               if d.precision == lower and d.reason == "lowered"]
    return PrecisionPlan(lower=lower, keep_fp32_nodes=frozenset(lowered[::3]))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("which", ["all-fp16", "mixed-fp16", "all-bf16"])
def test_converted_model_runs_on_cuda_without_cpu_compute(name, which, real_model):
    model = onnx.load(str(real_model(name)))
    plan = {"all-fp16": PrecisionPlan(lower="fp16"), "all-bf16": PrecisionPlan(lower="bf16"),
            "mixed-fp16": None}[which] or mixed_plan(model)
    result = convert_precision(model, plan)
    feeds = REAL_MODELS[name].sample_inputs(seed=0, batch=2)
    placement, outputs = cuda_placement(result.model, feeds)
    assert not placement.cpu_compute_nodes, placement.reasons
    assert all(np.isfinite(np.asarray(o, dtype=np.float32)).all() for o in outputs)
