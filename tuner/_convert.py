"""``convert_precision``: an FP32 ONNX model and a precision plan in, a mixed-precision model out."""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field

import onnx

from search_spaces import PrecisionPlan
from tuner._conversion_report import ConversionReport, NodeDecision, WeightNote
from tuner._errors import PassError, PlanError
from tuner._kernel_registry import KernelRegistry
from tuner._lower_types import lower_float_type
from tuner._passes import GraphPass, PassManager, PassResult
from tuner._precision_decisions import ModelDecisions, WeightPolicy, decide_precisions
from tuner._precision_rewrite import PrecisionRewrite
from tuner._schema_binding import schema_exists
from tuner._tensor_types import iterate_graphs, tensor_types

_IN_MEMORY_CHECK_LIMIT = 2**31 - 2**26  # protobuf's 2 GB limit, less room for the graph itself


@dataclass(frozen=True)
class ConversionOptions:
    """How the converter treats what the plan does not say.

    ``clamp_out_of_range``: clamp weight values beyond the lower type's range (each is reported)
    instead of keeping their readers in FP32. ``max_flushed_norm_share``: see WeightPolicy.
    ``registry``: the CUDA EP kernel knowledge (default: the shipped data; add to it with
    ``KernelRegistry.default().with_additions(...)``). ``check``: run onnx.checker on the result.
    """

    clamp_out_of_range: bool = False
    max_flushed_norm_share: float = WeightPolicy.max_flushed_norm_share
    registry: KernelRegistry | None = None
    check: bool = True


@dataclass
class ConversionResult:
    model: onnx.ModelProto
    report: ConversionReport
    plan: PrecisionPlan = field(default_factory=PrecisionPlan)


def _qualified_op_types(model: onnx.ModelProto) -> set[str]:
    found: set[str] = set()
    for graph in iterate_graphs(model.graph):
        for node in graph.node:
            found.add(node.op_type)
            if node.domain not in ("", "ai.onnx"):
                found.add(f"{node.domain}:{node.op_type}")
    return found


def validate_plan(model: onnx.ModelProto, plan: PrecisionPlan) -> list[str]:
    """Raise PlanError for node names the model lacks and op types no schema knows; return
    warnings for op types that are valid but absent from the model."""
    names = {node.name for graph in iterate_graphs(model.graph) for node in graph.node}
    missing = sorted(plan.keep_fp32_nodes - names)
    if missing:
        hints = []
        for name in missing[:5]:
            close = difflib.get_close_matches(name, names, n=3)
            hints.append(f"{name!r}" + (f" (did you mean {', '.join(map(repr, close))}?)"
                                        if close else ""))
        raise PlanError(
            f"keep_fp32_nodes: {len(missing)} node name(s) not in the model: {', '.join(hints)}"
        )
    present = _qualified_op_types(model)
    warnings: list[str] = []
    for op_type in sorted(plan.keep_fp32_op_types):
        if op_type in present:
            continue
        domain, _, bare = op_type.rpartition(":")
        if not schema_exists(bare, domain):
            close = difflib.get_close_matches(op_type, sorted(present), n=3)
            raise PlanError(
                f"keep_fp32_op_types: {op_type!r} is not an ONNX op type"
                + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
                + "; use 'domain:OpType' for operators outside the default domain"
            )
        warnings.append(f"keep_fp32_op_types: {op_type!r} does not occur in this model")
    return warnings


def name_unnamed_nodes(model: onnx.ModelProto) -> int:
    """Give every node a unique name so that plans and reports can refer to it."""
    graphs = list(iterate_graphs(model.graph))
    counts = Counter(node.name for graph in graphs for node in graph.node if node.name)
    taken = set(counts)
    renamed = 0
    seen: set[str] = set()
    for graph in graphs:
        for index, node in enumerate(graph.node):
            if node.name and (counts[node.name] == 1 or node.name not in seen):
                seen.add(node.name)
                continue
            stem = node.name or f"{node.op_type}_{index}"
            candidate, suffix = stem, 1
            while candidate in taken:
                suffix += 1
                candidate = f"{stem}_{suffix}"
            node.name = candidate
            taken.add(candidate)
            seen.add(candidate)
            renamed += 1
    return renamed


