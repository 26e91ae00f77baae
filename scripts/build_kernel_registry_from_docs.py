"""Builds tuner/data/cuda_ep_kernels.json from onnxruntime's docs/OperatorKernels.md.

ONNX Runtime's CI generates that page from `get_all_opkernel_def()` of a CUDA build
(tools/python/gen_opkernel_doc.py), so its "Operators implemented by CUDAExecutionProvider"
section is the CUDA kernel registry in table form. Use it where the live call is not available
(on our GPU host it crashes: the bundle lacks the TensorRT provider library that it loads).
Where a full onnxruntime-gpu install works, prefer scripts/dump_cuda_kernel_registry.py.

Usage:
    python scripts/build_kernel_registry_from_docs.py OperatorKernels.md --commit SHA \
        [-o tuner/data/cuda_ep_kernels.json] [--provider CUDAExecutionProvider]

The table rows this reads look like:
    |**Operator Domain:** *ai.onnx*||||
    |Conv|*in* X:**T**<br> ...|22+|**T** = tensor(bfloat16), tensor(float)|
    |||[11, 21]|**T** = tensor(double), tensor(float), tensor(float16)|
    |||9|**T1** = tensor(int64)<br/> **T2** = tensor(float)|
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

OPEN_ENDED = 2**31 - 1  # onnxruntime's INT_MAX for "no upper opset bound"
GENERATED_BY = "scripts/build_kernel_registry_from_docs.py"

_SECTION = re.compile(r"^## Operators implemented by (?P<provider>\w+)\s*$")
_DOMAIN_ROW = re.compile(r"^\*\*Operator Domain:\*\*\s*\*(?P<domain>[^*]+)\*$")
_CONSTRAINT = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*=\s*(?P<types>.*)$")
_OPEN_RANGE = re.compile(r"^(\d+)\+$")
_CLOSED_RANGE = re.compile(r"^\[(\d+),\s*(\d+)\]$")
_SINGLE = re.compile(r"^(\d+)$")


class MarkdownFormatError(ValueError):
    """The page does not have the table layout this parser reads."""


def parse_opset_range(cell: str) -> tuple[int, int]:
    """"13+" -> (13, INT_MAX); "[7, 12]" -> (7, 12); "9" -> (9, 9)."""
    cell = cell.strip()
    if match := _OPEN_RANGE.match(cell):
        return int(match.group(1)), OPEN_ENDED
    if match := _CLOSED_RANGE.match(cell):
        return int(match.group(1)), int(match.group(2))
    if match := _SINGLE.match(cell):
        return int(match.group(1)), int(match.group(1))
    raise MarkdownFormatError(f"opset version {cell!r} is none of '13+', '[7, 12]', '9'")


def _split_types(text: str) -> list[str]:
    """Splits "tensor(a), seq(tensor(b))" at the commas outside parentheses."""
    types, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            types.append(text[start:i].strip())
            start = i + 1
    types.append(text[start:].strip())
    return [t for t in types if t]


def parse_type_constraints(cell: str) -> dict[str, list[str]]:
    """"**T** = tensor(float), tensor(float16)<br/> **I** = tensor(int64)" -> {"T": [..], ..}."""
    constraints: dict[str, list[str]] = {}
    for part in cell.split("<br/>"):
        part = part.strip()
        if not part:
            continue
        match = _CONSTRAINT.match(part)
        if not match:
            raise MarkdownFormatError(f"type constraint {part!r} is not '**Name** = types'")
        constraints[match.group("name")] = sorted(_split_types(match.group("types")))
    return constraints


def parse_operator_kernels(markdown: str, provider: str = "CUDAExecutionProvider"
                           ) -> dict[str, list[dict]]:
    """The provider's kernels from OperatorKernels.md, in the kernel registry file's layout."""
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines)
                  if (m := _SECTION.match(line)) and m.group("provider") == provider), None)
    if start is None:
        found = [m.group("provider") for line in lines if (m := _SECTION.match(line))]
        raise MarkdownFormatError(f"no 'Operators implemented by {provider}' section; the page "
                                  f"has sections for: {', '.join(found) or 'none'}")
    kernels: dict[str, list[dict]] = {}
    domain: str | None = None
    op_type: str | None = None
    for number, line in enumerate(lines[start + 1:], start=start + 2):
        if line.startswith(("## ", "<a name=")):
            break  # the next provider's section
        if not line.startswith("|"):
            continue
        cells = line.strip()[1:-1].split("|")
        where = f"line {number}"
        if len(cells) == 1:  # "| |" separators between domains
            continue
        if len(cells) != 4:
            raise MarkdownFormatError(f"{where}: expected 4 table cells, found {len(cells)}")
        first = cells[0].strip()
        if first == "Op Name" or set(first) == {"-"}:
            continue
        if match := _DOMAIN_ROW.match(first):
            domain, op_type = match.group("domain").strip(), None
            continue
        if first:
            op_type = first
        if domain is None or op_type is None:
            raise MarkdownFormatError(f"{where}: a kernel row before any domain or op name")
        try:
            since, until = parse_opset_range(cells[2])
            constraints = parse_type_constraints(cells[3])
        except MarkdownFormatError as error:
            raise MarkdownFormatError(f"{where} ({op_type}): {error}") from None
        kernels.setdefault(f"{domain or 'ai.onnx'}:{op_type}", []).append(
            {"since": since, "until": until, "type_constraints": constraints})
    if not kernels:
        raise MarkdownFormatError(f"the {provider} section has no kernel rows")
    for entries in kernels.values():
        entries.sort(key=lambda entry: (entry["since"], entry["until"]))
    return dict(sorted(kernels.items()))


def build_registry(markdown: str, commit: str, provider: str = "CUDAExecutionProvider") -> dict:
    return {
        "provider": provider,
        "source": (f"microsoft/onnxruntime docs/OperatorKernels.md at commit {commit} "
                   f"(generated by onnxruntime CI from get_all_opkernel_def() of a CUDA build)"),
        "generated_by": GENERATED_BY,
        "kernels": parse_operator_kernels(markdown, provider),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("markdown", type=Path, help="a copy of docs/OperatorKernels.md")
    parser.add_argument("--commit", required=True,
                        help="the onnxruntime commit the page was read at (recorded as source)")
    default_output = Path(__file__).resolve().parents[1] / "tuner" / "data" / "cuda_ep_kernels.json"
    parser.add_argument("-o", "--output", type=Path, default=default_output)
    parser.add_argument("--provider", default="CUDAExecutionProvider")
    args = parser.parse_args(argv)
    try:
        registry = build_registry(args.markdown.read_text(encoding="utf-8"), args.commit,
                                  args.provider)
    except (OSError, MarkdownFormatError) as error:
        print(f"error: {args.markdown}: {error}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8") as handle:
        json.dump(registry, handle, indent=1)
        handle.write("\n")
    entries = sum(len(v) for v in registry["kernels"].values())
    print(f"{len(registry['kernels'])} op types, {entries} kernels for {args.provider} "
          f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
