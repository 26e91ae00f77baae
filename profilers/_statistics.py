"""Summary statistics of repeated latency samples, the way a benchmark report needs them.

The median is the headline number (robust to the occasional preempted run); its confidence interval
is distribution-free (order statistics of a Binomial(n, 1/2)), so it needs no normality assumption
and no SciPy. Outliers follow Tukey's fences (1.5 IQR beyond the quartiles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from profilers._errors import ProfilingError

TUKEY_FENCE = 1.5


def median_confidence_ranks(n: int, confidence: float = 0.95) -> tuple[int, int, float]:
    """1-based ranks (j, k) with P(x_(j) <= median <= x_(k)) >= confidence, and that coverage.

    The interval is symmetric in rank (k = n - j + 1) and as narrow as the confidence allows:
    j is the largest rank with 1 - 2 P(B <= j - 1) >= confidence, B ~ Binomial(n, 1/2). When n
    is too small to reach the confidence, (1, n) is returned with its actual (lower) coverage.
    """
    if n < 1:
        raise ProfilingError(f"a confidence interval needs at least one sample, got n={n}")
    if not 0.0 < confidence < 1.0:
        raise ProfilingError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    alpha_half = (1.0 - confidence) / 2.0
    log_half_n = -n * math.log(2.0)
    log_factorial_n = math.lgamma(n + 1)

    def pmf(i: int) -> float:  # in log space so that large n does not underflow
        return math.exp(log_factorial_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half_n)

    cumulative = pmf(0)  # P(B <= j - 1) for the current j
    if cumulative > alpha_half:
        # Even (min, max) misses the confidence: report what it does cover.
        return 1, n, max(0.0, 1.0 - 2.0 * cumulative)
    j = 1
    while j < (n + 1) // 2:
        widened = cumulative + pmf(j)
        if widened > alpha_half:
            break
        cumulative = widened
        j += 1
    return j, n - j + 1, 1.0 - 2.0 * cumulative


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of n latency samples, all in milliseconds."""

    n: int
    median_ms: float
    median_ci_low_ms: float
    median_ci_high_ms: float
    median_ci_coverage: float
    mean_ms: float
    std_ms: float
    cv: float
    min_ms: float
    max_ms: float
    p90_ms: float
    p99_ms: float
    q1_ms: float
    q3_ms: float
    iqr_ms: float
    outliers_low: int
    outliers_high: int

    @property
    def outliers(self) -> int:
        return self.outliers_low + self.outliers_high

    @property
    def median_ci_half_width_relative(self) -> float:
        """Half the interval's width relative to the median (0.01 means +-1%)."""
        return (self.median_ci_high_ms - self.median_ci_low_ms) / (2.0 * self.median_ms)

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], confidence: float = 0.95) -> LatencyStats:
        values = np.sort(np.asarray(samples_ms, dtype=np.float64))
        n = int(values.size)
        if n == 0:
            raise ProfilingError("latency statistics need at least one sample, got none")
        if not np.all(np.isfinite(values)):
            raise ProfilingError("latency samples contain NaN or infinite values")
        j, k, coverage = median_confidence_ranks(n, confidence)
        q1, median, q3, p90, p99 = np.percentile(values, [25, 50, 75, 90, 99])
        iqr = q3 - q1
        mean = float(values.mean())
        std = float(values.std(ddof=1)) if n > 1 else 0.0
        return cls(
            n=n,
            median_ms=float(median),
            median_ci_low_ms=float(values[j - 1]),
            median_ci_high_ms=float(values[k - 1]),
            median_ci_coverage=coverage,
            mean_ms=mean,
            std_ms=std,
            cv=std / mean if mean > 0 else 0.0,
            min_ms=float(values[0]),
            max_ms=float(values[-1]),
            p90_ms=float(p90),
            p99_ms=float(p99),
            q1_ms=float(q1),
            q3_ms=float(q3),
            iqr_ms=float(iqr),
            outliers_low=int(np.count_nonzero(values < q1 - TUKEY_FENCE * iqr)),
            outliers_high=int(np.count_nonzero(values > q3 + TUKEY_FENCE * iqr)),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outliers"] = self.outliers
        return data


def relative_spread(values: Sequence[float]) -> float:
    """Coefficient of variation (sample std / mean) of a few values, e.g. repeated medians."""
    array = np.asarray(values, dtype=np.float64)
    if array.size < 2 or array.mean() == 0:
        return 0.0
    return float(array.std(ddof=1) / array.mean())
