"""Loading and saving models: external data, refused locations, unusable files, atomic saves."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import convert_model_to_external_data

from tuner import AmptuneError, ModelLoadError, _model_io, load_model, save_model
from tuner._model_io import check_model_file

_RNG = np.random.default_rng(7)
WEIGHT = _RNG.standard_normal((64, 64)).astype(np.float32)  # 16 KiB: external by default
BIAS = _RNG.standard_normal(64).astype(np.float32)  # 256 B: stays inline by default
SHIFT = _RNG.standard_normal(64).astype(np.float32)  # in a Constant node
BRANCH_WEIGHT = _RNG.standard_normal((64, 64)).astype(np.float32)  # in an If branch


def build_model() -> onnx.ModelProto:
    """x @ W + b + shift, then (if flag) @ a weight held in the then-branch's own initializer."""
    then_branch = helper.make_graph(
        [helper.make_node("MatMul", ["hidden", "branch_w"], ["then_out"])],
        "then_branch",
        [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [1, 64])],
        initializer=[numpy_helper.from_array(BRANCH_WEIGHT, "branch_w")],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["hidden"], ["else_out"])],
        "else_branch",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [1, 64])],
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["xw"], name="matmul"),
        helper.make_node("Add", ["xw", "b"], ["xwb"], name="add_bias"),
        helper.make_node(
            "Constant", [], ["shift"], name="shift", value=numpy_helper.from_array(SHIFT)
        ),
        helper.make_node("Add", ["xwb", "shift"], ["hidden"], name="add_shift"),
        helper.make_node(
            "If", ["flag"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        initializer=[numpy_helper.from_array(WEIGHT, "w"), numpy_helper.from_array(BIAS, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def run_model(path: Path) -> np.ndarray:
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 64)
    return session.run(None, {"x": x, "flag": np.array(True)})[0]


def expected_output() -> np.ndarray:
    x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 64)
    return (x @ WEIGHT + BIAS + SHIFT) @ BRANCH_WEIGHT


def external_locations(path: Path) -> dict[str, str]:
    """Tensor name -> external location, read without loading the data."""
    model = onnx.load(str(path), load_external_data=False)
    return {
        tensor.name: {e.key: e.value for e in tensor.external_data}["location"]
        for tensor in _model_io.iter_model_tensors(model)
        if tensor.data_location == TensorProto.EXTERNAL
    }


def save_with_onnx_external_data(folder: Path, location: str = "weights.bin") -> Path:
    model = build_model()
    convert_model_to_external_data(model, location=location, size_threshold=1024)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save_model(model, str(path))
    return path


def point_external_data_at(path: Path, location: str) -> None:
    """Rewrite every external-data location of the saved model at ``path``."""
    model = onnx.load(str(path), load_external_data=False)
    for tensor in _model_io.iter_model_tensors(model):
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())


# --- loading --------------------------------------------------------------------------------


def test_external_data_written_by_onnx_loads_whole(tmp_path: Path) -> None:
    path = save_with_onnx_external_data(tmp_path)
    assert set(external_locations(path)) == {"w", "branch_w"}  # b is under the threshold

    model = load_model(path)

    assert model.SerializeToString() == build_model().SerializeToString()
    np.testing.assert_allclose(run_model(path), expected_output(), rtol=1e-5, atol=1e-5)


def test_external_data_in_a_subfolder_of_the_model_folder_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    path = save_with_onnx_external_data(tmp_path, location="weights/all.bin")
    assert (tmp_path / "weights" / "all.bin").is_file()
    assert load_model(path).SerializeToString() == build_model().SerializeToString()


def _move_data_outside(tmp_path: Path) -> tuple[Path, Path]:
    """A model in models/ whose (valid) data file sits in elsewhere/, outside its folder."""
    path = save_with_onnx_external_data(tmp_path / "models")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    data = outside / "weights.bin"
    (tmp_path / "models" / "weights.bin").rename(data)
    return path, data


def test_absolute_external_location_is_refused(tmp_path: Path) -> None:
    path, data = _move_data_outside(tmp_path)
    point_external_data_at(path, str(data))
    with pytest.raises(ModelLoadError, match="absolute location") as caught:
        load_model(path)
    assert str(data) in str(caught.value) and "'w'" in str(caught.value)


def test_external_location_climbing_out_with_dotdot_is_refused(tmp_path: Path) -> None:
    path, _ = _move_data_outside(tmp_path)
    point_external_data_at(path, "../elsewhere/weights.bin")
    with pytest.raises(ModelLoadError, match=r"'\.\./elsewhere/weights\.bin'.*'\.\.'"):
        load_model(path)


def test_dotdot_is_refused_even_when_it_comes_back_inside(tmp_path: Path) -> None:
    path = save_with_onnx_external_data(tmp_path / "models")
    point_external_data_at(path, "../models/weights.bin")
    with pytest.raises(ModelLoadError, match=r"\.\./models/weights\.bin"):
        load_model(path)


def test_symlink_escaping_the_model_folder_is_refused(tmp_path: Path) -> None:
    path, data = _move_data_outside(tmp_path)
    (tmp_path / "models" / "weights.bin").symlink_to(data)
    with pytest.raises(ModelLoadError, match="outside the model's folder") as caught:
        load_model(path)
    assert "'weights.bin'" in str(caught.value) and str(data) in str(caught.value)


def test_missing_external_data_file_is_named(tmp_path: Path) -> None:
    path = save_with_onnx_external_data(tmp_path)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelLoadError, match=r"'weights\.bin'.*does not exist"):
        load_model(path)


