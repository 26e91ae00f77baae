"""Terminal rendering of a ModelSummary: computing it is ``tuner._inspect``'s job, not this one's."""

from __future__ import annotations

import math
from collections.abc import Sequence

from tuner._inspect import ModelSummary, NodeReference, SubgraphSummary, ValueSummary

# Long lists are cut in the terminal; ``--json`` carries every entry.
_MAX_ROWS = 12


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _shape(value: ValueSummary) -> str:
    if value.shape is None:
        return "rank unknown"
    return "[" + ", ".join("?" if dim is None else str(dim) for dim in value.shape) + "]"


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in rows
    ]


def _cut(lines: list[str], total: int, what: str) -> list[str]:
    if total <= _MAX_ROWS:
        return lines
    return lines + [f"  ... and {total - _MAX_ROWS} more {what} (see --json)"]


def _reader(reader: NodeReference) -> str:
    where = f"{reader.graph}: " if reader.graph else ""
    return f"{where}{reader.name} ({reader.op_type})"


def _subgraph_lines(subgraphs: Sequence[SubgraphSummary], depth: int) -> list[str]:
    lines = []
    for subgraph in subgraphs:
        lines.append(
            f"{'  ' * depth}{subgraph.node_name} ({subgraph.op_type}) {subgraph.attribute}: "
            f"{subgraph.node_count} nodes"
        )
        lines += _subgraph_lines(subgraph.subgraphs, depth + 1)
    return lines


def format_summary_text(summary: ModelSummary) -> str:
    producer = " ".join(p for p in (summary.producer_name, summary.producer_version) if p)
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in summary.opset_imports)
    lines = [
        f"IR version {summary.ir_version}; opsets: {opsets or 'none'}; producer: "
        + (producer or "unknown"),
    ]
    for title, values in (("Inputs", summary.inputs), ("Outputs", summary.outputs)):
        lines.append(f"{title}:")
        value_rows = [(v.name, v.element_type, _shape(v)) for v in values]
        lines += _table(value_rows) if value_rows else ["  none"]

    lines.append(
        f"Nodes: {summary.node_count} in the main graph, {summary.total_node_count} in all graphs"
    )
    op_rows = [
        (f"{o.domain}.{o.op_type}" if o.domain else o.op_type, str(o.count))
        for o in summary.op_types
    ]
    if op_rows:
        lines.append("Op types (all graphs):")
        lines += _table(op_rows)

    if summary.subgraphs:
        lines.append("Subgraphs:")
        lines += _subgraph_lines(summary.subgraphs, 1)

    weights = summary.weights
    lines.append(
        f"Weights (initializers and Constant values): {weights.count} tensors, "
        f"{_size(weights.total_bytes)}; {len(weights.float_tensors)} float"
    )
    if weights.float_tensors:
        largest = max(
            (t.max_abs for t in weights.float_tensors if t.max_abs is not None), default=None
        )
        lines.append(
            f"  largest |v|: {_number(largest)}; smallest non-zero |v|: "
            f"{_number(weights.min_nonzero_abs)}"
        )
    nonfinite = sum(t.nonfinite_count for t in weights.float_tensors)
    if nonfinite:
        lines.append(f"  {nonfinite} NaN or infinite values")

    out_of_range = summary.fp16_out_of_range
    if out_of_range:
        lines.append(f"Values beyond FP16 range (|v| > 65504): {len(out_of_range)} tensors")
        range_rows = [("tensor", "values", "max |v|", "read by")]
        for entry in out_of_range[:_MAX_ROWS]:
            readers = ", ".join(_reader(r) for r in entry.readers) or "no node"
            name = f"{entry.graph}: {entry.tensor}" if entry.graph else entry.tensor
            range_rows.append((name, str(entry.count), _number(entry.max_abs), readers))
        lines += _cut(_table(range_rows), len(out_of_range), "tensors")
    else:
        lines.append("Values beyond FP16 range (|v| > 65504): none")

    flushing = sorted(summary.fp16_flush_tensors, key=lambda t: -t.fp16_flush_count)
    if flushing:
        total = sum(t.fp16_flush_count for t in flushing)
        lines.append(
            f"Values FP16 flushes to zero (0 < |v| <= 2**-25): {total} in {len(flushing)} tensors"
        )
        flush_rows = [("tensor", "values", "of", "share of norm")]
        for stats in flushing[:_MAX_ROWS]:
            name = f"{stats.graph}: {stats.name}" if stats.graph else stats.name
            size = str(math.prod(stats.shape))
            flush_rows.append(
                (name, str(stats.fp16_flush_count), size, f"{stats.fp16_flush_norm_fraction:.2e}")
            )
        lines += _cut(_table(flush_rows), len(flushing), "tensors")
    else:
        lines.append("Values FP16 flushes to zero (0 < |v| <= 2**-25): none")
    return "\n".join(lines)
