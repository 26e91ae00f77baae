"""Reading and writing ONNX models, external data included, with errors a user can act on.

Loading refuses external-data locations that leave the model's folder before any byte is read.
Saving moves weights to one ``<model file name>.data`` file next to the model when the model
would not fit protobuf's 2 GiB message limit, and replaces files only after both are complete.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError, EncodeError
from onnx import AttributeProto, GraphProto, ModelProto, TensorProto

from tuner._errors import AmptuneError, ModelLoadError

# protobuf refuses to serialize or parse a message of 2 GiB or more.
PROTOBUF_SIZE_LIMIT = 2**31 - 1
# Tensors smaller than this stay inside the model file: not worth a seek each.
EXTERNAL_DATA_SIZE_THRESHOLD = 1024
# Large tensors start on a 64 KiB boundary so ONNX Runtime can map them instead of copying.
_LARGE_TENSOR_BYTES = 1 << 20
_LARGE_TENSOR_ALIGNMENT = 1 << 16

_FOUR_BIT_TYPES = frozenset({TensorProto.INT4, TensorProto.UINT4, TensorProto.FLOAT4E2M1})

PathLike = str | os.PathLike[str]


# --- walking every tensor a model holds ---------------------------------------------------


def _tensors_in_graph(graph: GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _tensors_in_attributes(node.attribute)


def _tensors_in_attributes(attributes: Iterable[AttributeProto]) -> Iterator[TensorProto]:
    for attribute in attributes:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        if attribute.HasField("sparse_tensor"):
            yield attribute.sparse_tensor.values
            yield attribute.sparse_tensor.indices
        for sparse in attribute.sparse_tensors:
            yield sparse.values
            yield sparse.indices
        if attribute.HasField("g"):
            yield from _tensors_in_graph(attribute.g)
        for graph in attribute.graphs:
            yield from _tensors_in_graph(graph)


def iter_model_tensors(model: ModelProto) -> Iterator[TensorProto]:
    """Every TensorProto of the model: initializers, attribute tensors, subgraphs, functions."""
    yield from _tensors_in_graph(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _tensors_in_attributes(node.attribute)


def _uses_external_data(tensor: TensorProto) -> bool:
    return tensor.HasField("data_location") and tensor.data_location == TensorProto.EXTERNAL


def _external_location(tensor: TensorProto) -> str:
    for entry in tensor.external_data:
        if entry.key == "location":
            return entry.value
    return ""


# --- loading --------------------------------------------------------------------------------


def _describe_content(path: Path) -> str:
    """Say what a file that failed to parse as ONNX looks like, so the user sees the mix-up."""
    size = path.stat().st_size
    if size == 0:
        return "an empty file"
    with path.open("rb") as stream:
        head = stream.read(64)
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the model itself (run `git lfs pull`)"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive (PyTorch .pt/.pth checkpoints and .npz files are ZIP archives)"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (a Keras model?)"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file"
    if head[4:8] == b"TFL3":
        return "a TensorFlow Lite model"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a Python pickle"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # may also be a multi-byte character cut at byte 64
        text = head[:48].decode("utf-8", errors="replace")
    if text.strip() and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"a text file starting with {text[:40]!r}"
    return f"{size} bytes of binary data starting with {head[:8].hex(' ')}"


def _check_external_location(tensor: TensorProto, folder: Path, model_path: Path) -> None:
    location = _external_location(tensor)
    where = f"tensor {tensor.name!r} of {model_path}"
    if not location:
        raise ModelLoadError(f"{where} is stored as external data but names no location")
    parts = location.replace("\\", "/").split("/")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or ":" in parts[0]:
        raise ModelLoadError(
            f"{where} has external data at absolute location {location!r}: refused, a location "
            f"must be a file inside the model's folder {folder}"
        )
    if ".." in parts:
        raise ModelLoadError(
            f"{where} has external data at {location!r}, which climbs out of the model's "
            f"folder {folder} with '..': refused, a location must stay inside that folder"
        )
    real_folder = folder.resolve()
    target = (folder / location).resolve()
    if not target.is_relative_to(real_folder):
        raise ModelLoadError(
            f"{where} has external data at {location!r}, which resolves to {target} outside "
            f"the model's folder {real_folder} (through a symbolic link): refused"
        )
    if not target.is_file():
        raise ModelLoadError(
            f"{where} has its data in {location!r}, but {folder / location} "
            f"{'is not a file' if target.exists() else 'does not exist'}: copy the model "
            "together with its external data file(s)"
        )


def load_model(path: PathLike) -> ModelProto:
    """Read an ONNX model and its external data; raise ModelLoadError for anything unusable.

    External-data locations are validated (relative, no '..', resolving inside the model's
    folder, present) before any data is read.
    """
    model_path = Path(path)
    if not model_path.exists():
        raise ModelLoadError(f"model file {model_path} does not exist")
    if model_path.is_dir():
        raise ModelLoadError(f"model path {model_path} is a directory, expected an .onnx file")
    try:
        model = onnx.load_model(str(model_path), load_external_data=False)
    except PermissionError as error:
        raise ModelLoadError(f"model file {model_path} cannot be read: {error.strerror}") from error
    except (DecodeError, ValueError, RuntimeError, UnicodeDecodeError) as error:
        # ValueError/RuntimeError: the text and JSON parsers picked by file extension.
        raise ModelLoadError(
            f"{model_path} is not an ONNX model: found {_describe_content(model_path)}"
        ) from error
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise ModelLoadError(
            f"{model_path} is not an ONNX model: it parses as protobuf but has no "
            f"{'ir_version' if model.ir_version <= 0 else 'graph'}; found "
            f"{_describe_content(model_path)}"
        )
    folder = model_path.absolute().parent
    external = [tensor for tensor in iter_model_tensors(model) if _uses_external_data(tensor)]
    for tensor in external:
        _check_external_location(tensor, folder, model_path)
    if external:
        try:
            onnx.load_external_data_for_model(model, str(folder))
        except (OSError, ValueError, onnx.checker.ValidationError) as error:
            raise ModelLoadError(
                f"external data of {model_path} cannot be read: {error}"
            ) from error
        for tensor in external:  # onnx sets DEFAULT explicitly; an unset field is the same
            tensor.ClearField("data_location")
    return model


def check_model_file(path: PathLike, *, full_check: bool = False) -> None:
    """Run ``onnx.checker`` on a saved model; raise ModelLoadError naming what it found.

    The checker is given the path, not the proto: that is the only way it accepts models
    over 2 GiB, whose weights live in external data. Callers checking their own output should
    re-raise as PassError: then a failure is amptune's bug, not the user's input.
    """
    try:
        onnx.checker.check_model(str(path), full_check=full_check)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ModelLoadError(f"{path} is not a valid ONNX model: {error}") from error


# --- saving ---------------------------------------------------------------------------------


def tensor_nbytes(tensor: TensorProto) -> int:
    """Data size from dims and type, without copying raw_data out of the protobuf."""
    if tensor.data_type == TensorProto.STRING:
        return sum(len(value) for value in tensor.string_data)
    count = math.prod(tensor.dims)
    if tensor.data_type in _FOUR_BIT_TYPES:
        return (count + 1) // 2
    return count * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


@dataclass
class _StagedTensor:
    """What a tensor held before save rewrote it in place, to be put back afterwards."""

    tensor: TensorProto
    raw_data: bytes
    data_location: TensorProto.DataLocation
    external_data: list[tuple[str, str]]

    def restore(self) -> None:
        self.tensor.raw_data = self.raw_data
        del self.tensor.external_data[:]
        for key, value in self.external_data:
            entry = self.tensor.external_data.add()
            entry.key, entry.value = key, value
        if self.data_location == TensorProto.DEFAULT:
            self.tensor.ClearField("data_location")
        else:
            self.tensor.data_location = self.data_location


def _stage(tensor: TensorProto) -> _StagedTensor:
    return _StagedTensor(
        tensor,
        tensor.raw_data,
        tensor.data_location,
        [(entry.key, entry.value) for entry in tensor.external_data],
    )


def _create_temporary(folder: Path, name: str) -> tuple[Path, int]:
    # os.open with 0o666 lets the umask decide permissions, as for any file the user writes.
    temporary = folder / f".{name}.{uuid.uuid4().hex[:12]}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    return temporary, descriptor


def _write_weights(
    model: ModelProto,
    data_file: int,
    location: str,
    size_threshold: int,
    staged: list[_StagedTensor],
) -> None:
    """Move large tensors' bytes into ``data_file`` and point the tensors at it, in place.

    Each rewritten tensor is appended to ``staged`` before it changes, so that the caller can
    restore the model even when writing fails halfway.
    """
    with os.fdopen(data_file, "wb", closefd=False) as stream:
        for tensor in iter_model_tensors(model):
            external = _uses_external_data(tensor)
            if not tensor.HasField("raw_data"):
                if external:
                    raise AmptuneError(
                        f"tensor {tensor.name!r} refers to external data "
                        f"{_external_location(tensor)!r} that is not loaded: "
                        "read the model with tuner.load_model before saving it"
                    )
                continue
            if tensor_nbytes(tensor) < size_threshold:
                if external:  # back to inline storage
                    staged.append(_stage(tensor))
                    del tensor.external_data[:]
                    tensor.ClearField("data_location")
                continue
            record = _stage(tensor)
            staged.append(record)
            if len(record.raw_data) >= _LARGE_TENSOR_BYTES:
                stream.write(b"\0" * (-stream.tell() % _LARGE_TENSOR_ALIGNMENT))
            offset = stream.tell()
            stream.write(record.raw_data)
            tensor.ClearField("raw_data")
            del tensor.external_data[:]
            for key, value in (("location", location), ("offset", offset)):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, str(value)
            entry = tensor.external_data.add()
            entry.key, entry.value = "length", str(len(record.raw_data))
            tensor.data_location = TensorProto.EXTERNAL


def _inline_external_tensors(model: ModelProto, staged: list[_StagedTensor]) -> None:
    """Turn tensors marked external but holding their bytes back into inline tensors."""
    for tensor in iter_model_tensors(model):
        if not _uses_external_data(tensor):
            continue
        if not tensor.HasField("raw_data"):
            raise AmptuneError(
                f"tensor {tensor.name!r} refers to external data "
                f"{_external_location(tensor)!r} that is not loaded: read the model with "
                "tuner.load_model before saving it"
            )
        staged.append(_stage(tensor))
        del tensor.external_data[:]
        tensor.ClearField("data_location")


def _serialize(model: ModelProto, size_limit: int) -> bytes | None:
    """The model's bytes, or None where they would not fit ``size_limit``."""
    inline_bytes = sum(
        tensor_nbytes(tensor)
        for tensor in iter_model_tensors(model)
        if not _uses_external_data(tensor)
    )
    if inline_bytes > size_limit:
        return None  # certain without paying for a serialization that protobuf would refuse
    try:
        serialized = model.SerializeToString()
    except EncodeError:
        return None
    return serialized if len(serialized) <= size_limit else None


