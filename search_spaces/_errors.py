"""Errors of the search-space layer."""

from __future__ import annotations


class PlanValidationError(ValueError):
    """A precision plan names a field with a value that is not valid."""
