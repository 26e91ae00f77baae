from __future__ import annotations

from dataclasses import dataclass

import pytest

from search_spaces import ModelFacts
from tests.search_spaces._facts import ELIGIBLE, NODES, transformer_facts


def test_derived_views_follow_the_nodes() -> None:
    facts = transformer_facts()
    assert facts.op_type_counts["MatMul"] == 6
    assert facts.eligible_op_types == {t for n, t in NODES if n in ELIGIBLE}
    assert "TopK" in facts.op_types_present and "TopK" not in facts.eligible_op_types
    assert facts.eligible_nodes_in_order()[0] == "embed_gather"
    assert facts.eligible_nodes_of_type("LayerNormalization") == {"ln1", "ln2"}
    assert facts.op_type_of("softmax") == "Softmax"


def test_round_trips_through_a_dict() -> None:
    facts = transformer_facts()
    assert ModelFacts.from_dict(facts.to_dict()) == facts


@dataclass(frozen=True)
class _Decision:  # the fields of tuner's NodeDecision that the facts read
    name: str
    op_type: str
    precision: str
    reason: str


def test_from_node_decisions_reads_objects_and_mappings() -> None:
    decisions = [
        _Decision("conv", "Conv", "fp16", "lowered"),
        {"name": "shape", "op_type": "Shape", "precision": "unchanged", "reason": "no_float_data"},
        _Decision("big", "Mul", "fp32", "out_of_range_weight"),
        _Decision("nms", "NonMaxSuppression", "fp32", "no_lower_kernel"),
    ]
    facts = ModelFacts.from_node_decisions(decisions)
    assert facts.node_names == ("conv", "shape", "big", "nms")
    assert facts.eligible_nodes == {"conv"}
    assert facts.out_of_range_nodes == {"big"}


def test_rejects_repeated_and_unknown_names() -> None:
    with pytest.raises(ValueError, match="repeated: a"):
        ModelFacts((("a", "Add"), ("a", "Mul")), frozenset())
    with pytest.raises(ValueError, match="not among the nodes"):
        ModelFacts((("a", "Add"),), frozenset({"b"}))
