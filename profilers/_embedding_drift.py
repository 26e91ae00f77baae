"""Drift of sentence embeddings: 1 - the lowest cosine similarity, over a batch, between the FP32
and the candidate embeddings, each mean-pooled over the token axis.

A sentence-embedding model (all-MiniLM-L6-v2) returns per-token hidden states ``[batch, tokens,
hidden]``; what its users compare is the pooled vector per sequence. Cosine is the similarity they
rank by, and the worst sequence of the batch is what a tolerance should bound (an average would
let one broken sequence hide among good ones).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from profilers._errors import ProfilingError

Outputs = Mapping[str, np.ndarray]


def mean_pooled_embeddings(hidden: np.ndarray, token_axis: int = 1) -> np.ndarray:
    """``[batch, tokens, ...]`` -> ``[batch, features]``: the mean over ``token_axis``, in float64."""
    array = np.asarray(hidden, dtype=np.float64)
    if array.ndim < 3:
        raise ProfilingError(
            f"mean-pooled cosine needs an output of rank >= 3 ([batch, tokens, hidden]), got shape "
            f"{list(array.shape)}"
        )
    if not 0 < token_axis < array.ndim:
        raise ProfilingError(
            f"token_axis must be between 1 and {array.ndim - 1} for shape {list(array.shape)}, "
            f"got {token_axis}"
        )
    pooled = array.mean(axis=token_axis)
    return pooled.reshape(pooled.shape[0], -1)


def _row_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    dots = np.einsum("ij,ij->i", reference, candidate)
    norms_ref = np.einsum("ij,ij->i", reference, reference)
    norms_cand = np.einsum("ij,ij->i", candidate, candidate)
    both_zero = (norms_ref == 0) & (norms_cand == 0)
    one_zero = (norms_ref == 0) ^ (norms_cand == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosines = dots / np.sqrt(norms_ref * norms_cand)
    cosines = np.where(both_zero, 1.0, np.where(one_zero, 0.0, cosines))  # zero vectors: as _drift
    return np.clip(cosines, -1.0, 1.0)  # rounding can step just past 1


class MeanPooledCosineDrift:
    """1 - min over the batch of cosine(mean-pooled reference, mean-pooled candidate).

    0 when every pooled embedding points the same way as FP32's; NaN/Inf in the candidate give
    ``inf``. ``output`` defaults to the first output; ``token_axis`` to 1.
    """

    def __init__(self, output: str | None = None, token_axis: int = 1) -> None:
        self.output = output
        self.token_axis = token_axis

    def __call__(self, reference: Outputs, candidate: Outputs) -> float:
        name = self.output if self.output is not None else next(iter(reference))
        if name not in reference or name not in candidate:
            raise ProfilingError(
                f"mean-pooled cosine: output {name!r} is missing; outputs: "
                f"{', '.join(sorted(reference))}"
            )
        ref = mean_pooled_embeddings(reference[name], self.token_axis)
        cand = mean_pooled_embeddings(candidate[name], self.token_axis)
        if ref.shape != cand.shape:
            raise ProfilingError(
                f"mean-pooled cosine: output {name!r} has shape {list(np.shape(candidate[name]))}, "
                f"the reference's is {list(np.shape(reference[name]))}"
            )
        if not np.all(np.isfinite(cand)):
            return float("inf")
        return float(1.0 - _row_cosines(ref, cand).min())
