"""What the search may choose: each trial becomes a frozen, hashable :class:`PrecisionPlan`.

This package knows nothing of ONNX Runtime or timing: spaces receive plain data (the model's
nodes and op types, which nodes may be lowered, a precomputed sensitivity ranking).
"""

from search_spaces._base import SPACE_TYPES, ParameterSuggester, PlanFields, SearchSpace
from search_spaces._composed import ComposedSearchSpace
from search_spaces._errors import PlanValidationError, SearchSpaceError
from search_spaces._lower_type import LowerTypeSpace
from search_spaces._model_facts import ModelFacts
from search_spaces._op_types import OpTypeSpace
from search_spaces._plan import LOWER_TYPES, LowerType, PrecisionPlan
from search_spaces._seeds import (
    ONNXRUNTIME_DEFAULT_OP_BLOCK_LIST,
    PADDLE_GPU_FP16_BLACK_LIST,
    SEED_NAMES,
    PaddleBlackListEntry,
    SeedPlan,
    paddle_black_list_onnx_op_types,
    seed_plans,
    sensitivity_ladder,
    tf32_twins,
)
from search_spaces._sensitive_nodes import SELECTION_MODES, SensitiveNodesSpace
from search_spaces._sensitivity import (
    RANKING_ORDERS,
    SensitivityEntry,
    SensitivityRanking,
    group_nodes,
    plan_lowering_only,
    rank_sensitivity,
)
from search_spaces._tf32 import Tf32Space

__all__ = [
    "LOWER_TYPES",
    "ONNXRUNTIME_DEFAULT_OP_BLOCK_LIST",
    "PADDLE_GPU_FP16_BLACK_LIST",
    "RANKING_ORDERS",
    "SEED_NAMES",
    "SELECTION_MODES",
    "SPACE_TYPES",
    "ComposedSearchSpace",
    "LowerType",
    "LowerTypeSpace",
    "ModelFacts",
    "OpTypeSpace",
    "PaddleBlackListEntry",
    "ParameterSuggester",
    "PlanFields",
    "PlanValidationError",
    "PrecisionPlan",
    "SearchSpace",
    "SearchSpaceError",
    "SeedPlan",
    "SensitiveNodesSpace",
    "SensitivityEntry",
    "SensitivityRanking",
    "Tf32Space",
    "group_nodes",
    "paddle_black_list_onnx_op_types",
    "plan_lowering_only",
    "rank_sensitivity",
    "seed_plans",
    "sensitivity_ladder",
    "tf32_twins",
]
