"""Resolving a user's ``module:function`` (a data source, a drift metric) to the callable itself."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from profilers._errors import ProfilingError


def load_callable(
    target: str, *, purpose: str, error: type[ProfilingError] = ProfilingError
) -> Callable[..., Any]:
    """Imports ``module.path:function`` (``function`` may be dotted: ``Class.method``).

    ``purpose`` names the option in error messages (e.g. ``"data source"``); failures raise
    ``error``.
    """
    module_name, sep, attribute_path = target.partition(":")
    if not sep or not module_name or not attribute_path:
        raise error(f"{purpose} {target!r} is not of the form module:function")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as import_error:
        raise error(
            f"{purpose} {target!r}: cannot import {module_name!r}: {import_error}"
        ) from None
    for part in attribute_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise error(
                f"{purpose} {target!r}: module {module_name!r} has no attribute {attribute_path!r}"
            ) from None
    if not callable(obj):
        raise error(f"{purpose} {target!r} is not callable ({type(obj).__name__})")
    return obj
