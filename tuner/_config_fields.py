"""Reading one table of a TOML study file: typed fields, defaults, and errors that name the field.

Every error says where (file and table), which field, the value given and what would be valid;
keys nobody read are rejected with the nearest known key as a hint.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from tuner._errors import AmptuneError

T = TypeVar("T")
_REQUIRED: Any = object()


class StudyConfigError(AmptuneError):
    """A study file (or the options that stand in for one) holds a field that is not valid."""


class Table:
    """One TOML table being read; call :meth:`finish` after the last field."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        if not isinstance(data, Mapping):
            raise StudyConfigError(
                f"{source}: {where} must be a table, got {type(data).__name__} {data!r}"
            )
        self.data, self.where, self.source = data, where, source
        self._read: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.data

    def mark_read(self, key: str) -> None:
        self._read.add(key)

    def error(self, key: str, value: Any, problem: str) -> StudyConfigError:
        return StudyConfigError(f"{self.source}: {self.where} {key} = {value!r}: {problem}")

    def _get(self, key: str, default: Any) -> Any:
        self._read.add(key)
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            raise StudyConfigError(f"{self.source}: {self.where} needs the field {key!r}")
        return default

    def string(self, key: str, default: Any = _REQUIRED, *, choices: tuple[str, ...] = ()) -> Any:
        value = self._get(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, str) or not value:
            raise self.error(key, value, "must be a non-empty string")
        if choices and value not in choices:
            raise self.error(key, value, f"valid values: {', '.join(map(repr, choices))}")
        return value

    def boolean(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, value, "must be true or false")
        return value

    def integer(self, key: str, default: Any = _REQUIRED, *, minimum: int | None = None) -> Any:
        value = self._get(key, default)
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, value, "must be an integer")
        if minimum is not None and value < minimum:
            raise self.error(key, value, f"must be an integer >= {minimum}")
        return value

    def number(
        self, key: str, default: Any = _REQUIRED, *, minimum: float | None = None,
        exclusive: bool = False,
    ) -> Any:
        value = self._get(key, default)
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise self.error(key, value, "must be a number")
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            raise self.error(key, value, f"must be a number {'>' if exclusive else '>='} {minimum}")
        return float(value)

    def strings(self, key: str, default: Any = _REQUIRED) -> tuple[str, ...]:
        value = self._get(key, default)
        if isinstance(value, tuple):
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, value, "must be a list of non-empty strings")
        return tuple(value)

    def listed(self, key: str, item: Callable[[Any], T], problem: str, default: Any = _REQUIRED
               ) -> tuple[T, ...]:
        value = self._get(key, default)
        if isinstance(value, tuple):
            return value
        if not isinstance(value, list):
            raise self.error(key, value, problem)
        try:
            return tuple(item(v) for v in value)
        except (TypeError, ValueError):
            raise self.error(key, value, problem) from None

    def mapping(self, key: str, default: Any = _REQUIRED) -> dict[str, Any]:
        value = self._get(key, default)
        if not isinstance(value, Mapping):
            raise self.error(key, value, "must be a table")
        return dict(value)

    def table(self, key: str, *, required: bool = False) -> Table:
        self._read.add(key)
        if key not in self.data:
            if required:
                raise StudyConfigError(f"{self.source}: the study needs a [{self._path(key)}] table")
            return Table({}, f"[{self._path(key)}]", self.source)
        return Table(self.data[key], f"[{self._path(key)}]", self.source)

    def _path(self, key: str) -> str:
        inner = self.where.strip("[]")
        return f"{inner}.{key}" if inner and inner != "study" else key

    def unread(self) -> list[str]:
        return [key for key in self.data if key not in self._read]

    def finish(self) -> None:
        unknown = self.unread()
        if not unknown:
            return
        known = sorted(self._read)
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise StudyConfigError(
            f"{self.source}: {self.where} has unknown field(s) {', '.join(hints)}; "
            f"known fields: {', '.join(known)}"
        )
