"""Errors of the search-space layer."""

from __future__ import annotations


class PlanValidationError(ValueError):
    """A precision plan names a field with a value that is not valid."""


class SearchSpaceError(ValueError):
    """A search space cannot be built as asked (an op type the model lacks, a missing ranking).

    The tuner turns it into a user-facing error that names the study-file field.
    """
