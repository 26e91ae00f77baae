import sys
import textwrap

import numpy as np
import pytest

from profilers import (
    CallableDataSource,
    DataSourceError,
    NpzDataSource,
    SyntheticDataSource,
    data_source_from_argument,
    feeds_for_inputs,
    graph_inputs,
    input_specs_for_model,
    materialise_feeds,
    parse_input_argument,
)
from profilers._input_spec import InputSpec
from tests.profilers._models import matmul_chain, two_inputs_int_and_float


def test_parse_input_argument_forms():
    a = parse_input_argument("x=8x3x640x640")
    assert (a.name, a.shape, a.distribution) == ("x", (8, 3, 640, 640), None)
    b = parse_input_argument("input_ids=1,128:int(0,30522)")
    assert (b.shape, b.distribution, b.low, b.high) == ((1, 128), "int", 0.0, 30522.0)
    c = parse_input_argument("x=2x4:normal(0.5, 2)")
    assert (c.distribution, c.low, c.high) == ("normal", 0.5, 2.0)
    scalar = parse_input_argument("sr=:int(16000,16001)")
    assert scalar.shape == () and scalar.low == 16000


@pytest.mark.parametrize("text", ["x", "x=8x3:gauss(0,1)", "x=8xQ", "x=1:uniform(a,b)"])
def test_parse_input_argument_refuses_nonsense(text):
    with pytest.raises(DataSourceError, match="--input"):
        parse_input_argument(text)


def test_dynamic_dims_must_be_fixed_by_the_user():
    model = matmul_chain(batch="batch")
    with pytest.raises(DataSourceError, match="dynamic dimension.*'batch'.*--input x=Nx64"):
        input_specs_for_model(model)
    (spec,) = input_specs_for_model(model, [parse_input_argument("x=5x64")])
    assert spec.shape == (5, 64) and spec.dtype == "float32"
    assert (spec.distribution, spec.low, spec.high) == ("uniform", 0.0, 1.0)


def test_shape_must_fit_the_declared_dims():
    model = matmul_chain(batch="batch", size=64)
    with pytest.raises(DataSourceError, match="dimension 1 is fixed to 64"):
        input_specs_for_model(model, [parse_input_argument("x=5x63")])
    with pytest.raises(DataSourceError, match="rank 3"):
        input_specs_for_model(model, [parse_input_argument("x=5x64x1")])
    with pytest.raises(DataSourceError, match="names 'y', which the model does not have"):
        input_specs_for_model(model, [parse_input_argument("x=5x64"), parse_input_argument("y=1")])


def test_synthetic_source_is_reproducible_and_respects_ranges():
    model = two_inputs_int_and_float()
    specs = input_specs_for_model(
        model,
        [parse_input_argument("ids=2x16:int(5,9)"), parse_input_argument("scale=:normal(3,0)")],
    )
    source = SyntheticDataSource(specs, num_samples=6, seed=11)
    feeds = materialise_feeds(source, graph_inputs(model))
    again = materialise_feeds(SyntheticDataSource(specs, num_samples=6, seed=11), graph_inputs(model))
    other = materialise_feeds(SyntheticDataSource(specs, num_samples=6, seed=12), graph_inputs(model))
    assert len(feeds) == 6
    for feed, same in zip(feeds, again):
        np.testing.assert_array_equal(feed["ids"], same["ids"])
    assert any(not np.array_equal(f["ids"], o["ids"]) for f, o in zip(feeds, other))
    ids = np.stack([f["ids"] for f in feeds])
    assert ids.dtype == np.int64 and ids.shape == (6, 2, 16)
    assert ids.min() >= 5 and ids.max() <= 8 and set(np.unique(ids)) == {5, 6, 7, 8}
    assert all(f["scale"].dtype == np.float32 and f["scale"][0] == 3.0 for f in feeds)
    assert not np.array_equal(feeds[0]["ids"], feeds[1]["ids"])  # samples differ
    assert source.describe()["inputs"][0]["distribution"] == "int"


def test_default_integer_range_and_float_range():
    model = two_inputs_int_and_float()
    ids, _scale = input_specs_for_model(model, [parse_input_argument("ids=4x4")])
    assert (ids.distribution, ids.low, ids.high) == ("int", 0.0, 2.0)
    rng = np.random.default_rng(0)
    assert set(np.unique(ids.sample(rng))) <= {0, 1}
    values = InputSpec("s", (1000,), "float32", "uniform", -2.0, 3.0).sample(rng)
    assert values.min() >= -2.0 and values.max() < 3.0 and values.std() > 1.0


def test_input_spec_validation():
    with pytest.raises(DataSourceError, match="empty"):
        InputSpec("x", (2,), "float32", "uniform", 1.0, 1.0)
    with pytest.raises(DataSourceError, match="standard deviation"):
        InputSpec("x", (2,), "float32", "normal", 0.0, -1.0)


