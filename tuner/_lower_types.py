"""The lower float types amptune converts to, and what each can represent."""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np
from onnx import TensorProto


@dataclass(frozen=True)
class LowerFloatType:
    name: str  # "fp16" or "bf16", as in PrecisionPlan.lower
    elem_type: int  # onnx TensorProto data type
    type_str: str  # as ORT's kernel registry and onnx schemas spell it
    numpy_dtype: np.dtype
    max_finite: float
    smallest_subnormal: float

    def flushes_to_zero(self, values: np.ndarray) -> np.ndarray:
        """Mask of non-zero values that become exactly zero in this type (round to nearest)."""
        return (values != 0) & (np.abs(values) <= self.smallest_subnormal / 2)


FP16 = LowerFloatType(
    name="fp16",
    elem_type=TensorProto.FLOAT16,
    type_str="tensor(float16)",
    numpy_dtype=np.dtype(np.float16),
    max_finite=float(np.finfo(np.float16).max),
    smallest_subnormal=float(np.finfo(np.float16).smallest_subnormal),
)
BF16 = LowerFloatType(
    name="bf16",
    elem_type=TensorProto.BFLOAT16,
    type_str="tensor(bfloat16)",
    numpy_dtype=np.dtype(ml_dtypes.bfloat16),
    max_finite=float(ml_dtypes.finfo(ml_dtypes.bfloat16).max),
    smallest_subnormal=float(ml_dtypes.finfo(ml_dtypes.bfloat16).smallest_subnormal),
)
LOWER_FLOAT_TYPES = {FP16.name: FP16, BF16.name: BF16}
FLOAT32 = TensorProto.FLOAT


def lower_float_type(name: str) -> LowerFloatType:
    return LOWER_FLOAT_TYPES[name]
