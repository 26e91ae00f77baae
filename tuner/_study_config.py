"""A study file (TOML) validated once into frozen dataclasses.

Sections (all documented in ``studies/README.md``): ``[model]``, ``[inputs.NAME]``, ``[data]``,
``[metric]``, ``[objectives]``, ``[search]`` (with ``[search.op_types]`` and
``[search.sensitive_nodes]``), ``[budget]``, ``[runtime]`` (with ``[runtime.provider_options]``),
``[sampler]``, and top-level ``name``, ``seed``, ``storage``. Each bad field raises
:class:`StudyConfigError` naming the file, the field, the value and what is valid; unknown keys are
rejected with the nearest known key as a hint. Nothing heavy is imported: model files, packages
and ``module:function`` targets are resolved when the study runs, not when the file is read.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces import LOWER_TYPES, RANKING_ORDERS, SEED_NAMES, SELECTION_MODES, SPACE_TYPES
from tuner._config_fields import StudyConfigError, Table
from tuner._model_source import ModelSource, read_model_source
from tuner._trial_measurement import DRIFT, ENERGY, LATENCY, MEMORY

__all__ = [
    "BudgetConfig", "DataConfig", "InputConfig", "MetricConfig", "ModelSource", "ObjectivesConfig",
    "RuntimeConfig", "SamplerConfig", "SearchConfig", "StudyConfig", "StudyConfigError",
    "load_study_config", "parse_study_config",
]

# Drift metrics the tuner can minimise, each lower-is-better (0 = identical to FP32). The first
# seven are profilers' DRIFT_METRICS (cosine -> 1 - cosine, snr_db -> -SNR, argmax_agreement ->
# 1 - agreement); thresholded_iou is 1 - IoU of an output binarised at ``threshold``;
# mean_pooled_cosine is 1 - the lowest cosine, over the batch, of embeddings mean-pooled over
# axis 1. Any other metric is a user function given as ``module:function``.
DRIFT_METRIC_NAMES: tuple[str, ...] = (
    "max_abs", "mean_abs", "max_rel", "rel_l2", "cosine", "snr_db", "argmax_agreement",
    "thresholded_iou", "mean_pooled_cosine",
)
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
DISTRIBUTIONS = ("uniform", "normal", "int")
DATA_SOURCES = ("synthetic", "npz", "callable")
DEVICES = ("cuda", "cpu")
SAMPLERS = ("tpe", "nsga2", "random", "gp")
# CUDA EP provider options a study may set (onnxruntime OrtCUDAProviderOptionsV2). The stream
# options are the profiler's: it times on its own stream.
CUDA_PROVIDER_OPTIONS = (
    "device_id", "do_copy_in_default_stream", "cudnn_conv_algo_search", "gpu_mem_limit",
    "arena_extend_strategy", "cudnn_conv_use_max_workspace", "enable_cuda_graph",
    "cudnn_conv1d_pad_to_nc1d", "tunable_op_enable", "tunable_op_tuning_enable",
    "tunable_op_max_tuning_duration_ms", "enable_skip_layer_norm_strict_mode", "prefer_nhwc",
    "use_ep_level_unified_stream", "use_tf32", "sdpa_kernel", "fuse_conv_bias",
)
_DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")


@dataclass(frozen=True)
class InputConfig:
    """One graph input: its full shape (dynamic dims fixed) and how synthetic values are drawn.

    ``uniform``: floats in [low, high); ``int``: integers in [low, high); ``normal``: mean ``low``,
    standard deviation ``high`` (the convention of ``profilers``' InputSpec, which
    :meth:`spec_kwargs` feeds).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    distribution: str = "uniform"
    low: float = 0.0
    high: float = 1.0

    def spec_kwargs(self) -> dict[str, Any]:
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype,
                "distribution": self.distribution, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class DataConfig:
    """Where the feeds come from: synthetic from the inputs, ``.npz`` file(s), or a callable
    ``module:function`` called with ``kwargs`` that returns or yields feeds."""

    source: str = "synthetic"
    n_samples: int = 8
    seed: int = 0
    path: Path | None = None
    function: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricConfig:
    """The drift that is minimised, and the tolerance that makes a trial feasible.

    ``outputs``: the outputs it is computed on (empty: all; the worst counts). A candidate whose
    drift is infinite or above ``reject_factor`` x ``tolerance`` is not timed.
    """

    name: str
    tolerance: float
    outputs: tuple[str, ...] = ()
    threshold: float | None = None  # thresholded_iou
    reduce: str = "mean"  # user metrics: mean or max over samples
    reject_factor: float = 10.0

    @property
    def is_user_function(self) -> bool:
        return ":" in self.name


