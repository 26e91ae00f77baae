"""ONNX op types -> the Paddle operators that Paddle2ONNX exports as them.

Paddle Inference keeps operators in FP32 by Paddle operator name
(``config.exp_enable_use_gpu_fp16(gpu_fp16_disabled_op_types)``), so an ONNX plan that keeps an op
type in FP32 is carried over by disabling every Paddle operator that becomes that ONNX op type.

The table follows Paddle2ONNX's mappers (``paddle2onnx/mapper/**``: each ``REGISTER_MAPPER(op,
...)`` and the ONNX nodes its ``Opset*`` method makes). Where Paddle Inference fuses operators
before its mixed-precision pass, the fused name is listed too (``fc`` for ``mul`` + add,
``conv2d_fusion``). Several Paddle operators export as one ONNX op type and some as several;
disabling all of them is the conservative reading. An ONNX op type absent from the table has no
known Paddle counterpart and is reported as such, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

# ONNX op type -> Paddle operator names (a comment where the mapping is not one to one).
ONNX_TO_PADDLE: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "Conv": ("conv2d", "depthwise_conv2d", "conv2d_fusion", "conv3d"),
    "ConvTranspose": ("conv2d_transpose", "depthwise_conv2d_transpose", "conv3d_transpose"),
    "MatMul": ("matmul_v2", "matmul", "mul", "bmm", "fc"),
    "Gemm": ("fc", "linear_v2"),
    "Add": ("elementwise_add",),
    "Sub": ("elementwise_sub",),
    "Mul": ("elementwise_mul", "scale"),  # scale exports as Mul and Add
    "Div": ("elementwise_div",),
    "Pow": ("elementwise_pow", "pow"),
    "Max": ("elementwise_max",),
    "Min": ("elementwise_min",),
    "Sum": ("sum",),  # Paddle's sum adds a list of tensors (add_n)
    "Relu": ("relu",),
    "LeakyRelu": ("leaky_relu",),
    "PRelu": ("prelu",),
    "Sigmoid": ("sigmoid", "swish", "silu"),  # swish/silu export as x * Sigmoid(x)
    "HardSigmoid": ("hard_sigmoid",),
    "HardSwish": ("hard_swish",),
    "Clip": ("clip", "relu6", "brelu"),
    "Tanh": ("tanh",),
    "Softplus": ("softplus",),
    "Elu": ("elu",),
    "Erf": ("erf", "gelu"),  # gelu exports as x * (1 + Erf(x / sqrt(2))) / 2
    "Exp": ("exp",),
    "Log": ("log",),
    "Sqrt": ("sqrt", "rsqrt"),  # rsqrt exports as Reciprocal(Sqrt(x))
    "Reciprocal": ("reciprocal", "rsqrt"),
    "Abs": ("abs",),
    "Softmax": ("softmax",),
    "LogSoftmax": ("log_softmax",),
    "BatchNormalization": ("batch_norm",),
    "LayerNormalization": ("layer_norm",),
    "InstanceNormalization": ("instance_norm",),
    "GroupNormalization": ("group_norm",),
    "MaxPool": ("pool2d", "max_pool2d_with_index"),
    "AveragePool": ("pool2d",),
    "GlobalAveragePool": ("pool2d",),
    "GlobalMaxPool": ("pool2d",),
    "Resize": ("nearest_interp_v2", "bilinear_interp_v2", "bicubic_interp_v2",
               "linear_interp_v2", "trilinear_interp_v2", "bilinear_interp", "nearest_interp"),
    "ReduceMean": ("reduce_mean", "mean"),
    "ReduceSum": ("reduce_sum",),
    "ReduceMax": ("reduce_max",),
    "ReduceMin": ("reduce_min",),
    "Concat": ("concat",),
    "Split": ("split",),
    "Slice": ("slice", "strided_slice"),
    "Reshape": ("reshape2",),
    "Transpose": ("transpose2",),
    "Squeeze": ("squeeze2",),
    "Unsqueeze": ("unsqueeze2",),
    "Flatten": ("flatten_contiguous_range", "flatten2"),
    "Gather": ("gather", "lookup_table_v2"),
    "Cast": ("cast",),
    "Pad": ("pad3d", "pad"),
    "LSTM": ("lstm", "rnn"),
    "GRU": ("gru", "rnn"),
    "Where": ("where",),
    "Expand": ("expand_v2",),
    "Tile": ("tile",),
    "ArgMax": ("arg_max",),
    "TopK": ("top_k_v2",),
    "CumSum": ("cumsum",),
    "SoftmaxCrossEntropyLoss": ("softmax_with_cross_entropy",),
})


@dataclass(frozen=True)
class PaddleMapping:
    """The Paddle operators to disable for a set of ONNX op types kept in FP32."""

    paddle_ops: tuple[str, ...]  # sorted, without repeats
    sources: Mapping[str, tuple[str, ...]]  # Paddle op -> the ONNX op types that asked for it
    unmapped: tuple[str, ...]  # ONNX op types with no known Paddle counterpart


def paddle_ops_for(onnx_op_types: Iterable[str]) -> PaddleMapping:
    sources: dict[str, list[str]] = {}
    unmapped: list[str] = []
    for op_type in sorted(set(onnx_op_types)):
        paddle_ops = ONNX_TO_PADDLE.get(op_type)
        if not paddle_ops:
            unmapped.append(op_type)
            continue
        for paddle_op in paddle_ops:
            sources.setdefault(paddle_op, []).append(op_type)
    return PaddleMapping(
        paddle_ops=tuple(sorted(sources)),
        sources={op: tuple(types) for op, types in sorted(sources.items())},
        unmapped=tuple(unmapped),
    )


def paddle_inference_snippet(paddle_ops: Iterable[str], model_dir: str = "inference_model") -> str:
    """Python that runs a Paddle Inference model in FP16 with these operators kept in FP32."""
    ops = sorted(set(paddle_ops))
    listed = "".join(f"    {op!r},\n" for op in ops)
    return (
        "# Paddle Inference: FP16 on the GPU, with the operators amptune kept in FP32 disabled.\n"
        "import paddle.inference as paddle_infer\n\n"
        f"config = paddle_infer.Config('{model_dir}/inference.pdmodel', "
        f"'{model_dir}/inference.pdiparams')\n"
        "config.enable_use_gpu(256, 0)\n"
        "gpu_fp16_disabled_op_types = {\n" + listed + "}\n"
        "# Paddle 2.3/2.4: the experimental switch takes the disabled operators.\n"
        "config.exp_enable_use_gpu_fp16(gpu_fp16_disabled_op_types)\n"
        "# Paddle 2.5 and later instead:\n"
        "#   config.enable_use_gpu(256, 0, paddle_infer.PrecisionType.Half)\n"
        "#   config.exp_disable_mixed_precision_ops(gpu_fp16_disabled_op_types)\n"
        "predictor = paddle_infer.create_predictor(config)\n"
    )
