"""``amptune inspect MODEL [--json]``: what a model holds, before choosing how to lower it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="summarize an ONNX model: opsets, inputs/outputs, op types, subgraphs, weight ranges",
        description=(
            "Summarize an ONNX model: opsets, inputs and outputs, op-type histogram, If/Loop/Scan "
            "subgraphs, weight value ranges, the weights beyond FP16 range with the nodes that "
            "read them, and the values FP16 flushes to zero."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="path to the .onnx file")
    parser.add_argument(
        "--json", action="store_true", help="print the full summary as JSON instead of text"
    )
    parser.set_defaults(handler=run_inspect)


def run_inspect(args: argparse.Namespace) -> int:
    from tuner._inspect import inspect_model
    from tuner._model_io import load_model

    summary = inspect_model(load_model(args.model))
    if args.json:
        json.dump(summary.to_dict(), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(summary.format_text())
    return 0
