"""Everything a tuning run is, resolved once: the study (a file, or the options that stand in for
one), the command-line overrides, the device, the session and latency settings, and the run
directory's manifest (``run.json``) from which ``amptune export`` and ``amptune verify`` rebuild
exactly the same model, inputs and measurement settings in another process.

Overrides that change what is measured (``--batch``, ``--data-kwarg``, ``--max-samples``,
``--max-groups``, the device) become part of the study's fingerprint, so that a run with other
inputs never resumes a study measured on different ones; the budget (``--n-trials``,
``--timeout``) is not part of it, so that rerunning with a larger budget goes on where it stopped.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuner._config_fields import StudyConfigError
from tuner._errors import AmptuneError
from tuner._study_config import StudyConfig, parse_study_config

MANIFEST = "run.json"
MANIFEST_FORMAT = 1
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class TuneOverrides:
    """What the command line changes in a study (None: as the study file says)."""

    n_trials: int | None = None
    timeout_s: float | None = None
    batch: int | None = None
    max_samples: int | None = None
    data_kwargs: Mapping[str, Any] = field(default_factory=dict)
    max_groups: int | None = None
    device: str = "auto"  # auto: the study's device when this machine has it, else the CPU
    min_measure_s: float | None = None
    max_warmup_s: float | None = None


def apply_overrides(raw: Mapping[str, Any], overrides: TuneOverrides) -> dict[str, Any]:
    """A copy of a study file's raw tables with the overrides written into them."""
    data: dict[str, Any] = copy.deepcopy(dict(raw))
    budget = data.setdefault("budget", {})
    if overrides.n_trials is not None:
        budget["n_trials"] = overrides.n_trials
    if overrides.timeout_s is not None:
        budget["timeout_s"] = overrides.timeout_s
    source = data.get("data", {}).get("source", "synthetic")
    kwargs = dict(data.get("data", {}).get("kwargs", {}))
    if overrides.data_kwargs:
        if source != "callable":
            raise StudyConfigError(
                f"--data-kwarg applies to a callable data source; this study's [data] source is "
                f"{source!r}"
            )
        kwargs.update(overrides.data_kwargs)
    if overrides.batch is not None:
        if source == "npz":
            raise StudyConfigError("--batch cannot change the batch of .npz inputs: the files fix it")
        if source == "callable":
            if "batch" not in kwargs:
                raise StudyConfigError(
                    "--batch: this study's data function takes no 'batch' keyword in [data.kwargs]; "
                    "set its size with --data-kwarg NAME=VALUE"
                )
            kwargs["batch"] = overrides.batch
        for table in data.get("inputs", {}).values():
            if table.get("shape"):
                table["shape"] = [overrides.batch, *table["shape"][1:]]
    if kwargs:
        data.setdefault("data", {})["kwargs"] = kwargs
    if overrides.max_groups is not None:
        data.setdefault("search", {}).setdefault("sensitive_nodes", {})["max_groups"] = (
            overrides.max_groups
        )
    return data


