"""Model facts shaped like a small transformer block, shared by the search-space tests."""

from __future__ import annotations

from search_spaces import ModelFacts, SensitivityEntry, SensitivityRanking

NODES = (
    ("embed_gather", "Gather"),
    ("ln1", "LayerNormalization"),
    ("q_matmul", "MatMul"),
    ("k_matmul", "MatMul"),
    ("scores", "MatMul"),
    ("scale", "Div"),
    ("softmax", "Softmax"),
    ("context", "MatMul"),
    ("residual", "Add"),
    ("ln2", "LayerNormalization"),
    ("ffn_up", "MatMul"),
    ("gelu_erf", "Erf"),
    ("ffn_down", "MatMul"),
    ("shape_of", "Shape"),
    ("topk", "TopK"),
)
# Shape and TopK cannot be lowered (no float data / the converter keeps them).
ELIGIBLE = frozenset(n for n, t in NODES if t not in ("Shape", "TopK"))


def transformer_facts() -> ModelFacts:
    return ModelFacts(NODES, ELIGIBLE, frozenset({"ffn_down"}))


def transformer_ranking() -> SensitivityRanking:
    drifts = {
        "softmax": (0.08, 0.02), "gelu_erf": (0.05, 0.01), "ln1": (0.03, 0.01),
        "ln2": (0.02, 0.01), "scores": (0.01, 0.20), "residual": (0.002, 0.01),
        "ffn_up": (0.001, 0.30), "ffn_down": (float("inf"), 0.25),
    }
    return SensitivityRanking(
        tuple(SensitivityEntry((n,), d, s) for n, (d, s) in drifts.items()), metric="max_abs"
    )
