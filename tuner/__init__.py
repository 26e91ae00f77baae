"""How a precision plan is applied to an ONNX model and how the search runs.

Importing this package imports neither onnxruntime, plotly nor pynvml.
"""

from tuner._errors import AmptuneError, MissingDependencyError, ModelLoadError, PassError, PlanError
from tuner._version import __version__

__all__ = [
    "AmptuneError",
    "MissingDependencyError",
    "ModelLoadError",
    "PassError",
    "PlanError",
    "__version__",
]