@dataclass(frozen=True)
class ObjectivesConfig:
    """Latency and drift are always minimised; energy and peak memory optionally."""

    energy: bool = False
    memory: bool = False

    def names(self) -> tuple[str, ...]:
        return (LATENCY, DRIFT) + ((ENERGY,) if self.energy else ()) + ((MEMORY,) if self.memory else ())


@dataclass(frozen=True)
class SearchConfig:
    spaces: tuple[str, ...] = ("op_types", "lower_type")
    lower_types: tuple[str, ...] = ("fp16",)
    seeds: tuple[str, ...] = SEED_NAMES
    keep_io_types: bool = True
    always_fp32: tuple[str, ...] = ()
    always_lower: tuple[str, ...] = ()
    sensitive_mode: str = "top_k"
    sensitive_order: str = "drift_per_time"
    sensitive_max_k: int | None = None
    sensitivity_max_groups: int = 256


@dataclass(frozen=True)
class BudgetConfig:
    """Stop after ``n_trials`` finished trials or ``timeout_s`` seconds, whichever comes first."""

    n_trials: int | None = 50
    timeout_s: float | None = None


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "cuda"
    cuda_graph: bool = False
    provider_options: Mapping[str, str] = field(default_factory=dict)

    def session_provider_options(self) -> dict[str, str]:
        """The CUDA EP options every candidate session is built with (as onnxruntime wants
        them: strings)."""
        options = dict(self.provider_options)
        if self.cuda_graph:
            options["enable_cuda_graph"] = "1"
        return options


@dataclass(frozen=True)
class SamplerConfig:
    name: str = "tpe"
    n_startup_trials: int = 10
    population_size: int = 16


