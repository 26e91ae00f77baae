from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from search_spaces import SEED_NAMES
from tuner import AmptuneError
from tuner._study_config import (
    DRIFT_METRIC_NAMES,
    StudyConfigError,
    load_study_config,
    parse_study_config,
)

STUDIES = Path(__file__).resolve().parents[2] / "studies"

MINIMAL = {
    "model": {"path": "model.onnx"},
    "inputs": {"x": {"shape": [8, 16]}},
    "metric": {"name": "max_abs", "tolerance": 0.01},
}


def _parse(**changes: object) -> object:
    data = copy.deepcopy(MINIMAL)
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        table = data
        for parent in parents:
            table = table.setdefault(parent, {})
        table[key] = value
    return parse_study_config(data, source=Path("/studies/demo.toml"))


def test_defaults_fill_a_minimal_study() -> None:
    config = _parse()
    assert config.name == "demo"
    assert config.model.path == Path("/studies/model.onnx")  # relative to the study file
    assert config.inputs[0].shape == (8, 16) and config.inputs[0].distribution == "uniform"
    assert config.data.source == "synthetic" and config.data.n_samples == 8
    assert config.objectives.names() == ("latency_ms", "drift")
    assert config.search.spaces == ("op_types", "lower_type") and config.search.seeds == SEED_NAMES
    assert config.budget.n_trials == 50 and config.budget.timeout_s is None
    assert config.runtime.device == "cuda" and config.sampler.name == "tpe"
    assert config.storage_url("/runs/a") == "sqlite:////runs/a/study.db"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metric__tolerance": -0.1}, r"\[metric\] tolerance = -0.1: must be a number >= 0"),
        ({"metric__name": "iou"}, r"\[metric\] name = 'iou': valid: max_abs, .*module:function"),
        ({"metric__tolerence": 0.1}, r"unknown field\(s\) 'tolerence' \(did you mean 'tolerance'\?\)"),
        ({"inputs__x__shape": [8, -1]}, r"\[inputs.x\] shape = \[8, -1\]"),
        ({"inputs__x__dtype": "float8"}, r"\[inputs.x\] dtype = 'float8': valid values"),
        ({"inputs__x__range": [1.0, 0.0]}, r"range = \[1.0, 0.0\]: must be \[low, high\]"),
        ({"budget__n_trials": 0}, r"\[budget\] n_trials = 0: must be an integer >= 1"),
        ({"budget": {"n_trials": 5, "unused": 1}}, r"\[budget\] has unknown field.*known fields: n_trials, timeout_s"),
        ({"search__spaces": ["op_types", "layout"]}, r"spaces = \['op_types', 'layout'\]: valid spaces"),
        ({"search__lower_types": ["fp8"]}, r"lower_types = \['fp8'\]"),
        ({"search__seeds": ["greedy"]}, r"seeds = \['greedy'\]: valid seeds"),
        ({"search__sensitive_nodes__mode": "all"}, r"\[search.sensitive_nodes\] mode = 'all'"),
        ({"runtime__device": "rocm"}, r"\[runtime\] device = 'rocm': valid values: 'cuda', 'cpu'"),
        ({"runtime__provider_options__prefer_nchw": 1}, r"did you mean 'prefer_nhwc'\?"),
        ({"runtime__provider_options__user_compute_stream": "0"}, r"its own stream"),
        ({"objectives__drift": False}, r"always minimised"),
        ({"sampler__name": "cmaes"}, r"\[sampler\] name = 'cmaes'"),
        ({"data__source": "callable"}, r"\[data\] needs the field 'function'"),
        ({"data__source": "callable", "data__function": "no_colon"}, r"must be 'module:function'"),
        ({"metric__threshold": 0.3}, r"only the thresholded_iou metric takes a threshold"),
        ({"name": "a b"}, r"name = 'a b'"),
    ],
)
def test_each_bad_field_is_named_with_its_value(changes: dict, message: str) -> None:
    with pytest.raises(StudyConfigError, match=message) as caught:
        _parse(**changes)
    assert isinstance(caught.value, AmptuneError)  # the CLI prints it without a traceback
    assert "/studies/demo.toml" in str(caught.value)


def test_model_source_needs_exactly_one_kind() -> None:
    data = copy.deepcopy(MINIMAL)
    data["model"] = {"path": "a.onnx", "zoo": "minilm"}
    with pytest.raises(StudyConfigError, match="exactly one of path, package"):
        parse_study_config(data)
    data["model"] = {"zoo": "minilmm"}
    with pytest.raises(StudyConfigError, match="zoo = 'minilmm': valid values: .*'minilm'"):
        parse_study_config(data)


def test_budget_needs_trials_or_time_and_synthetic_data_needs_inputs() -> None:
    with pytest.raises(StudyConfigError, match="needs n_trials, timeout_s, or both"):
        _parse(budget__n_trials=None)  # TOML has no null: this is a key holding no number
    data = copy.deepcopy(MINIMAL)
    del data["inputs"]
    with pytest.raises(StudyConfigError, match="synthetic' needs \\[inputs.NAME\\]"):
        parse_study_config(data)
    config = _parse(budget={"timeout_s": 60})
    assert config.budget.n_trials is None and config.budget.timeout_s == 60


