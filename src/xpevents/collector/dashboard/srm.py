"""Sample ratio mismatch: Pearson's chi-square test of impressions against the allocation.

For an experiment with variations ``i`` whose traffic allocation gives them the weights
``w_i`` (the width of their bucket ranges, out of 10000), ``N`` impressions split as
``o_i`` are expected as ``e_i = N * w_i / sum(w)``. The statistic is
``X2 = sum((o_i - e_i)**2 / e_i)`` with ``k - 1`` degrees of freedom (``k``: variations
with a weight > 0), and the p-value is ``Q((k - 1) / 2, X2 / 2)``, the regularized upper
incomplete gamma function, computed here without scipy (series below ``a + 1``,
continued fraction above). An impression in a variation with no weight makes the
p-value 0. A p-value below :data:`SRM_ALPHA` is reported as a mismatch, once every
variation expects at least :data:`MIN_EXPECTED` impressions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

__all__ = ["MIN_EXPECTED", "SRM_ALPHA", "SrmResult", "chi_square_p", "srm_check"]

SRM_ALPHA: Final = 0.001
"""p-value under which the split is called a sample ratio mismatch."""

MIN_EXPECTED: Final = 5.0
"""Smallest expected count per variation for the chi-square approximation to hold: below
it the result says ``too_few`` and calls no mismatch (except for impressions in a
variation with no weight, a mismatch at any size)."""

_EPS: Final = 1e-15
_TINY: Final = 1e-300
_MAX_ITER: Final = 1000


def _lower_series(a: float, x: float) -> float:
    """Regularized lower gamma ``P(a, x)`` by its power series (good for ``x < a + 1``)."""
    term = total = 1.0 / a
    n = a
    for _ in range(_MAX_ITER):
        n += 1.0
        term *= x / n
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _upper_fraction(a: float, x: float) -> float:
    """Regularized upper gamma ``Q(a, x)`` by its continued fraction (modified Lentz)."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi_square_p(statistic: float, dof: int) -> float:
    """Upper tail probability of the chi-square distribution with ``dof`` degrees."""
    if dof < 1:
        raise ValueError(f"dof must be >= 1, got {dof}")
    if statistic <= 0.0:
        return 1.0
    if math.isinf(statistic):
        return 0.0
    a, x = dof / 2.0, statistic / 2.0
    if dof == 1:  # exact closed form
        return math.erfc(math.sqrt(x))
    if x < a + 1.0:
        return max(0.0, 1.0 - _lower_series(a, x))
    return min(1.0, _upper_fraction(a, x))


class SrmResult:
    """Outcome of :func:`srm_check` (``expected`` share per variation id)."""

    def __init__(
        self,
        statistic: float,
        dof: int,
        p_value: float,
        expected: dict[str, float],
        too_few: bool = False,
    ):
        self.statistic = statistic
        self.dof = dof
        self.p_value = p_value
        self.expected = expected
        self.too_few = too_few

    @property
    def mismatch(self) -> bool:
        """Whether ``p_value < SRM_ALPHA`` (never when there are too few impressions)."""
        return self.p_value < SRM_ALPHA and (not self.too_few or math.isinf(self.statistic))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "chi_square": round(self.statistic, 6),
            "dof": self.dof,
            "p_value": self.p_value,
            "expected_share": self.expected,
            "mismatch": self.mismatch,
            "too_few": self.too_few,
        }


def srm_check(observed: Mapping[str, int], weights: Mapping[str, int]) -> SrmResult | None:
    """Chi-square test of ``observed`` counts against ``weights`` (both by variation id).

    ``None`` when there is nothing to test: fewer than two weighted variations, or no
    impression at all.
    """
    weighted = {v: w for v, w in weights.items() if w > 0}
    total_weight = sum(weighted.values())
    n = sum(observed.get(v, 0) for v in weighted)
    stray = sum(c for v, c in observed.items() if v not in weighted)
    if len(weighted) < 2 or n + stray == 0:
        return None
    share = {v: w / total_weight for v, w in weighted.items()}
    statistic = math.inf if stray else 0.0
    if not stray:
        for v, s in share.items():
            expected = n * s
            statistic += (observed.get(v, 0) - expected) ** 2 / expected
    dof = len(weighted) - 1
    too_few = n * min(share.values()) < MIN_EXPECTED
    return SrmResult(statistic, dof, chi_square_p(statistic, dof), share, too_few)
