"""Seed plans: the configurations people use today, measured first so the search starts from them.

- ``all_fp32``: nothing lowered (the accuracy reference's own precision).
- ``all_lower``: every eligible node lowered.
- ``onnxruntime_block_list``: onnxruntime's converter default, ``DEFAULT_OP_BLOCK_LIST``.
- ``paddle_black_list``: Paddle Inference's default GPU FP16 black list, mapped to ONNX ops.
- ``keep_out_of_range``: every node lowered except those reading values beyond the lower type.

Every seed is restricted to the op types and nodes of the model; the tuner normalises seeds with
the composed space and enqueues each distinct plan once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from search_spaces._model_facts import ModelFacts
from search_spaces._plan import PrecisionPlan

# onnxruntime 1.32.0, onnxruntime/transformers/float16.py (source tree:
# onnxruntime/python/tools/transformers/float16.py), DEFAULT_OP_BLOCK_LIST: ML-domain operators
# without float16 kernels, plus operators whose inputs must stay float (TopK, Range, CumSum, ...).
ONNXRUNTIME_DEFAULT_OP_BLOCK_LIST: tuple[str, ...] = (
    "ArrayFeatureExtractor", "Binarizer", "CastMap", "CategoryMapper", "DictVectorizer",
    "FeatureVectorizer", "Imputer", "LabelEncoder", "LinearClassifier", "LinearRegressor",
    "Normalizer", "OneHotEncoder", "RandomUniformLike", "SVMClassifier", "SVMRegressor", "Scaler",
    "TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble", "ZipMap",
    "NonMaxSuppression", "TopK", "RoiAlign", "Range", "CumSum", "Min", "Max", "Upsample",
)


@dataclass(frozen=True)
class PaddleBlackListEntry:
    """One Paddle operator of the black list and the ONNX op types paddle2onnx exports it as."""

    paddle_op: str
    onnx_op_types: tuple[str, ...]
    note: str = ""


# Paddle Inference's default GPU mixed-precision black list: AutoMixedPrecisionPass::
# SetDefaultBlacklist in paddle/fluid/framework/ir/auto_mixed_precision_pass.cc (Paddle commit
# 0044450787), the list `config.exp_enable_use_gpu_fp16()` and `enable_use_gpu(..., Half)` start
# from. ONNX op types follow Paddle2ONNX's mappers (paddle2onnx/mapper/...). Entries without ONNX
# op types are training losses or ops that no exported inference graph holds as one ONNX op.
PADDLE_GPU_FP16_BLACK_LIST: tuple[PaddleBlackListEntry, ...] = (
    PaddleBlackListEntry("cast", ("Cast",), "Paddle keeps casts as they are; so does a Cast kept FP32"),
    PaddleBlackListEntry("exp", ("Exp",)),
    PaddleBlackListEntry(
        "square", (), "exported as Mul(x, x): keeping every Mul would not mean what Paddle means"
    ),
    PaddleBlackListEntry("log", ("Log",)),
    PaddleBlackListEntry("mean", ("ReduceMean",), "mean of all elements"),
    PaddleBlackListEntry("sum", ("Sum",), "sum of a list of tensors (add_n)"),
    PaddleBlackListEntry("softmax_with_cross_entropy", ("SoftmaxCrossEntropyLoss",), "training loss"),
    PaddleBlackListEntry("sigmoid_cross_entropy_with_logits", (), "training loss"),
    PaddleBlackListEntry("c_softmax_with_cross_entropy", (), "distributed training loss"),
    PaddleBlackListEntry("cross_entropy", (), "training loss"),
    PaddleBlackListEntry("cross_entropy2", (), "training loss"),
    PaddleBlackListEntry("conv2d_transpose", ("ConvTranspose",), "slower than FP32 in Paddle's kernels"),
    PaddleBlackListEntry("reduce_sum", ("ReduceSum",), "sums beyond 65504 overflow FP16"),
)


def paddle_black_list_onnx_op_types() -> frozenset[str]:
    return frozenset(t for entry in PADDLE_GPU_FP16_BLACK_LIST for t in entry.onnx_op_types)


@dataclass(frozen=True)
class SeedPlan:
    """A named plan enqueued before the search starts."""

    name: str
    plan: PrecisionPlan
    description: str


SEED_NAMES: tuple[str, ...] = (
    "all_fp32",
    "all_lower",
    "onnxruntime_block_list",
    "paddle_black_list",
    "keep_out_of_range",
)


def seed_plans(
    facts: ModelFacts,
    lower: str = "fp16",
    *,
    names: Iterable[str] = SEED_NAMES,
    out_of_range_nodes: Iterable[str] | None = None,
    keep_io_types: bool = True,
) -> list[SeedPlan]:
    """The seed plans asked for by ``names``, in that order, restricted to this model.

    ``out_of_range_nodes`` defaults to the facts' nodes reading out-of-range values. Plans are
    not deduplicated here: the tuner normalises them and enqueues each digest once.
    """
    wanted = list(names)
    unknown = sorted(set(wanted) - set(SEED_NAMES))
    if unknown:
        raise ValueError(f"unknown seed plan(s) {unknown}; valid: {', '.join(SEED_NAMES)}")
    present = facts.op_types_present

    def keeping(op_types: Iterable[str] = (), nodes: Iterable[str] = ()) -> PrecisionPlan:
        return PrecisionPlan(
            lower=lower,  # type: ignore[arg-type]
            keep_fp32_op_types=frozenset(op_types) & present,
            keep_fp32_nodes=frozenset(nodes) & frozenset(facts.node_names),
            keep_io_types=keep_io_types,
        )

    out_of_range = facts.out_of_range_nodes if out_of_range_nodes is None else out_of_range_nodes
    builders = {
        "all_fp32": lambda: SeedPlan(
            "all_fp32", PrecisionPlan.all_fp32(), "every node in FP32 (no conversion)"
        ),
        "all_lower": lambda: SeedPlan(
            "all_lower", keeping(), f"every eligible node in {lower.upper()}"
        ),
        "onnxruntime_block_list": lambda: SeedPlan(
            "onnxruntime_block_list",
            keeping(ONNXRUNTIME_DEFAULT_OP_BLOCK_LIST),
            "onnxruntime float16 converter's DEFAULT_OP_BLOCK_LIST kept in FP32",
        ),
        "paddle_black_list": lambda: SeedPlan(
            "paddle_black_list",
            keeping(paddle_black_list_onnx_op_types()),
            "Paddle Inference's default GPU FP16 black list (as ONNX ops) kept in FP32",
        ),
        "keep_out_of_range": lambda: SeedPlan(
            "keep_out_of_range",
            keeping(nodes=out_of_range),
            "nodes reading values beyond the lower type's range kept in FP32",
        ),
    }
    return [builders[name]() for name in wanted]


def sensitivity_ladder(space: Any, lower: str, keep_io_types: bool = True,
                       steps: Sequence[int] = (1, 2, 4, 8, 16, 32)) -> list[SeedPlan]:
    """Seeds that lower everything but the ``k`` most sensitive node groups, k doubling.

    Measured first, they give the search the shape of the front it is looking for (fast plans
    that keep the few nodes that matter) before TPE's random start-up trials, which on a space of
    many op types mostly keep half of them in FP32. ``space`` is a ComposedSearchSpace; without a
    prepared sensitive-nodes space there is no ladder.
    """
    from search_spaces._sensitive_nodes import SensitiveNodesSpace

    found = [s for s in getattr(space, "spaces", ()) if isinstance(s, SensitiveNodesSpace)]
    if not found or not found[0].entries:
        return []
    sensitive = found[0]
    seeds = []
    for count in steps:
        if count > len(sensitive.entries):
            break
        nodes = frozenset(n for entry in sensitive.kept_entries(count) for n in entry.nodes)
        plan = PrecisionPlan(lower=lower,  # type: ignore[arg-type]
                             keep_fp32_nodes=nodes | sensitive.always_fp32_nodes,
                             keep_io_types=keep_io_types)
        seeds.append(SeedPlan(f"sensitivity_top_{count}", plan,
                              f"everything lowered but the {count} most sensitive node groups"))
    return seeds


def tf32_twins(seeds: Iterable[SeedPlan]) -> list[SeedPlan]:
    """Each seed with its FP32 part in TF32 (``all_fp32`` becomes the TF32 baseline)."""
    from dataclasses import replace

    return [SeedPlan(f"{seed.name}+tf32", replace(seed.plan, allow_tf32=True),
                     f"{seed.description}; FP32 nodes in TF32") for seed in seeds]
