from __future__ import annotations

import pytest

from search_spaces import (
    ONNXRUNTIME_DEFAULT_OP_BLOCK_LIST,
    PADDLE_GPU_FP16_BLACK_LIST,
    SEED_NAMES,
    ModelFacts,
    PrecisionPlan,
    paddle_black_list_onnx_op_types,
    seed_plans,
)

_FACTS = ModelFacts(
    (("conv", "Conv"), ("up", "ConvTranspose"), ("exp", "Exp"), ("sum", "ReduceSum"),
     ("topk", "TopK"), ("mul", "Mul"), ("big", "Mul")),
    frozenset({"conv", "up", "exp", "sum", "mul", "big"}),
    frozenset({"big"}),
)


def test_onnxruntime_list_matches_the_installed_converter() -> None:
    float16 = pytest.importorskip("onnxruntime.transformers.float16")
    assert list(ONNXRUNTIME_DEFAULT_OP_BLOCK_LIST) == list(float16.DEFAULT_OP_BLOCK_LIST)


def test_every_seed_is_restricted_to_the_model() -> None:
    seeds = {seed.name: seed for seed in seed_plans(_FACTS, "fp16")}
    assert list(seeds) == list(SEED_NAMES)
    assert seeds["all_fp32"].plan == PrecisionPlan.all_fp32()
    assert seeds["all_lower"].plan == PrecisionPlan()
    assert seeds["onnxruntime_block_list"].plan.keep_fp32_op_types == {"TopK"}
    assert seeds["paddle_black_list"].plan.keep_fp32_op_types == {"ConvTranspose", "Exp", "ReduceSum"}
    assert seeds["keep_out_of_range"].plan.keep_fp32_nodes == {"big"}


def test_seed_selection_lower_type_and_explicit_out_of_range_nodes() -> None:
    seeds = seed_plans(_FACTS, "bf16", names=["keep_out_of_range"], out_of_range_nodes=["mul", "nope"])
    assert [s.name for s in seeds] == ["keep_out_of_range"]
    assert seeds[0].plan.lower == "bf16" and seeds[0].plan.keep_fp32_nodes == {"mul"}
    with pytest.raises(ValueError, match="unknown seed"):
        seed_plans(_FACTS, names=["greedy"])


def test_paddle_list_mapping_is_documented_entry_by_entry() -> None:
    names = [entry.paddle_op for entry in PADDLE_GPU_FP16_BLACK_LIST]
    assert len(names) == len(set(names)) == 13
    unmapped = [e for e in PADDLE_GPU_FP16_BLACK_LIST if not e.onnx_op_types]
    assert all(e.note for e in unmapped)  # each gap says why
    assert "Mul" not in paddle_black_list_onnx_op_types()  # square -> Mul(x, x) is not mapped


def test_sensitivity_ladder_keeps_the_top_k_groups_k_doubling() -> None:
    from search_spaces import (
        ComposedSearchSpace,
        OpTypeSpace,
        SensitiveNodesSpace,
        sensitivity_ladder,
    )
    from tests.search_spaces._facts import transformer_facts, transformer_ranking

    sensitive = SensitiveNodesSpace(transformer_ranking())
    space = ComposedSearchSpace([OpTypeSpace(), sensitive])
    space.prepare(transformer_facts())
    ladder = sensitivity_ladder(space, "fp16")
    counts = [int(seed.name.rsplit("_", 1)[1]) for seed in ladder]
    assert counts == [c for c in (1, 2, 4, 8, 16, 32) if c <= len(sensitive.entries)]
    for seed, count in zip(ladder, counts):
        expected = {n for e in sensitive.kept_entries(count) for n in e.nodes}
        assert seed.plan.keep_fp32_nodes == expected | sensitive.always_fp32_nodes
        assert not seed.plan.keep_fp32_op_types
        # the space can express the seed: its params select the same top k
        assert space.params_for(space.normalise(seed.plan))[sensitive.parameter("top_k")] == count
    assert sensitivity_ladder(ComposedSearchSpace([OpTypeSpace()]), "fp16") == []


def test_tf32_twins_and_plans_that_allow_tf32_have_their_own_digest() -> None:
    from search_spaces import PrecisionPlan, SeedPlan, tf32_twins

    seeds = [SeedPlan("all_fp32", PrecisionPlan.all_fp32(), "nothing lowered")]
    (twin,) = tf32_twins(seeds)
    assert twin.name == "all_fp32+tf32" and twin.plan == PrecisionPlan.all_fp32(allow_tf32=True)
    assert twin.plan.digest() != seeds[0].plan.digest()
    assert PrecisionPlan.from_dict(twin.plan.to_dict()) == twin.plan
