"""Seeds and intervals: what a table of the reproduction report may claim from a few seeds.

Pure functions of lists of numbers (one number per seed), no Lightning, no torch:

    t_interval        mean and the two-sided Student-t interval over seeds (scipy's t quantile)
    paired_difference the t-interval of per-seed differences b - a (runs paired by seed: same data stream,
                      noise and initialisation seeds, same evaluation set)
    order             '<', '>' or None: an ordering only where the intervals separate (or, paired, where the
                      difference interval excludes 0)
    trend_claim       a monotone trend along a sweep only if every neighbouring pair is resolved the same way;
                      otherwise the sentence "not resolved at this scale"
    log_log_slope     least-squares slope of log y against log x with its t-interval (df = points - 2)
    steps_to_threshold the first validation step at which a curve is at or below a threshold (None: not reached)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

NOT_RESOLVED = "not resolved at this scale"


@dataclass(frozen=True)
class Interval:
    """Mean over ``n`` seeds and its two-sided ``level`` t-interval [lo, hi]; lo = hi = nan when n = 1."""

    mean: float
    lo: float
    hi: float
    n: int
    level: float = 0.95

    @property
    def half_width(self) -> float:
        return 0.5 * (self.hi - self.lo)

    def excludes(self, value: float) -> bool:
        """True when ``value`` lies outside [lo, hi] (never for a single seed)."""
        return not math.isnan(self.lo) and (value < self.lo or value > self.hi)

    def format(self, fmt=lambda x: f"{x:.4f}") -> str:
        """``mean [lo, hi]``, or ``mean (1 seed)``."""
        if self.n < 2:
            return f"{fmt(self.mean)} (1 seed)"
        return f"{fmt(self.mean)} [{fmt(self.lo)}, {fmt(self.hi)}]"


def _check(values: Sequence[float], field: str) -> list[float]:
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError(f"{field}: needs at least one value (one per seed); got none")
    if any(math.isnan(v) for v in vals):
        raise ValueError(f"{field}: NaN among the per-seed values {vals}")
    return vals


def t_quantile(level: float, df: int) -> float:
    """The (1 + level) / 2 quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    if not 0 < level < 1:
        raise ValueError(f"level must satisfy 0 < level < 1; got {level}")
    return float(t.ppf(0.5 * (1 + level), df))


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean and mean +- q s / sqrt(n), s the sample standard deviation (ddof 1), q the t quantile of n - 1 df."""
    vals = _check(values, "t_interval")
    n = len(vals)
    mean = sum(vals) / n
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, level)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    h = t_quantile(level, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - h, mean + h, n, level)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """t-interval of b_s - a_s over seeds s (the paired t-test at 1 - level rejects 'no difference' iff it
    excludes 0)."""
    a, b = _check(a, "paired_difference a"), _check(b, "paired_difference b")
    if len(a) != len(b):
        raise ValueError(f"paired_difference: a and b need one value per seed each; got {len(a)} and {len(b)}")
    return t_interval([y - x for x, y in zip(a, b)], level)


def order(a: Sequence[float], b: Sequence[float], paired: bool = False, level: float = 0.95) -> str | None:
    """'<' if a is resolved below b, '>' if above, None if not resolved.

    Unpaired: the two t-intervals are disjoint. Paired (same seeds on both sides): the t-interval of the
    differences b - a excludes 0. A single seed never resolves an ordering.
    """
    if paired:
        diff = paired_difference(a, b, level)
        if not diff.excludes(0.0):
            return None
        return "<" if diff.mean > 0 else ">"
    ia, ib = t_interval(a, level), t_interval(b, level)
    if ia.n < 2 or ib.n < 2:
        return None
    if ia.hi < ib.lo:
        return "<"
    if ib.hi < ia.lo:
        return ">"
    return None


def trend_claim(series: Sequence[Sequence[float]], paired: bool = False, level: float = 0.95) -> str:
    """'increasing' / 'decreasing' along the sweep if every neighbouring pair is resolved in that direction
    (``order``), else ``NOT_RESOLVED``. ``series[k]``: the per-seed values at the k-th sweep value."""
    if len(series) < 2:
        raise ValueError(f"trend_claim: needs at least two sweep values; got {len(series)}")
    pairs = {order(a, b, paired, level) for a, b in zip(series, series[1:])}
    if pairs == {"<"}:
        return "increasing"
    if pairs == {">"}:
        return "decreasing"
    return NOT_RESOLVED


@dataclass(frozen=True)
class Slope:
    """Least-squares fit log y = intercept + slope log x, with the slope's t-interval."""

    slope: float
    intercept: float
    lo: float
    hi: float
    stderr: float
    n: int


def log_log_slope(x: Sequence[float], y: Sequence[float], level: float = 0.95) -> Slope:
    """Slope of log y against log x (ordinary least squares over all points, e.g. every (n, seed) pair), its
    standard error sqrt(SSR / (m - 2) / Sxx) and t-interval with m - 2 df; lo = hi = nan when m = 2."""
    xs, ys = _check(x, "log_log_slope x"), _check(y, "log_log_slope y")
    if len(xs) != len(ys):
        raise ValueError(f"log_log_slope: x and y need the same length; got {len(xs)} and {len(ys)}")
    if any(v <= 0 for v in xs + ys):
        raise ValueError("log_log_slope: x and y must be > 0 (logs are taken)")
    lx, ly = [math.log(v) for v in xs], [math.log(v) for v in ys]
    m = len(lx)
    mx, my = sum(lx) / m, sum(ly) / m
    sxx = sum((v - mx) ** 2 for v in lx)
    if m < 2 or sxx == 0:
        raise ValueError("log_log_slope: needs at least two distinct x values")
    slope = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sxx
    intercept = my - slope * mx
    if m < 3:
        return Slope(slope, intercept, math.nan, math.nan, math.nan, m)
    ssr = sum((b - intercept - slope * a) ** 2 for a, b in zip(lx, ly))
    se = math.sqrt(ssr / (m - 2) / sxx)
    h = t_quantile(level, m - 2) * se
    return Slope(slope, intercept, slope - h, slope + h, se, m)


def steps_to_threshold(steps: Sequence[int], values: Sequence[float], threshold: float) -> int | None:
    """The first logged step whose value is <= ``threshold`` (steps in logging order), None if never reached
    (a censored run: it needs more than its last step)."""
    if len(steps) != len(values):
        raise ValueError(f"steps_to_threshold: steps and values need the same length; got {len(steps)}, {len(values)}")
    for s, v in zip(steps, values):
        if v <= threshold:
            return int(s)
    return None