def test_normal_inputs_map_to_profilers_convention() -> None:
    config = _parse(inputs__x={"shape": [2], "distribution": "normal", "mean": 0.5, "std": 0.1})
    assert config.inputs[0].spec_kwargs() == {
        "name": "x", "shape": (2,), "dtype": "float32", "distribution": "normal",
        "low": 0.5, "high": 0.1,
    }
    profilers_spec = pytest.importorskip("profilers._input_spec")
    spec = profilers_spec.InputSpec(**config.inputs[0].spec_kwargs())
    assert spec.sample(__import__("numpy").random.default_rng(0)).shape == (2,)


def test_cuda_graph_and_provider_options_become_session_options() -> None:
    config = _parse(runtime={"cuda_graph": True, "provider_options": {"prefer_nhwc": True,
                                                                     "cudnn_conv_algo_search": "HEURISTIC"}})
    assert config.runtime.session_provider_options() == {
        "prefer_nhwc": "1", "cudnn_conv_algo_search": "HEURISTIC", "enable_cuda_graph": "1",
    }


def test_missing_and_malformed_files() -> None:
    with pytest.raises(StudyConfigError, match="does not exist"):
        load_study_config("/nonexistent/study.toml")


def test_malformed_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[model\npath = 'x'")
    with pytest.raises(StudyConfigError, match="not valid TOML"):
        load_study_config(path)


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_study_file_loads(path: Path) -> None:
    config = load_study_config(path)
    assert config.name == path.stem
    assert config.metric.name in DRIFT_METRIC_NAMES or config.metric.is_user_function
    raw = tomllib.loads(path.read_text())
    assert raw["metric"]["tolerance"] == config.metric.tolerance


def test_the_suite_has_one_study_per_real_model() -> None:
    assert {p.stem for p in STUDIES.glob("*.toml")} == {
        "ppocr_det", "ppocr_rec", "ppocr_cls", "silero_vad", "minilm",
    }
    det = load_study_config(STUDIES / "ppocr_det.toml")
    assert det.inputs[0].shape == (8, 3, 640, 640)
    assert (det.metric.name, det.metric.threshold, det.metric.tolerance) == ("thresholded_iou", 0.3, 0.01)
    minilm = load_study_config(STUDIES / "minilm.toml")
    assert minilm.model.zoo == "minilm"
    assert [i.shape for i in minilm.inputs] == [(32, 128)] * 3


def test_packaged_models_resolve_to_their_files() -> None:
    for name in ("ppocr_det", "ppocr_rec", "ppocr_cls", "silero_vad"):
        config = load_study_config(STUDIES / f"{name}.toml")
        try:
            path = config.model.resolve()
        except AmptuneError as error:  # the package is not installed here: say so, clearly
            assert "pip install" in str(error)
            continue
        assert path.suffix == ".onnx" and path.is_file()


def test_profilers_metric_names_are_a_subset() -> None:
    drift = pytest.importorskip("profilers._drift")
    assert set(drift.DRIFT_METRICS) <= set(DRIFT_METRIC_NAMES)


@pytest.mark.parametrize("name", ["ppocr_det", "ppocr_rec", "ppocr_cls"])
def test_text_image_data_source_matches_the_study_inputs(name: str) -> None:
    import importlib

    import numpy as np

    config = load_study_config(STUDIES / f"{name}.toml")
    module, _, function = config.data.function.partition(":")
    feeds = getattr(importlib.import_module(module), function)(**config.data.kwargs)
    again = getattr(importlib.import_module(module), function)(**config.data.kwargs)
    assert len(feeds) == config.data.kwargs["n_batches"]
    (spec,) = config.inputs
    for feed, repeat in zip(feeds, again):
        assert set(feed) == {spec.name}
        assert feed[spec.name].shape == spec.shape and feed[spec.name].dtype == np.float32
        np.testing.assert_array_equal(feed[spec.name], repeat[spec.name])  # seeded


def test_the_detector_finds_text_on_rendered_pages_and_none_on_noise() -> None:
    import numpy as np

    onnxruntime = pytest.importorskip("onnxruntime")
    from tuner._text_images import rendered_text_images

    config = load_study_config(STUDIES / "ppocr_det.toml")
    try:
        path = config.model.resolve()
    except AmptuneError as error:
        pytest.skip(str(error))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pages = rendered_text_images(batch=2, height=320, width=320, n_batches=1)[0]["x"]
    noise = np.random.default_rng(0).uniform(-2.1, 2.7, pages.shape).astype(np.float32)
    text_share = float((session.run(None, {"x": pages})[0] > 0.3).mean())
    noise_share = float((session.run(None, {"x": noise})[0] > 0.3).mean())
    assert text_share > 0.01 and noise_share < text_share / 10
