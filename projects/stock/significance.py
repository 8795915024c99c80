"""Is the model's RMSE really different from persistence's, or just noise? A Diebold-Mariano test.

Two forecasts of the same days are compared through the loss differential
``d_t = e_model,t ** 2 - e_persistence,t ** 2`` (squared errors, as RMSE scores them). Its mean
is 0 when neither forecast is better. The Diebold-Mariano statistic is
``mean(d) / sqrt((gamma_0 + 2 * sum(gamma_k, k = 1 .. h - 1)) / T)``, with ``gamma_k`` the
autocovariances of ``d``: forecasts ``h`` days ahead made on consecutive days share ``h - 1`` days
of surprises, so their errors overlap; one-step errors of optimal forecasts (h = 1) are serially
uncorrelated and only the variance ``gamma_0`` remains. The Harvey-Leybourne-Newbold
small-sample correction multiplies it by ``sqrt((T + 1 - 2h + h (h - 1) / T) / T)`` and reads it
on Student's t with ``T - 1`` degrees of freedom. For h = 1 the corrected statistic is exactly
the one-sample t statistic of ``d`` against 0.

References: Diebold & Mariano (1995), "Comparing predictive accuracy", JBES 13(3);
Harvey, Leybourne & Newbold (1997), "Testing the equality of prediction mean squared errors",
IJF 13(2).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

SIGNIFICANCE_LEVEL = 0.05


def diebold_mariano(errors: np.ndarray, baseline_errors: np.ndarray, horizon: int = 1) -> dict:
    """Two-sided Diebold-Mariano test (HLN-corrected) of equal mean squared error.

    Args:
        errors: the model's forecast errors, one per day.
        baseline_errors: the baseline's errors on the same days.
        horizon: how many days ahead each forecast was made (``h``).

    Returns:
        ``{"dm_statistic", "dm_p_value"}``. The statistic is positive when the model's squared
        errors are larger on average. When the two losses differ by the same amount every day
        (``d`` has no spread), the test is degenerate: identical errors give statistic 0 and
        p = 1 (no evidence of any difference), a constant non-zero gap gives p = 0 and no
        statistic (None).

    Raises:
        ValueError: the arrays differ in length or hold fewer than two days.
    """
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    baseline_errors = np.asarray(baseline_errors, dtype=np.float64).reshape(-1)
    if errors.shape != baseline_errors.shape:
        raise ValueError(
            f"errors and baseline_errors must have the same length; received: {errors.size} and "
            f"{baseline_errors.size}"
        )
    days = errors.size
    if days < 2:
        raise ValueError(f"the test needs at least 2 days of errors; received: {days}")
    differential = errors**2 - baseline_errors**2
    mean = float(differential.mean())
    if np.all(differential == differential[0]):
        # No spread, so no standard error: equal losses are no evidence of a difference, and a
        # gap that never varies is a certain one (its statistic would be infinite: left out).
        return {"dm_statistic": 0.0 if mean == 0 else None, "dm_p_value": 1.0 if mean == 0 else 0.0}
    centred = differential - mean
    gamma = [float(np.dot(centred[lag:], centred[: days - lag]) / days) for lag in range(min(horizon, days))]
    variance = gamma[0] + 2 * sum(gamma[1:])
    if variance <= 0:
        # The truncated sum of autocovariances can turn negative; the variance alone is the
        # usual fallback (Diebold 2015, "Comparing predictive accuracy, twenty years later").
        variance = gamma[0]
    correction = (days + 1 - 2 * horizon + horizon * (horizon - 1) / days) / days
    statistic = mean / math.sqrt(variance / days) * math.sqrt(max(correction, 0.0))
    p_value = float(2 * stats.t.sf(abs(statistic), df=days - 1))
    return {"dm_statistic": statistic, "dm_p_value": p_value}


def verdict(rmse_ratio: float, p_value: float) -> str:
    """How the model compares with persistence, in words a reader cannot over-read.

    "better" or "worse" only when the Diebold-Mariano p-value is below 0.05; otherwise the two
    are called indistinguishable, whatever the ratio's digits say.
    """
    p_text = format_p_value(p_value, with_sign=True)
    if p_value < SIGNIFICANCE_LEVEL and rmse_ratio != 1:
        direction = "better than" if rmse_ratio < 1 else "worse than"
        return f"{direction} persistence (Diebold-Mariano p {p_text})"
    return f"indistinguishable from persistence (Diebold-Mariano p {p_text})"


def format_p_value(p_value: float, with_sign: bool = False) -> str:
    """Two significant digits; ``< 0.0001`` rather than a row of zeros, and ``< 0.05`` where
    rounding would print 0.05 for a p-value just below it. ``with_sign`` puts ``= `` before a
    plain number, so ``f"p {text}"`` reads right either way."""
    if p_value < 1e-4:
        return "< 0.0001"
    text = f"{p_value:.2g}"
    if p_value < SIGNIFICANCE_LEVEL <= float(text):
        return f"< {SIGNIFICANCE_LEVEL:g}"
    return f"= {text}" if with_sign else text
