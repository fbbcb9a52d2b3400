"""Small, dependency-free statistics for comparing runs over seeds: mean and spread, and Welch's t-test.

scipy is not a dependency, so the t distribution's tail comes from the regularised incomplete beta function,
evaluated with the continued fraction of Numerical Recipes (Press et al., 3rd ed., section 6.4), which
converges quickly when x < (a + 1) / (a + b + 2) and otherwise after the symmetry I_x(a, b) = 1 - I_{1-x}(b, a).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

_EPS, _TINY, _MAX_ITER = 1e-15, 1e-300, 500


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz's method)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITER + 1):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for x={x}, a={a}, b={b}")


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"the incomplete beta needs a, b > 0 (got a={a}, b={b})")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"the incomplete beta needs 0 <= x <= 1 (got {x})")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(1.0 - x, b, a) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom (df may be fractional, as Welch's)."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0 (got {df})")
    if math.isinf(t):
        return 0.0
    if math.isnan(t):
        return float("nan")
    return min(1.0, regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5))


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1 in the denominator; 0.0 for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("need at least one value")
    m = sum(values) / len(values)
    if len(values) == 1:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


@dataclass
class WelchResult:
    mean_a: float
    mean_b: float
    difference: float   # mean_a - mean_b
    t: float
    df: float
    p_value: float      # two-sided


def welch_t_test(a, b) -> WelchResult:
    """Welch's unequal-variance t-test of mean(a) == mean(b); each sample needs at least 2 values."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a t-test needs at least 2 seeds per setting (got {len(a)} and {len(b)}); "
                         "add seeds to the sweep")
    ma, sa = mean_std(a)
    mb, sb = mean_std(b)
    va, vb = sa * sa / len(a), sb * sb / len(b)
    se2 = va + vb
    if se2 == 0:  # both samples constant: the means either coincide exactly or differ with certainty
        return WelchResult(ma, mb, ma - mb, 0.0 if ma == mb else math.copysign(math.inf, ma - mb),
                           float(len(a) + len(b) - 2), 1.0 if ma == mb else 0.0)
    t = (ma - mb) / math.sqrt(se2)
    df = se2 * se2 / ((va * va / (len(a) - 1) if va else 0.0) + (vb * vb / (len(b) - 1) if vb else 0.0))
    return WelchResult(ma, mb, ma - mb, t, df, t_two_sided_p(t, df))


def describe_difference(result: WelchResult, name_a: str, name_b: str, alpha: float = 0.05) -> str:
    """One sentence: is the difference between two settings larger than the seed noise?"""
    lower = name_a if result.mean_a < result.mean_b else name_b
    gap = abs(result.difference)
    if result.p_value < alpha:
        return (f"{lower} is lower by {gap:.4f} (Welch t = {result.t:.2f}, df = {result.df:.1f}, p = {result.p_value:.3g}): "
                f"the difference is larger than the seed-to-seed noise (p < {alpha}).")
    return (f"The means differ by {gap:.4f} (Welch t = {result.t:.2f}, df = {result.df:.1f}, p = {result.p_value:.3g}): "
            f"not larger than the seed-to-seed noise (p >= {alpha}); more seeds could tell them apart, or not.")
