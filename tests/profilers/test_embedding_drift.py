"""MeanPooledCosineDrift on arrays whose pooled embeddings and cosines are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from profilers import ProfilingError
from profilers._embedding_drift import MeanPooledCosineDrift, mean_pooled_embeddings


def _tokens(pooled: list[list[float]], spread: float = 0.0) -> np.ndarray:
    """[batch, 2 tokens, hidden] whose mean over tokens is ``pooled`` (tokens = pooled -+ spread)."""
    base = np.asarray(pooled, np.float32)[:, None, :]
    offset = np.array([[-spread], [spread]], np.float32)
    return base + offset


def test_identical_embeddings_drift_zero() -> None:
    hidden = np.random.default_rng(0).standard_normal((4, 16, 8)).astype(np.float32)
    assert MeanPooledCosineDrift()({"h": hidden}, {"h": hidden.copy()}) == 0.0


def test_worst_sequence_of_the_batch_counts() -> None:
    reference = _tokens([[1, 0], [0, 1], [1, 1]])
    # Cosines: 1 (same), 1/sqrt(2) (45 degrees), 1 (scaled by 3): the lowest is 1/sqrt(2).
    candidate = _tokens([[1, 0], [1, 1], [3, 3]])
    drift = MeanPooledCosineDrift("h")({"h": reference}, {"h": candidate})
    assert drift == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-7)


def test_pooling_is_over_the_token_axis() -> None:
    # Token values differ wildly, their means do not: pooled embeddings are equal, drift 0.
    reference = _tokens([[2, 1, 0]], spread=0.0)
    candidate = _tokens([[2, 1, 0]], spread=5.0)
    assert MeanPooledCosineDrift()({"h": reference}, {"h": candidate}) == pytest.approx(0, abs=1e-12)
    np.testing.assert_allclose(mean_pooled_embeddings(candidate), [[2, 1, 0]])
    # Pooled over the hidden axis instead, the two would differ per token: this is not that.
    assert not np.allclose(reference.mean(axis=2), candidate.mean(axis=2))


def test_opposite_direction_is_drift_two() -> None:
    reference = _tokens([[1, 2]])
    assert MeanPooledCosineDrift()({"h": reference}, {"h": -reference}) == pytest.approx(2.0)


def test_named_output_and_nan() -> None:
    reference = {"a": _tokens([[1, 0]]), "emb": _tokens([[0, 1]])}
    candidate = {"a": _tokens([[0, 1]]), "emb": _tokens([[0, 1]])}
    assert MeanPooledCosineDrift("emb")(reference, candidate) == 0.0
    assert MeanPooledCosineDrift()(reference, candidate) == pytest.approx(1.0)  # first output: a
    broken = {"a": candidate["a"], "emb": np.full_like(candidate["emb"], np.nan)}
    assert MeanPooledCosineDrift("emb")(reference, broken) == math.inf


def test_zero_vectors() -> None:
    zero = np.zeros((2, 3, 4), np.float32)
    assert MeanPooledCosineDrift()({"h": zero}, {"h": zero}) == 0.0  # both zero: identical
    assert MeanPooledCosineDrift()({"h": zero}, {"h": zero + 1}) == 1.0  # one zero: cosine 0


def test_refuses_rank_two_and_shape_mismatch() -> None:
    with pytest.raises(ProfilingError, match="rank >= 3"):
        MeanPooledCosineDrift()({"h": np.ones((2, 3))}, {"h": np.ones((2, 3))})
    with pytest.raises(ProfilingError, match="shape"):
        MeanPooledCosineDrift()({"h": np.ones((2, 3, 4))}, {"h": np.ones((3, 3, 4))})
    with pytest.raises(ProfilingError, match="missing"):
        MeanPooledCosineDrift("nope")({"h": np.ones((2, 3, 4))}, {"h": np.ones((2, 3, 4))})