def _fsync_and_close(descriptor: int) -> None:
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def save_model(
    model: ModelProto,
    path: PathLike,
    *,
    external_data: bool | None = None,
    size_limit: int = PROTOBUF_SIZE_LIMIT,
    size_threshold: int = EXTERNAL_DATA_SIZE_THRESHOLD,
) -> None:
    """Write ``model`` to ``path`` as binary protobuf, leaving ``model`` as it was.

    ``external_data``: None decides by size (external when the model would exceed
    ``size_limit`` bytes); True always writes tensors of ``size_threshold`` bytes or more to
    ``<file name>.data`` next to the model; False never does (and fails for a model too big).
    Both files are written to temporary names first and renamed into place once complete,
    data file first: a failure while writing (a full disk, say) leaves any previous model at
    ``path`` intact and no partial file behind. ``model`` is changed in place while it is
    written (large tensors point at the data file) and restored before returning.
    """
    model_path = Path(path)
    if model_path.is_dir():
        raise AmptuneError(f"cannot save the model to {model_path}: it is a directory")
    folder = model_path.absolute().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AmptuneError(f"cannot create the folder {folder}: {error.strerror}") from error
    location = f"{model_path.name}.data"
    temporaries: list[Path] = []
    staged: list[_StagedTensor] = []
    try:
        serialized = None
        if not external_data:
            _inline_external_tensors(model, staged)
            serialized = _serialize(model, size_limit)
            if serialized is None and external_data is False:
                raise AmptuneError(
                    f"cannot save {model_path} without external data: the model exceeds "
                    f"{size_limit} bytes (protobuf's limit); save it with external data"
                )
        data_temporary = None
        if serialized is None:
            while staged:
                staged.pop().restore()
            data_temporary, data_file = _create_temporary(folder, location)
            temporaries.append(data_temporary)
            try:
                _write_weights(model, data_file, location, size_threshold, staged)
            finally:
                _fsync_and_close(data_file)
            serialized = _serialize(model, size_limit)
            if serialized is None:
                raise AmptuneError(
                    f"cannot save {model_path}: even with weights of {size_threshold} bytes or "
                    f"more moved to {location}, the model exceeds {size_limit} bytes"
                )
        model_temporary, model_file = _create_temporary(folder, model_path.name)
        temporaries.append(model_temporary)
        try:
            _write_all(model_file, serialized)
        finally:
            _fsync_and_close(model_file)
        if data_temporary is not None:
            os.replace(data_temporary, folder / location)
        os.replace(model_temporary, model_path)
        temporaries.clear()
    except OSError as error:
        raise AmptuneError(
            f"cannot save the model to {model_path}: {error.strerror or error}"
        ) from error
    finally:
        for record in reversed(staged):
            record.restore()
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]
