import math

import numpy as np
import pytest

from profilers import LatencyStats, ProfilingError, median_confidence_ranks, relative_spread


@pytest.mark.parametrize(
    ("n", "ranks"),
    # Published 95% order-statistic intervals for the median (e.g. Conover, Practical
    # Nonparametric Statistics, table A3): n=6 needs the full range, n=100 gives (40, 61).
    [(6, (1, 6)), (9, (2, 8)), (10, (2, 9)), (20, (6, 15)), (50, (18, 33)), (100, (40, 61))],
)
def test_median_confidence_ranks_match_the_binomial_tables(n, ranks):
    j, k, coverage = median_confidence_ranks(n, 0.95)
    assert (j, k) == ranks
    assert coverage >= 0.95


def test_median_confidence_coverage_is_exact_binomial():
    # n=10, ranks (2, 9): coverage = 1 - 2 * P(B <= 1) with B ~ Bin(10, 1/2) = 1 - 2 * 11/1024.
    assert median_confidence_ranks(10)[2] == pytest.approx(1 - 22 / 1024)


def test_too_few_samples_report_their_real_coverage():
    j, k, coverage = median_confidence_ranks(5, 0.95)
    assert (j, k) == (1, 5)
    assert coverage == pytest.approx(1 - 2 / 32)  # below 0.95, and said so


def test_large_n_is_fast_and_narrow():
    j, k, coverage = median_confidence_ranks(100_000)
    assert 0.95 <= coverage < 0.96
    # Normal approximation: half-width ~ 1.96 * sqrt(n) / 2 = 310 ranks.
    assert abs((k - j) / 2 - 310) < 3


def test_stats_on_known_samples():
    stats = LatencyStats.from_samples(list(range(1, 101)) + [1000])
    assert stats.n == 101
    assert stats.median_ms == 51.0
    assert stats.mean_ms == pytest.approx((5050 + 1000) / 101)
    assert stats.min_ms == 1.0 and stats.max_ms == 1000.0
    assert stats.q1_ms == 26.0 and stats.q3_ms == 76.0 and stats.iqr_ms == 50.0
    assert stats.p90_ms == 91.0 and stats.p99_ms == 100.0
    assert stats.outliers_high == 1 and stats.outliers_low == 0  # only 1000 lies past 76 + 75
    assert stats.std_ms == pytest.approx(np.std(list(range(1, 101)) + [1000], ddof=1))
    assert stats.cv == pytest.approx(stats.std_ms / stats.mean_ms)
    j, k, _ = median_confidence_ranks(101)
    assert (stats.median_ci_low_ms, stats.median_ci_high_ms) == (float(j), float(k))


def test_order_of_samples_does_not_matter():
    rng = np.random.default_rng(3)
    samples = rng.lognormal(1.0, 0.1, size=500)
    a = LatencyStats.from_samples(samples)
    b = LatencyStats.from_samples(rng.permutation(samples))
    assert a == b
    assert a.median_ci_low_ms <= a.median_ms <= a.median_ci_high_ms
    assert 0 < a.median_ci_half_width_relative < 0.02


def test_low_outliers_are_counted():
    stats = LatencyStats.from_samples([0.1] + [10.0 + 0.01 * i for i in range(50)])
    assert stats.outliers_low == 1 and stats.outliers_high == 0 and stats.outliers == 1


def test_constant_samples_have_zero_spread():
    stats = LatencyStats.from_samples([2.5] * 30)
    assert stats.cv == 0.0 and stats.iqr_ms == 0.0 and stats.outliers == 0
    assert stats.median_ci_low_ms == stats.median_ci_high_ms == 2.5


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [math.inf]])
def test_bad_samples_are_refused(bad):
    with pytest.raises(ProfilingError):
        LatencyStats.from_samples(bad)


def test_relative_spread():
    assert relative_spread([1.0, 1.0, 1.0]) == 0.0
    assert relative_spread([9.0, 10.0, 11.0]) == pytest.approx(0.1)
    assert relative_spread([5.0]) == 0.0