def parse_data_kwarg(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``: the value read as JSON when it is (numbers, booleans), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise AmptuneError(f"--data-kwarg {text!r} is not KEY=VALUE, e.g. height=320")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def _flag(value: str) -> bool:
    return str(value).strip().lower() in _TRUE


def session_config_for(config: StudyConfig, device: str) -> Any:
    """The candidates' SessionConfig: the study's CUDA EP options, typed; nothing on the CPU."""
    from profilers import SessionConfig

    if device == "cpu":
        return SessionConfig(device="cpu")
    options = dict(config.runtime.session_provider_options())
    kwargs: dict[str, Any] = {}
    for name in ("use_tf32", "enable_cuda_graph", "prefer_nhwc"):
        if name in options:
            kwargs[name] = _flag(options.pop(name))
    if "cudnn_conv_algo_search" in options:
        kwargs["cudnn_conv_algo_search"] = options.pop("cudnn_conv_algo_search")
    if "device_id" in options:
        kwargs["device_id"] = int(options.pop("device_id"))
    return SessionConfig(device="cuda", extra_provider_options=options, **kwargs)


def resolve_device(asked: str, study_device: str) -> tuple[str, str | None]:
    """(device, note): the note says plainly why the run measures on the CPU, when it does."""
    from profilers import cuda_provider_available

    if asked == "cpu":
        return "cpu", "CPU run (--device cpu): every latency is a CPU measurement, not a GPU one"
    if asked == "cuda" or (asked == "auto" and study_device == "cuda"):
        if cuda_provider_available():
            return "cuda", None
        if asked == "cuda":
            raise AmptuneError(
                "--device cuda: this onnxruntime has no CUDAExecutionProvider; install "
                "amptune[gpu] on a machine with an NVIDIA GPU, or use --device cpu"
            )
        return "cpu", ("no GPU here (onnxruntime has no CUDAExecutionProvider): running on the "
                       "CPU EP; every latency is a CPU measurement, not a GPU one")
    return "cpu", "the study asks for the CPU: every latency is a CPU measurement"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def feeds_sha256(feeds: Sequence[Mapping[str, Any]]) -> str:
    """One digest of every array of every feed (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for feed in feeds:
        for name in sorted(feed):
            array = feed[name]
            digest.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


@dataclass
class TuneSetup:
    """A study with its overrides applied, the device chosen and the measurement settings fixed."""

    config: StudyConfig
    study_data: dict[str, Any]  # the raw tables, overrides applied (what run.json stores)
    study_file: str | None
    max_samples: int | None
    device: str
    device_note: str | None
    session: Any  # profilers.SessionConfig
    latency: Any  # profilers.LatencyConfig

    @classmethod
    def create(cls, data: Mapping[str, Any], study_file: str | Path | None,
               overrides: TuneOverrides) -> TuneSetup:
        from profilers import LatencyConfig

        raw = apply_overrides(data, overrides)
        source: str | Path = Path(study_file).resolve() if study_file else "command line"
        config = parse_study_config(raw, source=source)
        device, note = resolve_device(overrides.device, config.runtime.device)
        if overrides.max_samples is not None and overrides.max_samples < 1:
            raise AmptuneError(f"--max-samples must be >= 1, got {overrides.max_samples}")
        latency_fields: dict[str, Any] = {}
        if overrides.min_measure_s is not None:
            # Windows shrink with the measurement, or min_windows of them would outlast it.
            latency_fields["min_measure_s"] = overrides.min_measure_s
            latency_fields["window_s"] = min(LatencyConfig.window_s,
                                             overrides.min_measure_s / LatencyConfig.min_windows)
        if overrides.max_warmup_s is not None:
            latency_fields["max_warmup_s"] = overrides.max_warmup_s
            latency_fields["min_warmup_s"] = min(1.0, overrides.max_warmup_s)
        try:
            latency = LatencyConfig(**latency_fields)
        except AmptuneError as error:
            raise AmptuneError(f"--min-measure-s / --max-warmup-s: {error}") from None
        return cls(config, raw, str(source) if study_file else None, overrides.max_samples,
                   device, note, session_config_for(config, device), latency)

    # -- what is measured ----------------------------------------------------------------------

    def model_path(self) -> Path:
        return self.config.model.resolve()

    def data_source(self) -> Any:
        from profilers import CallableDataSource, InputSpec, NpzDataSource, SyntheticDataSource

        data = self.config.data
        if data.source == "npz":
            return NpzDataSource(data.path)  # type: ignore[arg-type]
        if data.source == "callable":
            return CallableDataSource(str(data.function), data.kwargs)
        specs = [InputSpec(**spec.spec_kwargs()) for spec in self.config.inputs]
        return SyntheticDataSource(specs, num_samples=data.n_samples, seed=data.seed)

    def feeds(self, model: Any) -> list[dict[str, Any]]:
        """The study's inputs, materialised once and checked against the model's inputs."""
        from profilers import graph_inputs, materialise_feeds

        return materialise_feeds(self.data_source(), graph_inputs(model), self.max_samples)

    def provider_options(self) -> dict[str, str]:
        """The CUDA EP options candidates were measured with (what the exported snippet needs)."""
        return self.session.cuda_provider_options() if self.device == "cuda" else {}

    def fingerprint(self, model_sha256: str, inputs_sha256: str) -> dict[str, Any]:
        """What makes two runs the same study: not the budget, the sampler or the storage."""
        config = self.config.to_dict()
        fingerprint = {
            "model_sha256": model_sha256,
            "inputs_sha256": inputs_sha256,
            "device": self.device,
            "metric": config["metric"],
            "objectives": config["objectives"],
            "search": config["search"],
            "session": self.session.to_dict(),
            "latency": asdict(self.latency),
        }
        # As the storage gives it back (JSON: tuples become lists), so that a resumed run compares
        # equal to what it stored.
        return dict(json.loads(json.dumps(fingerprint, default=str)))

    # -- the manifest --------------------------------------------------------------------------

    def to_manifest(self, model_path: Path, model_sha256: str, inputs_sha256: str) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "study_name": self.config.name,
            "study_file": self.study_file,
            "study_data": self.study_data,
            "max_samples": self.max_samples,
            "device": self.device,
            "device_note": self.device_note,
            "cpu_measurement": self.device == "cpu",
            "session": self.session.to_dict(),
            "latency": asdict(self.latency),
            "model_path": str(model_path),
            "model_sha256": model_sha256,
            "inputs_sha256": inputs_sha256,
            "runs": [],
        }

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> TuneSetup:
        """The setup a run directory was tuned with (same device, session and latency settings)."""
        from profilers import LatencyConfig, SessionConfig

        study_file = manifest.get("study_file")
        source: str | Path = Path(study_file) if study_file else "command line"
        config = parse_study_config(manifest["study_data"], source=source)
        session = dict(manifest["session"])
        return cls(
            config, dict(manifest["study_data"]), study_file, manifest.get("max_samples"),
            manifest["device"], manifest.get("device_note"), SessionConfig(**session),
            LatencyConfig(**manifest["latency"]),
        )


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise AmptuneError(
            f"{str(run_dir)!r} is not an amptune run directory (no {MANIFEST}); give the --out "
            "folder of an `amptune tune` run"
        )
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as error:
        raise AmptuneError(f"cannot read {path}: {error}") from None


def write_manifest(run_dir: Path, manifest: Mapping[str, Any]) -> Path:
    path = run_dir / MANIFEST
    scratch = path.with_suffix(".json.tmp")
    scratch.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    scratch.replace(path)
    return path


def record_run(manifest: dict[str, Any], outcome: Mapping[str, Any]) -> None:
    """Appends one run (this process's) to the manifest's history."""
    manifest.setdefault("runs", []).append({"finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                           time.gmtime()),
                                            **outcome})
