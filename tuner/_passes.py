"""Graph passes with stated pre- and post-conditions, and a manager that names the pass that failed.

Modelled on onnx_ir's PassBase: ``requires`` checks what the pass assumes, ``call`` rewrites the
model and says whether it changed, ``ensures`` checks what the pass promises. A broken condition is
a bug in amptune (PassError), never the user's fault.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import onnx

from tuner._errors import AmptuneError, PassError


@dataclass(frozen=True)
class PassResult:
    model: onnx.ModelProto
    modified: bool


class GraphPass(abc.ABC):
    """One rewrite of an ONNX model. Subclasses implement ``call`` and may state conditions."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def requires(self, model: onnx.ModelProto) -> None:
        """Called before ``call``; raise PassError if the model is not what the pass assumes."""

    @abc.abstractmethod
    def call(self, model: onnx.ModelProto) -> PassResult:
        """Rewrite ``model`` (in place or into a new proto) and return it with whether it changed."""

    def ensures(self, model: onnx.ModelProto) -> None:
        """Called after ``call`` on its result; raise PassError if a promise is broken."""

    def __call__(self, model: onnx.ModelProto) -> PassResult:
        self.requires(model)
        result = self.call(model)
        self.ensures(result.model)
        return result


class PassManager:
    """Runs passes in order; a failure names the pass it came from."""

    def __init__(self, passes: Sequence[GraphPass]) -> None:
        self.passes = tuple(passes)

    def __call__(self, model: onnx.ModelProto) -> PassResult:
        modified = False
        for graph_pass in self.passes:
            try:
                result = graph_pass(model)
            except AmptuneError:
                raise
            except PassError as error:
                raise PassError(f"pass {graph_pass.name} failed: {error}") from error
            except Exception as error:
                raise PassError(f"pass {graph_pass.name} failed: {error!r}") from error
            model = result.model
            modified = modified or result.modified
        return PassResult(model, modified)
