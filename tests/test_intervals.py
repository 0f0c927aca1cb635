"""diffusion_theory.metrics.intervals against scipy.stats (independent implementations) and by simulation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats

from diffusion_theory.metrics.intervals import (
    NOT_RESOLVED,
    log_log_slope,
    order,
    paired_difference,
    steps_to_threshold,
    t_interval,
    trend_claim,
)


@pytest.mark.parametrize("n", [2, 3, 5, 10])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_t_interval_matches_scipy(n, level):
    rng = np.random.default_rng(n)
    x = rng.normal(1.0, 0.3, n)
    lo, hi = stats.t.interval(level, n - 1, loc=x.mean(), scale=stats.sem(x))
    iv = t_interval(list(x), level)
    assert iv.mean == pytest.approx(x.mean(), rel=1e-12)
    assert (iv.lo, iv.hi) == (pytest.approx(lo, rel=1e-10), pytest.approx(hi, rel=1e-10))
    assert iv.n == n and iv.excludes(hi + 1e-9) and not iv.excludes(x.mean())


def test_t_interval_covers_the_mean_at_its_level():
    rng = random.Random(0)
    trials, hits = 4000, 0
    for _ in range(trials):
        iv = t_interval([rng.gauss(2.0, 1.0) for _ in range(3)])
        hits += iv.lo <= 2.0 <= iv.hi
    assert abs(hits / trials - 0.95) < 3 * math.sqrt(0.05 * 0.95 / trials)


def test_a_single_seed_has_no_interval_and_resolves_nothing():
    iv = t_interval([0.5])
    assert iv.mean == 0.5 and math.isnan(iv.lo) and not iv.excludes(100.0)
    assert iv.format() == "0.5000 (1 seed)"
    assert order([0.1], [0.9]) is None and order([0.1], [0.9], paired=True) is None
    with pytest.raises(ValueError, match="at least one value"):
        t_interval([])


def test_paired_difference_is_scipys_paired_t_test():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, 5)
    b = a + 0.8 + rng.normal(0, 0.3, 5)
    diff = paired_difference(list(a), list(b))
    p = stats.ttest_rel(b, a).pvalue
    assert diff.excludes(0.0) == (p < 0.05)
    # the interval edge sits exactly where the paired test's p-value is 0.05: shift b by the lower edge
    edge = paired_difference(list(a), list(b - diff.lo))
    assert stats.ttest_rel(b - diff.lo, a).pvalue == pytest.approx(0.05, rel=1e-6)
    assert edge.lo == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="one value per seed"):
        paired_difference([1, 2], [1, 2, 3])


def test_order_needs_separated_intervals():
    low, high = [1.0, 1.1, 0.9], [2.0, 2.1, 1.9]
    assert order(low, high) == "<" and order(high, low) == ">"
    overlapping = [1.05, 1.2, 0.95]
    assert order(low, overlapping) is None
    # paired: a common per-seed offset cancels, so a small consistent difference is resolved
    base = [1.0, 3.0, 5.0]
    shifted = [v + 0.1 + e for v, e in zip(base, (0.01, -0.01, 0.0))]
    assert order(base, shifted) is None and order(base, shifted, paired=True) == "<"


def test_trend_claim():
    up = [[1.0, 1.1, 0.9], [2.0, 2.1, 1.9], [3.0, 3.1, 2.9]]
    assert trend_claim(up) == "increasing" and trend_claim(up[::-1]) == "decreasing"
    assert trend_claim([up[0], up[2], up[1]]) == NOT_RESOLVED
    assert trend_claim([up[0], [1.0, 1.2, 0.95], up[2]]) == NOT_RESOLVED  # one unresolved neighbour pair
    assert trend_claim([[1.0], [2.0], [3.0]]) == NOT_RESOLVED  # single seeds resolve nothing


def test_log_log_slope_matches_scipy_linregress():
    rng = np.random.default_rng(5)
    x = np.repeat([100.0, 320.0, 1000.0, 3200.0], 3)
    y = 7.0 * x**-0.4 * np.exp(rng.normal(0, 0.1, x.size))
    fit = log_log_slope(list(x), list(y))
    ref = stats.linregress(np.log(x), np.log(y))
    q = stats.t.ppf(0.975, x.size - 2)
    assert fit.slope == pytest.approx(ref.slope, rel=1e-10) and fit.stderr == pytest.approx(ref.stderr, rel=1e-10)
    assert (fit.lo, fit.hi) == (pytest.approx(ref.slope - q * ref.stderr), pytest.approx(ref.slope + q * ref.stderr))
    assert fit.lo < -0.4 < fit.hi
    with pytest.raises(ValueError, match="must be > 0"):
        log_log_slope([1, 2, 3], [1, 0, 2])


def test_steps_to_threshold():
    assert steps_to_threshold([10, 20, 30], [0.5, 0.2, 0.1], 0.2) == 20
    assert steps_to_threshold([10, 20, 30], [0.5, 0.3, 0.25], 0.2) is None
    assert steps_to_threshold([10, 20, 30], [0.1, 0.3, 0.05], 0.2) == 10  # the first crossing