def test_truncated_external_data_file_is_a_load_error(tmp_path: Path) -> None:
    path = save_with_onnx_external_data(tmp_path)
    data = tmp_path / "weights.bin"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="external data"):
        load_model(path)


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist") as caught:
        load_model(tmp_path / "absent.onnx")
    assert "absent.onnx" in str(caught.value)


def test_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="is a directory"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"", "an empty file"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n", "Git LFS pointer"),
        (b"\x89HDF\r\n\x1a\n" + bytes(200), "HDF5"),
        (b"\x80\x04\x95\x10\x00\x00", "pickle"),
        (bytes(range(256)) * 4, "binary data starting with 00 01 02"),
        ("not a model, just words: ünïcode\n".encode() * 3, "text file starting with"),
    ],
)
def test_file_that_is_not_onnx_says_what_it_is(tmp_path: Path, content: bytes, found: str) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError) as caught:
        load_model(path)
    message = str(caught.value)
    assert str(path) in message and "not an ONNX model" in message and found in message


def test_zip_archive_is_named(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.onnx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data.pkl", b"\x80\x04K\x01.")
    with pytest.raises(ModelLoadError, match="ZIP archive"):
        load_model(path)


def test_protobuf_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tensor.onnx"
    path.write_bytes(numpy_helper.from_array(WEIGHT, "w").SerializeToString())
    with pytest.raises(ModelLoadError, match="not an ONNX model"):
        load_model(path)


# --- saving ---------------------------------------------------------------------------------


def test_small_model_is_saved_in_one_file(tmp_path: Path) -> None:
    model = build_model()
    save_model(model, tmp_path / "model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert (tmp_path / "model.onnx").read_bytes() == model.SerializeToString()


def test_forced_external_save_round_trips_and_leaves_the_model_untouched(tmp_path: Path) -> None:
    model = build_model()
    before = model.SerializeToString()
    path = tmp_path / "out" / "model.onnx"

    save_model(model, path, external_data=True)

    assert model.SerializeToString() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
    # Tensors of 1 KiB or more go out, the subgraph's included; b and the shift stay in.
    locations = external_locations(path)
    assert set(locations) == {"w", "branch_w"} and set(locations.values()) == {"model.onnx.data"}
    assert path.stat().st_size < 2048
    check_model_file(path)
    assert load_model(path).SerializeToString() == before
    np.testing.assert_allclose(run_model(path), expected_output(), rtol=1e-5, atol=1e-5)


def test_size_threshold_decides_which_tensors_go_out(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    save_model(build_model(), path, external_data=True, size_threshold=0)
    # Every tensor with raw data: initializers, the Constant's value, the branch initializer.
    assert set(external_locations(path)) == {"w", "b", "branch_w", ""}
    assert load_model(path).SerializeToString() == build_model().SerializeToString()
    np.testing.assert_allclose(run_model(path), expected_output(), rtol=1e-5, atol=1e-5)


def test_model_over_the_size_limit_goes_external_by_itself(tmp_path: Path) -> None:
    model = build_model()
    size = len(model.SerializeToString())
    below, above = tmp_path / "below.onnx", tmp_path / "above.onnx"

    save_model(model, below, size_limit=size)
    save_model(model, above, size_limit=size - 1)

    assert not (tmp_path / "below.onnx.data").exists() and not external_locations(below)
    assert (tmp_path / "above.onnx.data").is_file() and external_locations(above)
    assert load_model(above).SerializeToString() == model.SerializeToString()


def test_refusing_external_data_for_a_model_over_the_limit_fails_cleanly(tmp_path: Path) -> None:
    model = build_model()
    with pytest.raises(AmptuneError, match="without external data"):
        save_model(model, tmp_path / "model.onnx", external_data=False, size_limit=1000)
    assert list(tmp_path.iterdir()) == []


def test_model_too_big_even_with_external_data_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(AmptuneError, match="even with weights"):
        save_model(build_model(), tmp_path / "model.onnx", size_limit=100)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_model_and_restores_the_proto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.onnx"
    old = helper.make_model(helper.make_graph([], "old", [], []))
    save_model(old, path)
    model = build_model()
    before = model.SerializeToString()

    def disk_full(descriptor: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_model_io, "_write_all", disk_full)
    with pytest.raises(AmptuneError, match="No space left on device"):
        save_model(model, path, external_data=True)

    assert model.SerializeToString() == before  # tensors moved out were put back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporaries
    assert path.read_bytes() == old.SerializeToString()


def test_large_tensors_start_on_an_aligned_offset(tmp_path: Path) -> None:
    model = build_model()
    big = np.ones(300_000, dtype=np.float32)  # 1.2 MB, after 16 KiB + 16 KiB of others
    model.graph.initializer.append(numpy_helper.from_array(big, "big"))
    path = tmp_path / "model.onnx"
    save_model(model, path, external_data=True)
    stored = onnx.load(str(path), load_external_data=False)
    entry = {e.key: e.value for e in stored.graph.initializer[-1].external_data}
    assert int(entry["offset"]) > 0 and int(entry["offset"]) % 65536 == 0
    np.testing.assert_array_equal(
        numpy_helper.to_array(load_model(path).graph.initializer[-1]), big
    )


def test_saved_file_permissions_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        save_model(build_model(), tmp_path / "model.onnx", external_data=True)
    finally:
        os.umask(previous)
    assert (tmp_path / "model.onnx").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "model.onnx.data").stat().st_mode & 0o777 == 0o644


def test_tensor_whose_external_data_was_not_loaded_cannot_be_saved(tmp_path: Path) -> None:
    source = save_with_onnx_external_data(tmp_path / "src")
    unloaded = onnx.load(str(source), load_external_data=False)
    with pytest.raises(AmptuneError, match="'w' refers to external data 'weights.bin'"):
        save_model(unloaded, tmp_path / "out" / "model.onnx")
    assert list((tmp_path / "out").iterdir()) == []


def test_saving_onto_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AmptuneError, match="is a directory"):
        save_model(build_model(), tmp_path)


def test_check_model_file_reports_an_invalid_model(tmp_path: Path) -> None:
    model = build_model()
    model.graph.node[0].input[1] = "nowhere"  # reads a tensor nothing defines
    path = tmp_path / "broken.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelLoadError, match="not a valid ONNX model.*nowhere"):
        check_model_file(path)
