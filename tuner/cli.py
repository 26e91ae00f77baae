"""The ``amptune`` command line: one sub-command module per verb, collected here."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tuner._errors import AmptuneError
from tuner._version import __version__

# Each module exposes register(subparsers) which adds its parser and sets ``handler``:
# a function (argparse.Namespace) -> int exit code. Modules are imported only here, and
# each imports its heavy dependencies lazily inside the handler.
_COMMAND_MODULES = (
    "tuner._cli_inspect",
    "tuner._cli_convert",
    "tuner._cli_profile",
    "tuner._cli_tune",
    "tuner._cli_export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amptune",
        description="Measured mixed-precision tuning for ONNX models on NVIDIA GPUs.",
    )
    parser.add_argument("--version", action="version", version=f"amptune {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue  # that verb is not part of this build yet
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except AmptuneError as error:
        print(f"amptune {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"amptune {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
