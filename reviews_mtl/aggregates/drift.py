"""Prediction drift: how far a live mix of predictions is from the one the model card recorded on validation."""

from __future__ import annotations

import math
from collections.abc import Mapping

# Floor on a share, so a category absent on one side adds a large but finite term.
_EPS = 1e-4


def psi(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """Population stability index of two distributions over the same categories: sum of (a − e) · ln(a / e).
    Under 0.1 is usually read as stable, 0.1–0.25 as a moderate shift, above 0.25 as a large one."""
    total = 0.0
    for key in set(expected) | set(actual):
        e = max(float(expected.get(key, 0.0)), _EPS)
        a = max(float(actual.get(key, 0.0)), _EPS)
        total += (a - e) * math.log(a / e)
    return total


def rate_psi(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """The mean PSI of per-category yes/no rates (aspects are detected independently, not one of many)."""
    keys = set(expected) | set(actual)
    if not keys:
        return 0.0
    return sum(psi({"yes": expected.get(k, 0.0), "no": 1 - expected.get(k, 0.0)},
                   {"yes": actual.get(k, 0.0), "no": 1 - actual.get(k, 0.0)}) for k in keys) / len(keys)
