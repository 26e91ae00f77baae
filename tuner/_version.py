"""The installed amptune version (from the package metadata) without importing anything heavy."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("amptune")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
