"""One root for every error a user can cause and fix; anything else is a bug in amptune."""

from __future__ import annotations


class AmptuneError(Exception):
    """A user-facing error: bad input, a missing dependency, an unusable model.

    The command line prints these as one line without a traceback and exits non-zero.
    """


class ModelLoadError(AmptuneError):
    """The model file cannot be read, is not ONNX, or refers to data it may not use."""


class PlanError(AmptuneError):
    """A precision plan does not fit the model (unknown node name or op type, ...)."""


class MissingDependencyError(AmptuneError):
    """An optional dependency (onnxruntime, plotly, pynvml, ...) is needed but not installed."""


class PassError(Exception):
    """A graph pass broke its own pre- or post-condition: a bug, not a user error."""
