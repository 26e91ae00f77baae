"""The real-model zoo: every model is found and loads; MiniLM exports once, right, and is cached."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.conftest import _cuda_device_visible
from tuner import _model_zoo
from tuner._errors import AmptuneError, MissingDependencyError, ModelLoadError
from tuner._model_zoo import REAL_MODELS, model_cache_dir, real_model_path

PACKAGED = sorted(name for name, model in REAL_MODELS.items() if not model.exported)
_NUMPY_OF_ONNX = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}


def test_zoo_names_the_five_models() -> None:
    assert set(REAL_MODELS) == {"ppocr-det", "ppocr-rec", "ppocr-cls", "silero-vad", "minilm"}
    with pytest.raises(TypeError):
        REAL_MODELS["other"] = REAL_MODELS["minilm"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        REAL_MODELS["minilm"].version = "9"  # type: ignore[misc]


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_model_loads_and_matches_its_input_specs(name: str, real_model) -> None:
    path = real_model(name)
    assert path.is_file() and path.suffix == ".onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    spec = REAL_MODELS[name]
    graph_inputs = {value.name: value.type.tensor_type for value in model.graph.input}
    assert list(graph_inputs) == [item.name for item in spec.inputs]
    for item in spec.inputs:
        tensor = graph_inputs[item.name]
        assert _NUMPY_OF_ONNX[tensor.elem_type] == item.dtype, item.name
        dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]
        assert len(dims) == len(item.shape), item.name
        for fixed, default in zip(dims, item.shape, strict=True):
            assert fixed in (None, -1, default), (item.name, dims, item.shape)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL_MODELS))
def test_sample_inputs_run_on_cpu(name: str, real_model) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(
        str(real_model(name)), providers=["CPUExecutionProvider"]
    )
    outputs = session.run(None, REAL_MODELS[name].sample_inputs(seed=1, batch=2))
    assert outputs[0].shape[0] == 2
    assert all(np.isfinite(output).all() for output in outputs)


def test_sample_inputs_follow_shapes_batch_and_seed() -> None:
    silero = REAL_MODELS["silero-vad"]
    default = silero.sample_inputs()
    assert {key: value.shape for key, value in default.items()} == {
        "input": (64, 512),
        "state": (2, 64, 128),
        "sr": (),
    }
    assert default["sr"].dtype == np.int64 and int(default["sr"]) == 16000
    assert not default["state"].any()
    assert -1.0 <= default["input"].min() and default["input"].max() < 1.0
    small = silero.sample_inputs(batch=3)
    assert small["input"].shape == (3, 512) and small["state"].shape == (2, 3, 128)

    minilm = REAL_MODELS["minilm"]
    first, again = minilm.sample_inputs(seed=7), minilm.sample_inputs(seed=7)
    assert first["input_ids"].shape == (32, 128) and first["input_ids"].dtype == np.int64
    assert np.array_equal(first["input_ids"], again["input_ids"])
    assert not np.array_equal(first["input_ids"], minilm.sample_inputs(seed=8)["input_ids"])
    assert first["input_ids"].min() >= 999 and first["input_ids"].max() < 30522
    assert (first["attention_mask"] == 1).all() and (first["token_type_ids"] == 0).all()
    assert REAL_MODELS["ppocr-det"].sample_inputs()["x"].shape == (8, 3, 640, 640)


def test_input_arguments_are_the_text_the_input_parser_reads() -> None:
    input_spec = pytest.importorskip("profilers._input_spec")
    silero = REAL_MODELS["silero-vad"].input_arguments(batch=4)
    assert silero == [
        "input=4x512:uniform(-1.0,1.0)",
        "state=2x4x128:normal(0.0,0)",
        "sr=:int(16000,16001)",
    ]
    rng = np.random.default_rng(0)
    for name, model in REAL_MODELS.items():
        for spec, text in zip(model.inputs, model.input_arguments(), strict=True):
            parsed = input_spec.parse_input_argument(text)
            assert (parsed.name, parsed.shape) == (spec.name, spec.shape), name
            drawn = input_spec.InputSpec(
                parsed.name, parsed.shape, spec.dtype, parsed.distribution, parsed.low, parsed.high
            ).sample(rng)
            assert drawn.dtype == spec.sample(rng).dtype, text
            if spec.constant is not None:
                assert (drawn == spec.constant).all(), text
            else:  # float32 rounding may reach `high`
                assert spec.low <= drawn.min() and drawn.max() <= spec.high, text


def test_missing_package_names_the_install_command() -> None:
    absent = dataclasses.replace(REAL_MODELS["ppocr-cls"], package="amptune-no-such-package")
    with pytest.raises(MissingDependencyError) as caught:
        absent.locate_source()
    assert isinstance(caught.value, AmptuneError)
    message = str(caught.value)
    assert "'ppocr-cls'" in message
    assert "pip install --no-deps amptune-no-such-package==1.4.4" in message


def test_other_package_version_is_refused_with_the_installed_one_named() -> None:
    installed = importlib.metadata.version("rapidocr-onnxruntime")
    other = dataclasses.replace(REAL_MODELS["ppocr-det"], version="0.0.1")
    with pytest.raises(
        MissingDependencyError, match="pip install --no-deps rapidocr-onnxruntime==0.0.1"
    ) as caught:
        other.locate_source()
    assert f"version {installed} is installed" in str(caught.value)


def test_missing_file_and_unknown_name_are_load_errors() -> None:
    moved = dataclasses.replace(REAL_MODELS["ppocr-det"], path="rapidocr_onnxruntime/gone.onnx")
    with pytest.raises(ModelLoadError, match="gone.onnx"):
        moved.locate_source()
    with pytest.raises(ModelLoadError, match="valid names: minilm, ppocr-cls, ppocr-det"):
        real_model_path("resnet50")


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AMPTUNE_CACHE_DIR", str(tmp_path / "amp"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache_dir() == tmp_path / "amp" / "models"
    monkeypatch.delenv("AMPTUNE_CACHE_DIR")
    assert model_cache_dir() == tmp_path / "xdg" / "amptune" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert model_cache_dir() == Path.home() / ".cache" / "amptune" / "models"


# -- the cache mechanism, with a stand-in exporter (the real one is tested below) -------------


def _fake_export(weights: Path, destination: Path) -> str:
    destination.write_bytes(b"stand-in for an exported model")
    return "fake"


def test_cache_key_changes_with_the_recipe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AMPTUNE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_model_zoo, "_export_minilm", _fake_export)
    first = real_model_path("minilm")
    assert real_model_path("minilm") == first
    monkeypatch.setattr(_model_zoo, "EXPORT_RECIPE_VERSION", _model_zoo.EXPORT_RECIPE_VERSION + 1)
    second = real_model_path("minilm")
    assert second != first and second.parent.parent == first.parent.parent
    assert json.loads((second.parent / "export.json").read_text())["exporter"] == "fake"


def test_interrupted_export_leaves_no_cache_entry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def interrupted(weights: Path, destination: Path) -> str:
        destination.write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setenv("AMPTUNE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_model_zoo, "_export_minilm", interrupted)
    with pytest.raises(KeyboardInterrupt):
        real_model_path("minilm")
    assert list((tmp_path / "models").iterdir()) == []
    monkeypatch.setattr(_model_zoo, "_export_minilm", _fake_export)
    assert real_model_path("minilm").read_bytes() == b"stand-in for an exported model"


def test_export_without_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_version = importlib.metadata.version

    def version(package: str) -> str:
        if package == "torch":
            raise importlib.metadata.PackageNotFoundError(package)
        return real_version(package)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(
        MissingDependencyError,
        match=r"'torch' is not installed; install it with: pip install torch",
    ):
        real_model_path("minilm")


# -- the real MiniLM export, into a cache of its own ------------------------------------------


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A real export into an empty cache: the cold path, timed. Tests reuse it as the cache."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AMPTUNE_CACHE_DIR", str(tmp_path_factory.mktemp("amptune-cache")))
        started = time.perf_counter()
        path = real_model_path("minilm")
        return path, time.perf_counter() - started


@pytest.mark.slow
def test_minilm_export_is_a_clean_dynamic_graph(minilm_export: tuple[Path, float]) -> None:
    path, seconds = minilm_export
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.ir_version <= 10
    assert {(entry.domain, entry.version) for entry in model.opset_import} == {("", 18)}
    for value in model.graph.input:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert [dim.dim_param for dim in value.type.tensor_type.shape.dim] == ["batch", "sequence"]
    assert [value.name for value in model.graph.input] == [
        "input_ids",
        "attention_mask",
        "token_type_ids",
    ]
    (output,) = model.graph.output
    dims = output.type.tensor_type.shape.dim
    assert output.name == "last_hidden_state"
    assert [dims[0].dim_param, dims[1].dim_param, dims[2].dim_value] == ["batch", "sequence", 384]
    op_types = {node.op_type for node in model.graph.node}
    assert {"MatMul", "LayerNormalization", "Softmax", "Erf"} <= op_types
    assert sum(node.op_type == "MatMul" for node in model.graph.node) == 48  # 6 layers x 8
    provenance = json.loads((path.parent / "export.json").read_text())
    assert provenance["exporter"] in ("torchscript", "dynamo")
    assert provenance["versions"]["torch"] == importlib.metadata.version("torch")
    print(f"MiniLM export: {seconds:.2f} s with the {provenance['exporter']} exporter")


@pytest.mark.slow
def test_minilm_export_matches_torch(minilm_export: tuple[Path, float]) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    import torch
    import transformers

    path, _ = minilm_export
    rng = np.random.default_rng(3)
    # Another batch and length than the 2 x 16 the export traced, with padding in one row.
    input_ids = rng.integers(999, 30522, size=(3, 37), dtype=np.int64)
    attention_mask = np.ones_like(input_ids)
    attention_mask[1, 20:] = 0
    token_type_ids = np.zeros_like(input_ids)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (exported,) = session.run(
        None,
        {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
        },
    )
    weights = REAL_MODELS["minilm"].locate_source()
    bert = transformers.BertModel.from_pretrained(
        str(weights), attn_implementation="eager", local_files_only=True
    ).eval()
    with torch.no_grad():
        reference = bert(
            input_ids=torch.from_numpy(input_ids),
            attention_mask=torch.from_numpy(attention_mask),
            token_type_ids=torch.from_numpy(token_type_ids),
        ).last_hidden_state.numpy()
    assert exported.shape == reference.shape == (3, 37, 384)
    assert float(np.abs(exported - reference).max()) < 1e-4


@pytest.mark.slow
def test_second_call_hits_the_cache(
    minilm_export: tuple[Path, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = minilm_export
    before = path.stat()

    def no_export(weights: Path, destination: Path) -> str:
        raise AssertionError("a cache hit must not export again")

    monkeypatch.setattr(_model_zoo, "_export_minilm", no_export)
    monkeypatch.setenv("AMPTUNE_CACHE_DIR", str(path.parent.parent.parent))
    started = time.perf_counter()
    again = real_model_path("minilm")
    seconds = time.perf_counter() - started
    assert again == path
    after = again.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    assert seconds < 0.5
    print(f"MiniLM cache hit: {seconds * 1e3:.1f} ms")


@pytest.mark.slow
def test_cache_hit_imports_no_torch(minilm_export: tuple[Path, float]) -> None:
    path, _ = minilm_export
    probe = (
        "import sys\n"
        "from tuner._model_zoo import real_model_path\n"
        "print(real_model_path('minilm'))\n"
        "print(sorted({'torch', 'transformers'} & set(sys.modules)))\n"
    )
    environment = dict(os.environ, AMPTUNE_CACHE_DIR=str(path.parent.parent.parent))
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.stdout.splitlines() == [str(path), "[]"]


# -- the GPU skip in conftest -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "-1"])
def test_hidden_devices_are_not_visible(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert "CUDA_VISIBLE_DEVICES" in (_cuda_device_visible() or "")


@pytest.mark.gpu
def test_gpu_tests_run_only_where_cuda_is_usable() -> None:
    import onnxruntime

    assert "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    assert _cuda_device_visible() is None
