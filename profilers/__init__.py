"""How fast, how accurate and how hot is a built candidate? Latency, telemetry, drift, per-node time.

Importing this package imports neither onnxruntime, pynvml, cuda-python nor CUPTI: each is imported
where a measurement first needs it.
"""

from profilers._data_sources import (
    CallableDataSource,
    DataSource,
    Feed,
    NpzDataSource,
    SyntheticDataSource,
    check_feed,
    data_source_from_argument,
    feeds_for_inputs,
    materialise_feeds,
)
from profilers._drift import (
    DEFAULT_RELATIVE_FLOOR,
    DRIFT_METRICS,
    DriftReport,
    OutputDrift,
    ThresholdedIoUDrift,
    UserMetric,
    UserMetricResult,
    compare_outputs,
)
from profilers._errors import DataSourceError, ProfilingError
from profilers._input_spec import (
    GraphInput,
    InputArgument,
    InputSpec,
    graph_inputs,
    input_specs_for_model,
    parse_input_argument,
)
from profilers._latency import LatencyConfig, LatencyResult, RunTimer, measure_latency
from profilers._node_times import (
    NodeTime,
    OpTypeTime,
    PerNodeReport,
    attribute_gpu_time,
    cpu_node_times,
)
from profilers._placement import NodePlacement, PlacementReport, placement_from_node_runs
from profilers._profile_report import ProfileReport, profile_candidate
from profilers._profiler import (
    DriftMeasurement,
    LatencyMeasurement,
    OnnxRuntimeProfiler,
    Profiler,
    ReferenceOutputs,
)
from profilers._provenance import collect_provenance
from profilers._sessions import SessionConfig, build_session, cuda_provider_available
from profilers._statistics import LatencyStats, median_confidence_ranks, relative_spread
from profilers._telemetry import (
    NvmlTelemetry,
    TelemetryReport,
    decode_clock_event_reasons,
    summarise_samples,
)

__all__ = [
    "DEFAULT_RELATIVE_FLOOR",
    "DRIFT_METRICS",
    "CallableDataSource",
    "DataSource",
    "DataSourceError",
    "DriftMeasurement",
    "DriftReport",
    "Feed",
    "GraphInput",
    "InputArgument",
    "InputSpec",
    "LatencyConfig",
    "LatencyMeasurement",
    "LatencyResult",
    "LatencyStats",
    "NodePlacement",
    "NodeTime",
    "NpzDataSource",
    "NvmlTelemetry",
    "OnnxRuntimeProfiler",
    "OpTypeTime",
    "OutputDrift",
    "PerNodeReport",
    "PlacementReport",
    "ProfileReport",
    "Profiler",
    "ProfilingError",
    "ReferenceOutputs",
    "RunTimer",
    "SessionConfig",
    "SyntheticDataSource",
    "TelemetryReport",
    "ThresholdedIoUDrift",
    "UserMetric",
    "UserMetricResult",
    "attribute_gpu_time",
    "build_session",
    "check_feed",
    "collect_provenance",
    "compare_outputs",
    "cpu_node_times",
    "cuda_provider_available",
    "data_source_from_argument",
    "decode_clock_event_reasons",
    "feeds_for_inputs",
    "graph_inputs",
    "input_specs_for_model",
    "materialise_feeds",
    "measure_latency",
    "median_confidence_ranks",
    "parse_input_argument",
    "placement_from_node_runs",
    "profile_candidate",
    "relative_spread",
    "summarise_samples",
]