def test_npz_file_and_folder(tmp_path):
    model = matmul_chain(batch="batch")
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((3, 64)).astype(np.float32) for _ in range(3)]
    for index, array in enumerate(arrays):
        np.savez(tmp_path / f"sample_{index}.npz", x=array)
    (tmp_path / "notes.txt").write_text("ignored")
    feeds = materialise_feeds(NpzDataSource(tmp_path), graph_inputs(model))
    assert len(feeds) == 3
    for feed, array in zip(feeds, arrays):
        np.testing.assert_array_equal(feed["x"], array)
    one = materialise_feeds(data_source_from_argument(str(tmp_path / "sample_1.npz")),
                            graph_inputs(model))
    np.testing.assert_array_equal(one[0]["x"], arrays[1])
    assert NpzDataSource(tmp_path).describe()["files"] == [f"sample_{i}.npz" for i in range(3)]


def test_npz_mismatches_are_named(tmp_path):
    model = matmul_chain(batch="batch")
    np.savez(tmp_path / "wrong_dtype.npz", x=np.zeros((2, 64), dtype=np.float64))
    with pytest.raises(DataSourceError, match="'x' has dtype float64.*float32"):
        materialise_feeds(NpzDataSource(tmp_path / "wrong_dtype.npz"), graph_inputs(model))
    np.savez(tmp_path / "wrong_name.npz", z=np.zeros((2, 64), dtype=np.float32))
    with pytest.raises(DataSourceError, match="missing 'x'; unknown 'z'"):
        materialise_feeds(NpzDataSource(tmp_path / "wrong_name.npz"), graph_inputs(model))
    np.savez(tmp_path / "wrong_dim.npz", x=np.zeros((2, 32), dtype=np.float32))
    with pytest.raises(DataSourceError, match="dimension 1 must be 64"):
        materialise_feeds(NpzDataSource(tmp_path / "wrong_dim.npz"), graph_inputs(model))
    with pytest.raises(DataSourceError, match="does not exist"):
        NpzDataSource(tmp_path / "absent.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match="no .npz files"):
        NpzDataSource(tmp_path / "empty")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "amptune_test_feeds.py").write_text(textwrap.dedent("""
        import numpy as np

        def feeds(count=4):
            for i in range(count):
                yield {"x": np.full((2, 64), float(i), dtype=np.float32)}

        def one_feed():
            return {"x": np.zeros((2, 64), dtype=np.float32)}

        def broken():
            raise RuntimeError("camera unplugged")
            yield
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "amptune_test_feeds"
    sys.modules.pop("amptune_test_feeds", None)


def test_callable_source(user_module):
    model = matmul_chain(batch="batch")
    source = data_source_from_argument(f"{user_module}:feeds")
    assert isinstance(source, CallableDataSource)
    feeds = materialise_feeds(source, graph_inputs(model))
    assert [float(f["x"][0, 0]) for f in feeds] == [0.0, 1.0, 2.0, 3.0]
    limited = materialise_feeds(CallableDataSource(f"{user_module}:feeds", {"count": 9}),
                                graph_inputs(model), max_samples=5)
    assert len(limited) == 5


def test_callable_source_errors(user_module):
    model = matmul_chain(batch="batch")
    with pytest.raises(DataSourceError, match="returned one feed"):
        materialise_feeds(CallableDataSource(f"{user_module}:one_feed"), graph_inputs(model))
    with pytest.raises(DataSourceError, match="RuntimeError: camera unplugged"):
        materialise_feeds(CallableDataSource(f"{user_module}:broken"), graph_inputs(model))
    with pytest.raises(DataSourceError, match="no attribute 'absent'"):
        CallableDataSource(f"{user_module}:absent")
    with pytest.raises(DataSourceError, match="cannot import"):
        CallableDataSource("amptune_no_such_module:feeds")
    with pytest.raises(DataSourceError, match="neither"):
        data_source_from_argument("no/such/file.npz")


def test_feeds_for_fp16_inputs():
    import onnx

    model = matmul_chain(batch="batch")
    feeds = [{"x": np.full((2, 64), 1.0 / 3.0, dtype=np.float32)}]
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    (adapted,) = feeds_for_inputs(feeds, graph_inputs(model))
    assert adapted["x"].dtype == np.float16
    assert adapted["x"][0, 0] == np.float16(1.0 / 3.0)
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT32
    with pytest.raises(DataSourceError, match="only float inputs"):
        feeds_for_inputs(feeds, graph_inputs(model))


def test_scalar_inputs_keep_their_empty_shape() -> None:
    import numpy as np

    from profilers import InputSpec

    spec = InputSpec("sr", (), "int64", "int", 16000, 16001)
    value = spec.sample(np.random.default_rng(0))
    assert value.shape == () and value.dtype == np.int64 and int(value) == 16000