@dataclass(frozen=True)
class StudyConfig:
    name: str
    model: ModelSource
    metric: MetricConfig
    inputs: tuple[InputConfig, ...] = ()
    data: DataConfig = field(default_factory=DataConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    storage: str | None = None
    seed: int = 0
    source: Path | None = None  # the study file, when there is one

    def storage_url(self, run_dir: str | Path) -> str:
        """The Optuna storage: the study file's ``storage``, else ``study.db`` in the run dir."""
        if self.storage:
            return self.storage
        return f"sqlite:///{(Path(run_dir) / 'study.db').resolve()}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for provenance and for checking that a resumed study is the same study."""
        from dataclasses import asdict

        data = asdict(self)
        data["source"] = str(self.source) if self.source else None
        data["data"]["path"] = str(self.data.path) if self.data.path else None
        return data


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and validate a study file; relative paths in it are relative to its folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StudyConfigError(f"study file {str(path)!r} does not exist") from None
    except OSError as error:
        raise StudyConfigError(f"cannot read study file {str(path)!r}: {error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise StudyConfigError(f"{path}: not valid TOML: {error}") from None
    return parse_study_config(data, source=path)


def parse_study_config(data: Mapping[str, Any], source: str | Path = "study") -> StudyConfig:
    label = str(source)
    base = Path(source).parent if isinstance(source, Path) else Path.cwd()
    root = Table(data, "[study]", label)
    default_name = Path(source).stem if isinstance(source, Path) else "study"
    name = root.string("name", default_name)
    if not re.fullmatch(r"[\w.-]+", name):
        raise root.error("name", name, "use letters, digits, '_', '-' and '.' only")
    seed = root.integer("seed", 0, minimum=0)
    storage = root.string("storage", None)
    root.string("description", None)  # free text for readers of the file
    model = read_model_source(root.table("model", required=True), base)
    inputs = _read_inputs(root.table("inputs"))
    data_config = _read_data(root.table("data"), base, seed, inputs)
    metric = _read_metric(root.table("metric", required=True))
    objectives = _read_objectives(root.table("objectives"))
    search = _read_search(root.table("search"))
    budget = _read_budget(root.table("budget"))
    runtime = _read_runtime(root.table("runtime"))
    sampler = _read_sampler(root.table("sampler"))
    root.finish()
    return StudyConfig(
        name=name, model=model, metric=metric, inputs=inputs, data=data_config,
        objectives=objectives, search=search, budget=budget, runtime=runtime, sampler=sampler,
        storage=storage, seed=seed, source=source if isinstance(source, Path) else None,
    )


def _read_inputs(table: Table) -> tuple[InputConfig, ...]:
    inputs = []
    for name in list(table.data):
        spec = table.table(name)
        shape = spec.listed("shape", int, "must be a list of integers >= 0 (dynamic dims fixed)")
        if any(isinstance(d, bool) or d < 0 for d in shape):
            raise spec.error("shape", list(shape), "must be a list of integers >= 0")
        dtype = spec.string("dtype", "float32", choices=_DTYPES)
        integer = dtype.startswith(("int", "uint")) or dtype == "bool"
        distribution = spec.string("distribution", "int" if integer else "uniform",
                                   choices=DISTRIBUTIONS)
        if distribution == "normal":
            low, high = spec.number("mean", 0.0), spec.number("std", 1.0, minimum=0.0)
        else:
            default = [0, 2] if distribution == "int" else [0.0, 1.0]
            bounds = spec.listed("range", float, "must be [low, high] with low < high", default)
            if len(bounds) != 2 or not bounds[0] < bounds[1]:
                raise spec.error("range", list(bounds), "must be [low, high] with low < high")
            low, high = bounds
        spec.finish()
        inputs.append(InputConfig(name, tuple(shape), dtype, distribution, low, high))
    return tuple(inputs)


def _read_data(table: Table, base: Path, seed: int, inputs: tuple[InputConfig, ...]) -> DataConfig:
    source = table.string("source", "synthetic", choices=DATA_SOURCES)
    n_samples = table.integer("n_samples", 8, minimum=1)
    data_seed = table.integer("seed", seed, minimum=0)
    path = function = None
    kwargs: dict[str, Any] = {}
    if source == "synthetic" and not inputs:
        raise StudyConfigError(
            f"{table.source}: [data] source = 'synthetic' needs [inputs.NAME] tables with shapes"
        )
    if source == "npz":
        path = base / table.string("path")
    if source == "callable":
        function = table.string("function")
        if not _TARGET.match(function):
            raise table.error("function", function, "must be 'module:function'")
        kwargs = table.mapping("kwargs", {})
    table.finish()
    return DataConfig(source, n_samples, data_seed, path, function, kwargs)


def _read_metric(table: Table) -> MetricConfig:
    name = table.string("name")
    if name not in DRIFT_METRIC_NAMES and not _TARGET.match(name):
        raise table.error("name", name, f"valid: {', '.join(DRIFT_METRIC_NAMES)}, or 'module:function'")
    tolerance = table.number("tolerance", minimum=0.0)
    outputs = table.strings("outputs", ())
    threshold = table.number("threshold", 0.5 if name == "thresholded_iou" else None)
    if threshold is not None and name != "thresholded_iou":
        raise table.error("threshold", threshold, "only the thresholded_iou metric takes a threshold")
    reduce = table.string("reduce", "mean", choices=("mean", "max"))
    reject_factor = table.number("reject_factor", 10.0, minimum=1.0)
    table.finish()
    return MetricConfig(name, tolerance, outputs, threshold, reduce, reject_factor)


def _read_objectives(table: Table) -> ObjectivesConfig:
    for always in ("latency", "drift"):
        if table.has(always) and table.boolean(always) is not True:
            raise table.error(always, table.data[always], "latency and drift are always minimised")
    objectives = ObjectivesConfig(table.boolean("energy", False), table.boolean("memory", False))
    table.finish()
    return objectives


def _read_search(table: Table) -> SearchConfig:
    spaces = table.strings("spaces", ("op_types", "lower_type"))
    unknown = [s for s in spaces if s not in SPACE_TYPES]
    if unknown or not spaces:
        raise table.error("spaces", list(spaces), f"valid spaces: {', '.join(sorted(SPACE_TYPES))}")
    lower_types = table.strings("lower_types", ("fp16",))
    if not lower_types or any(t not in LOWER_TYPES for t in lower_types):
        raise table.error("lower_types", list(lower_types), f"valid: {', '.join(LOWER_TYPES)}")
    seeds = table.strings("seeds", SEED_NAMES) if table.has("seeds") else SEED_NAMES
    if any(s not in SEED_NAMES for s in seeds):
        raise table.error("seeds", list(seeds), f"valid seeds: {', '.join(SEED_NAMES)}")
    keep_io_types = table.boolean("keep_io_types", True)
    op_types = table.table("op_types")
    always_fp32 = op_types.strings("always_fp32", ())
    always_lower = op_types.strings("always_lower", ())
    both = sorted(set(always_fp32) & set(always_lower))
    if both:
        raise op_types.error("always_lower", list(always_lower), f"{both} are also in always_fp32")
    op_types.finish()
    sensitive = table.table("sensitive_nodes")
    mode = sensitive.string("mode", "top_k", choices=SELECTION_MODES)
    order = sensitive.string("order", "drift_per_time", choices=RANKING_ORDERS)
    max_k = sensitive.integer("max_k", None, minimum=1)
    max_groups = sensitive.integer("max_groups", 256, minimum=1)
    sensitive.finish()
    table.finish()
    return SearchConfig(spaces, tuple(dict.fromkeys(lower_types)), seeds, keep_io_types,
                        always_fp32, always_lower, mode, order, max_k, max_groups)


def _read_budget(table: Table) -> BudgetConfig:
    n_trials = table.integer("n_trials", None, minimum=1)
    timeout_s = table.number("timeout_s", None, minimum=0.0, exclusive=True)
    if not table.data:
        n_trials = BudgetConfig.n_trials
    elif n_trials is None and timeout_s is None:
        raise StudyConfigError(f"{table.source}: [budget] needs n_trials, timeout_s, or both")
    table.finish()
    return BudgetConfig(n_trials, timeout_s)


def _read_runtime(table: Table) -> RuntimeConfig:
    device = table.string("device", "cuda", choices=DEVICES)
    cuda_graph = table.boolean("cuda_graph", False)
    options = table.table("provider_options")
    values: dict[str, str] = {}
    for key in list(options.data):
        value = options.data[key]
        if key not in CUDA_PROVIDER_OPTIONS:
            close = difflib.get_close_matches(key, CUDA_PROVIDER_OPTIONS, n=1)
            why = ("the profiler times on its own stream" if "stream" in key else
                   (f"did you mean {close[0]!r}? " if close else "")
                   + f"known CUDA EP options: {', '.join(CUDA_PROVIDER_OPTIONS)}")
            raise options.error(key, value, f"not a provider option amptune passes on; {why}")
        options.mark_read(key)
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, int | float | str):
            raise options.error(key, value, "must be a number, a string or a boolean")
        values[key] = str(value)
    options.finish()
    table.finish()
    return RuntimeConfig(device, cuda_graph, values)


def _read_sampler(table: Table) -> SamplerConfig:
    sampler = SamplerConfig(
        table.string("name", "tpe", choices=SAMPLERS),
        table.integer("n_startup_trials", 10, minimum=0),
        table.integer("population_size", 16, minimum=2),
    )
    table.finish()
    return sampler
