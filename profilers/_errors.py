"""Errors of the measuring layer.

:class:`ProfilingError` is a user-facing error (bad input, an unusable device, a model the runtime
refuses); it derives from amptune's root error so that the command line prints it in one line.
"""

from __future__ import annotations

from tuner._errors import AmptuneError, MissingDependencyError


class ProfilingError(AmptuneError):
    """A measurement cannot be made as asked: the message names what and why."""


class DataSourceError(ProfilingError):
    """Input feeds cannot be produced or do not fit the model's inputs."""


__all__ = ["DataSourceError", "MissingDependencyError", "ProfilingError"]