class PrecisionPass(GraphPass):
    """Lowers the nodes a plan allows to FP16/BF16, with shared Casts and converted weights.

    requires: node names unique; a plan that fits the model.
    ensures: no Cast reads a Cast that undoes it; every tensor one type; the checker passes.
    """

    def __init__(self, plan: PrecisionPlan, options: ConversionOptions,
                 source: onnx.ModelProto | None = None) -> None:
        self.plan, self.options = plan, options
        # The source model holds the main graph's initializers when the model given to ``call``
        # is a copy without them (see copy_without_initializers); types are read from it too.
        self.source = source
        self.report = ConversionReport(lower=plan.lower, plan_digest=plan.digest())
        self.added_casts: list[tuple[str, str]] = []

    def requires(self, model: onnx.ModelProto) -> None:
        names = [node.name for graph in iterate_graphs(model.graph) for node in graph.node]
        if len(names) != len(set(names)) or not all(names):
            raise PassError("node names must be unique and non-empty (run name_unnamed_nodes)")

    def call(self, model: onnx.ModelProto) -> PassResult:
        lower = lower_float_type(self.plan.lower)
        registry = self.options.registry or KernelRegistry.default()
        types = tensor_types(self.source if self.source is not None else model)
        detached = self.source.graph.initializer if self.source is not None else ()
        policy = WeightPolicy(self.options.clamp_out_of_range, self.options.max_flushed_norm_share)
        decisions = decide_precisions(model, self.plan, lower, registry, types, policy, detached)
        graphs = list(iterate_graphs(model.graph))
        rewrite = PrecisionRewrite(model, decisions, types, lower,
                                   self.options.clamp_out_of_range, self.report, graphs)
        rewrite.run()
        self.added_casts = rewrite.added_casts
        self._record(decisions)
        return PassResult(model, modified=any(d.lowered for d in decisions.nodes.values()))

    def _record(self, decisions: ModelDecisions) -> None:
        lower = self.plan.lower
        for name in decisions.order:
            decision = decisions.nodes[name]
            node = decision.node
            precision: str
            if decision.lowered:
                precision = lower
            elif decision.reason in ("no_float_data", "unknown_types"):
                precision = "unchanged"
            else:
                precision = "fp32"
            self.report.nodes.append(NodeDecision(
                decision.graph_name, name, node.op_type, node.domain or "ai.onnx", precision,
                decision.reason, decision.detail))
        for name, weight_range in sorted(decisions.weight_ranges.items()):
            self.report.weights.append(self._weight_note(decisions, name, weight_range))
        for name in sorted(decisions.weights_in_place - set(decisions.weight_ranges)):
            self.report.weights.append(WeightNote(name, "converted", 0, 0.0, 0, 0, 0.0, ()))

    def _weight_note(self, decisions: ModelDecisions, name: str, weight_range) -> WeightNote:
        readers = tuple(sorted({reader for reader, _ in decisions.consumers.get(name, [])}))
        if name in decisions.weights_in_place:
            action = "converted"
        elif any(decisions.nodes[r].lowered for r in readers):
            action = "duplicated"
        else:
            action = "kept_fp32"
        return WeightNote(name, action, weight_range.size, weight_range.max_abs,
                          weight_range.out_of_range, weight_range.flushed_to_zero,
                          weight_range.flushed_norm_share, readers)

    def ensures(self, model: onnx.ModelProto) -> None:
        # Every Cast the rewrite adds reads a tensor as its producer wrote it, never another
        # added Cast's output: so no chain, and no pair that undoes itself, can appear.
        added_outputs = {output for _, output in self.added_casts}
        for source, output in self.added_casts:
            if source in added_outputs:
                raise PassError(f"added Cast {output!r} reads added Cast output {source!r}")
        if not self.options.check:
            return
        from tuner._model_io import iter_model_tensors, tensor_nbytes

        if sum(tensor_nbytes(t) for t in iter_model_tensors(model)) >= _IN_MEMORY_CHECK_LIMIT:
            # The checker takes a model over 2 GB only as a saved file: `amptune convert`
            # checks the file it writes (check_model_file).
            self.report.warnings.append(
                "onnx.checker skipped in memory (model over 2 GB); check the saved file")
            return
        onnx.checker.check_model(model)


def convert_precision(
    model: onnx.ModelProto,
    plan: PrecisionPlan,
    options: ConversionOptions | None = None,
) -> ConversionResult:
    """A copy of ``model`` in which the nodes ``plan`` allows run in FP16 or BF16.

    The input model is not changed. See ConversionReport for what was done to each node.
    """
    options = options or ConversionOptions()
    if plan.keep_all_fp32:
        converted = onnx.ModelProto()
        converted.CopyFrom(model)
        report = ConversionReport(lower=plan.lower, plan_digest=plan.digest())
        report.warnings.extend(validate_plan(converted, plan))
        report.cast_count = _count_casts(converted)
        return ConversionResult(converted, report, plan)
    # Names first: a plan may name nodes by the names amptune gives unnamed ones (inspect shows them).
    converted = copy_without_initializers(model)
    renamed = name_unnamed_nodes(converted)
    warnings = validate_plan(converted, plan)
    precision_pass = PrecisionPass(plan, options, source=model)
    result = PassManager([precision_pass])(converted)
    report = precision_pass.report
    report.cast_count = _count_casts(result.model)
    report.warnings.extend(warnings)
    if renamed:
        report.warnings.append(f"{renamed} unnamed or duplicate-named node(s) were given names")
    return ConversionResult(result.model, report, plan)


def _copy_fields(source, target, skip: str) -> None:
    for descriptor, value in source.ListFields():
        if descriptor.name == skip:
            continue
        field_value = getattr(target, descriptor.name)
        if descriptor.is_repeated:
            field_value.extend(value)
        elif descriptor.message_type is not None:
            field_value.CopyFrom(value)
        else:
            setattr(target, descriptor.name, value)


def copy_without_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose main graph has no initializers: the converter writes each one
    itself, converted or copied, so FP32 weights that get converted are never copied first."""
    shell = onnx.ModelProto()
    _copy_fields(model, shell, skip="graph")
    _copy_fields(model.graph, shell.graph, skip="initializer")
    return shell


def _count_casts(model: onnx.ModelProto) -> int:
    return sum(node.op_type == "Cast" for g in iterate_graphs(model.graph) for node in g.node)
