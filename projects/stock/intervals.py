"""Forecast intervals by conformal prediction: "the price will lie in [lower, upper] on 90% of days".

Split conformal prediction (Vovk et al. 2005; Lei et al. 2018) needs no model of the errors: it
takes the forecast's errors on days the model never trained on (the validation period), each
as a share of that day's last known price, ``score = |actual - forecast| / price today``, and
uses their ``ceil((n + 1) * coverage) / n`` empirical quantile ``q`` as the half-width:
``forecast +- q * price today``. If the future's errors are like the validation period's, the
interval holds the true price on at least ``coverage`` of the days.

Prices are not that kind: calm years follow turbulent ones. Calibrated on a calm validation
period, the plain interval held the S&P 500's 2015-2018 test prices on 85% of days for 90% asked.
Adaptive conformal inference (Gibbs & Candes 2021, "Adaptive conformal inference under
distribution shift", NeurIPS) fixes that with one line: after each day, the level of the quantile
moves by ``adapt_rate * (miss - (1 - coverage))``, wider after a miss, slowly narrower after a
hit, so the long-run share of misses returns to ``1 - coverage`` whatever the drift. Each day's
interval uses only the validation scores and whether the days before it were missed, which a
forecaster knows on that day. ``adapt_rate = 0`` gives plain split conformal.

The naive interval to beat is persistence +- the training period's ``coverage`` quantile of
absolute daily moves (as a share of the price), times today's price.

Intervals are scored by coverage (the share of days inside), mean width, and the Winkler score
(Winkler 1972): the width, plus ``2 / (1 - coverage)`` times the distance by which the true
price falls outside; lower is better, and it punishes a narrow interval that misses.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from common.core.errors import UserError

# What predict needs to draw intervals, written beside the model when it is evaluated in training.
INTERVALS_FILE = "intervals.json"


def relative_errors(actual: np.ndarray, forecast: np.ndarray, price_today: np.ndarray) -> np.ndarray:
    """Conformity scores: each absolute error as a share of the last price known at the forecast."""
    return np.abs(np.asarray(actual, np.float64) - forecast) / price_today


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The ``ceil((n + 1) * coverage)``-th smallest score: split conformal's half-width.

    With too few scores for that rank (under ``coverage / (1 - coverage)``, 9 for 90%), the
    largest score is taken: the interval then promises less than ``coverage``.
    """
    scores = np.sort(np.asarray(scores, np.float64).reshape(-1))
    if scores.size == 0:
        raise ValueError("conformal_quantile needs at least one score")
    rank = math.ceil((scores.size + 1) * min(max(coverage, 0.0), 1.0))
    return float(scores[min(max(rank, 1), scores.size) - 1])


def adaptive_half_widths(
    calibration: np.ndarray, scores: np.ndarray, coverage: float, adapt_rate: float
) -> tuple[np.ndarray, float]:
    """Adaptive conformal inference over days in order.

    Args:
        calibration: the validation period's scores; the quantile is always taken of these.
        scores: each day's score, revealed after that day's interval is set.
        coverage: the share of days the intervals should hold.
        adapt_rate: the step ``gamma`` of the level's update (0 = plain split conformal).

    Returns:
        Each day's half-width (as a share of the price), and the level (coverage asked of the
        quantile) that the next day after the last would use.
    """
    level = coverage
    half_widths = np.empty(len(scores))
    for day, score in enumerate(scores):
        half_widths[day] = conformal_quantile(calibration, level)
        missed = float(score > half_widths[day])
        level += adapt_rate * (missed - (1 - coverage))
    return half_widths, level


def interval_scores(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, coverage: float) -> dict:
    """Coverage (share of days inside, ends included), mean width and mean Winkler score."""
    actual = np.asarray(actual, np.float64)
    below = np.maximum(lower - actual, 0.0)
    above = np.maximum(actual - upper, 0.0)
    width = upper - lower
    return {
        "coverage": float(np.mean((below == 0) & (above == 0))),
        "mean_width": float(np.mean(width)),
        "winkler": float(np.mean(width + 2 / (1 - coverage) * (below + above))),
    }


def horizon_half_widths(relative: list[float], days: int) -> np.ndarray:
    """The half-width (share of today's price) of each of the next ``days`` forecasts.

    ``relative[h - 1]`` was calibrated on validation for horizon ``h``; beyond the last calibrated
    horizon ``H`` the width grows like a random walk's spread, ``relative[H - 1] * sqrt(h / H)``.
    """
    calibrated = np.asarray(relative, np.float64)
    horizons = np.arange(1, days + 1)
    last = len(calibrated)
    extended = calibrated[-1] * np.sqrt(horizons / last)
    return np.where(horizons <= last, calibrated[np.minimum(horizons, last) - 1], extended)


def write_intervals(calibration: dict, folder: Path) -> None:
    """Writes what predict needs (coverage, level, per-horizon half-widths) beside the model."""
    (folder / INTERVALS_FILE).write_text(json.dumps(calibration, indent=2) + "\n")


def read_intervals(folder: Path) -> dict | None:
    """The calibration saved beside a model, or None for a model trained before intervals."""
    path = folder / INTERVALS_FILE
    if not path.is_file():
        return None
    try:
        calibration = json.loads(path.read_text())
        relative = [float(value) for value in calibration["relative_half_widths"]]
        coverage, method = float(calibration["coverage"]), calibration["method"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise UserError(
            f"{path}: not a readable interval calibration (it needs relative_half_widths, coverage and "
            "method); train the model again"
        ) from None
    if not relative or not all(math.isfinite(value) and value >= 0 for value in relative):
        raise UserError(f"{path}: holds impossible half-widths; train the model again")
    if not 0 < coverage < 1 or not isinstance(method, str):
        raise UserError(f"{path}: holds an impossible coverage {coverage!r}; train the model again")
    return calibration
