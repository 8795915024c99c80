"""One-step-ahead scores on the test period, each beside persistence ("tomorrow = today").

Every test day is forecast from the true prices of the days before it: the standard one-step
evaluation, and exactly the information persistence gets, on exactly the same days. The
tutorial's flaw was never this; it was the scaler fit on the test period and the missing
baseline. Multi-day forecasts (``predict --days``) feed on their own predictions instead.

Directional accuracy counts the days the price moved (unchanged days are left out) on which the
forecast moved the same way. Persistence forecasts no move, so it makes no call; its column
shows the constant call "up" instead, which is also what a model that only learnt the upward
drift would score.

Whether the model's RMSE differs from persistence's by more than chance is tested with a
Diebold-Mariano test on the squared errors (``significance.py``); the report calls the model
better or worse only when its two-sided p-value (``dm_p_value``) is below 0.05.

Next to the one-step scores:
- forecast intervals (``intervals.py``): calibrated on the validation period, scored on the test
  period beside a naive interval around persistence (coverage, mean width, Winkler score);
- the multi-day forecasts that ``predict`` gives, scored honestly: from every test day, the
  recursive forecast of the next ``h`` days (each forecast day fed back as input) against the
  true price ``h`` days later, beside persistence at the same horizon (today's price), for each
  ``h`` of ``evaluate.horizons`` (``horizons`` in ``metrics.json``).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from common.core.config import Config
from common.kit.splits import Splits
from projects.stock.data import check_model_input, is_volume_column, target_to_price
from projects.stock.intervals import (
    adaptive_half_widths,
    conformal_quantile,
    horizon_half_widths,
    interval_scores,
    relative_errors,
    write_intervals,
)
from projects.stock.plots import plot_residuals, plot_test_predictions
from projects.stock.predict import recursive_forecast
from projects.stock.significance import diebold_mariano, verdict

# Horizons calibrated one by one on the validation period; predict widens further ones like sqrt(h).
CALIBRATED_DAYS = 20


def one_step_prices(
    model: keras.Model, x: np.ndarray, previous_prices: np.ndarray, target: str
) -> np.ndarray:
    """The model's price forecast for each window's next day, from that window's true past."""
    predicted = model.predict(x, batch_size=1024, verbose=0)
    return target_to_price(predicted, previous_prices, target)


def price_scores(actual: np.ndarray, predicted: np.ndarray, previous: np.ndarray) -> dict:
    """RMSE, MAE, MAPE (%) and directional accuracy of a forecast and of persistence, and the
    Diebold-Mariano test of their squared errors (``dm_statistic``, two-sided ``dm_p_value``).

    Args:
        actual: the true price of each forecast day.
        predicted: the model's forecast of it.
        previous: the true price of the day before, which is persistence's forecast.
    """
    errors = predicted - actual
    baseline_errors = previous - actual
    moved = actual != previous
    true_move = np.sign(actual - previous)[moved]
    rmse = float(np.sqrt(np.mean(errors**2)))
    baseline_rmse = float(np.sqrt(np.mean(baseline_errors**2)))
    return diebold_mariano(errors, baseline_errors) | {
        "rmse": rmse,
        "baseline_rmse": baseline_rmse,
        "rmse_ratio": rmse / baseline_rmse if baseline_rmse > 0 else float("nan"),
        "mae": float(np.mean(np.abs(errors))),
        "baseline_mae": float(np.mean(np.abs(baseline_errors))),
        "mape": float(100 * np.mean(np.abs(errors) / actual)),
        "baseline_mape": float(100 * np.mean(np.abs(baseline_errors) / actual)),
        "directional_accuracy": float(np.mean(np.sign(predicted - previous)[moved] == true_move)),
        "baseline_directional_accuracy": float(np.mean(true_move > 0)),
    }


def evaluate(model: keras.Model, splits: Splits, config: Config, out_dir: Path) -> dict:
    """Scores the test period; writes ``test_predictions.png`` and ``residuals.png``.

    The validation period's RMSE ratio is reported too (as ``validation_rmse_ratio``): it is the
    figure to compare targets and feature sets by, so the test period never chooses the config.
    """
    check_model_input(model, config.data.window, splits.info["input_columns"])
    target = splits.info["target"]
    test_days = splits.info["days"]["test"]
    horizons = config.evaluate.horizons
    predicted = one_step_prices(model, splits.test[0], test_days["previous"], target)
    metrics = price_scores(test_days["actual"], predicted, test_days["previous"])
    if splits.validation is not None:
        validation_days = splits.info["days"]["validation"]
        validation = price_scores(
            validation_days["actual"],
            one_step_prices(model, splits.validation[0], validation_days["previous"], target),
            validation_days["previous"],
        )
        for key in ("rmse", "baseline_rmse", "rmse_ratio", "dm_p_value"):
            metrics[f"validation_{key}"] = validation[key]
    test_paths = recursive_forecasts(model, splits, config, "test", max(horizons))
    metrics["horizons"] = horizon_scores(*test_paths, horizons)
    bands, calibration = forecast_intervals(model, splits, config, predicted, test_paths)
    for horizon, coverage in bands.pop("horizon_coverage").items():
        metrics["horizons"][horizon]["interval_coverage"] = coverage
    half_width = bands.pop("half_widths") * test_days["previous"]
    metrics.update(bands)
    write_intervals(calibration, out_dir)
    metrics.update(
        evaluation="one-step-ahead, from the true prices of the days before",
        cell=config.model.cell,
        target=target,
        price_column=splits.info["price_column"],
        input_columns=splits.info["input_columns"],
        window=config.data.window,
        test_start=f"{test_days['dates'][0]:%Y-%m-%d}",
        test_end=f"{test_days['dates'][-1]:%Y-%m-%d}",
    )
    plot_test_predictions(
        test_days,
        predicted,
        metrics,
        out_dir / "test_predictions.png",
        (predicted - half_width, predicted + half_width),
    )
    plot_residuals(test_days, predicted, metrics, out_dir / "residuals.png")
    return metrics


def recursive_forecasts(
    model: keras.Model, splits: Splits, config: Config, part: str, days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From the last true day of each window of a period, the recursive forecast of the next days.

    Returns:
        ``forecast`` and ``actual`` shaped ``(windows, days)`` (the true price ``h`` days after
        each origin, NaN past the period's end, whose days belong to the next period), and the
        origin's own price ``today`` (persistence's forecast at every horizon).
    """
    series = splits.info["series"]
    window = config.data.window
    start, stop = splits.info["bounds"][part]
    values = series.frame.to_numpy(np.float64)
    # Window i holds rows i .. i + window - 1 of the features, i.e. rows i .. i + window of the
    # series (a return needs the day before); its origin, the last true day, is row i + window.
    histories = np.lib.stride_tricks.sliding_window_view(values, window + 1, axis=0)[start:stop]
    histories = np.moveaxis(histories, -1, 1)
    volume = np.array([is_volume_column(str(name)) for name in series.frame.columns])
    forecast = recursive_forecast(model, histories, volume, splits.info["target"], days)
    origins = np.arange(start, stop) + window
    ahead = origins[:, None] + np.arange(1, days + 1)
    last_row = stop + window  # The last day labelled in this period.
    actual = np.where(ahead <= last_row, series.prices[np.minimum(ahead, last_row)], np.nan)
    return forecast, actual, series.prices[origins]


def horizon_scores(forecast: np.ndarray, actual: np.ndarray, today: np.ndarray, horizons: list[int]) -> dict:
    """RMSE of the ``h``-day-ahead recursive forecasts beside persistence's (today's price), and
    the Diebold-Mariano test at that horizon, for each ``h``: ``{"h": {...}}``."""
    scores = {}
    for horizon in horizons:
        known = ~np.isnan(actual[:, horizon - 1])
        truth = actual[known, horizon - 1]
        errors = forecast[known, horizon - 1] - truth
        baseline_errors = today[known] - truth
        rmse = float(np.sqrt(np.mean(errors**2)))
        baseline_rmse = float(np.sqrt(np.mean(baseline_errors**2)))
        scores[str(horizon)] = {
            "days_scored": int(known.sum()),
            "rmse": rmse,
            "baseline_rmse": baseline_rmse,
            "rmse_ratio": rmse / baseline_rmse if baseline_rmse > 0 else float("nan"),
        } | diebold_mariano(errors, baseline_errors, horizon=horizon)
    return scores


def forecast_intervals(
    model: keras.Model,
    splits: Splits,
    config: Config,
    predicted: np.ndarray,
    test_paths: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[dict, dict]:
    """Conformal intervals calibrated on the validation period, scored on the test period.

    Returns:
        The metrics: the model's and the naive interval's coverage, mean width and Winkler
        score; ``horizon_coverage``, each of ``evaluate.horizons``'s coverage by plain split
        conformal; and ``half_widths``, each test day's, as a share of the day before's price
        (both for :func:`evaluate` to place). Then the calibration that ``predict`` reads
        (``intervals.json``): per-horizon half-widths as a share of the last price, at the level
        adapted through the test period.
    """
    settings = config.evaluate
    coverage = settings.coverage
    days = splits.info["days"]
    n_validation = len(days["validation"]["actual"])
    val_forecast, val_actual, val_today = recursive_forecasts(
        model, splits, config, "validation", min(CALIBRATED_DAYS, n_validation)
    )
    # Scores of horizon h: the validation days with a true price h days later inside validation.
    validation_scores = [
        relative_errors(
            val_actual[: n_validation - step, step],
            val_forecast[: n_validation - step, step],
            val_today[: n_validation - step],
        )
        for step in range(val_forecast.shape[1])
    ]
    test = days["test"]
    half_widths, level = adaptive_half_widths(
        validation_scores[0],
        relative_errors(test["actual"], predicted, test["previous"]),
        coverage,
        settings.adapt_rate,
    )
    model_band = interval_scores(
        test["actual"],
        predicted - half_widths * test["previous"],
        predicted + half_widths * test["previous"],
        coverage,
    )
    train = days["train"]
    naive = conformal_quantile(
        relative_errors(train["actual"], train["previous"], train["previous"]), coverage
    )
    naive_band = interval_scores(
        test["actual"], test["previous"] * (1 - naive), test["previous"] * (1 + naive), coverage
    )
    metrics = {
        "interval_coverage_asked": coverage,
        "interval_method": (
            f"adaptive conformal inference (rate {settings.adapt_rate:g}) on the validation period's errors"
            if settings.adapt_rate > 0
            else "split conformal on the validation period's errors"
        ),
        "half_widths": half_widths,
        **{f"interval_{key}": value for key, value in model_band.items()},
        **{f"naive_interval_{key}": value for key, value in naive_band.items()},
    }
    # Each horizon's coverage with plain split-conformal widths (no adaptation on the test period).
    forecast, actual, today = test_paths
    nominal = np.maximum.accumulate([conformal_quantile(scores, coverage) for scores in validation_scores])
    widths = horizon_half_widths(nominal.tolist(), forecast.shape[1])
    known = ~np.isnan(actual)
    inside = np.abs(np.where(known, actual, 0) - forecast) <= widths * today[:, None]
    metrics["horizon_coverage"] = {
        str(horizon): float(inside[known[:, horizon - 1], horizon - 1].mean())
        for horizon in config.evaluate.horizons
    }
    # Wider with the horizon: a longer way ahead is never more certain than a shorter one.
    adapted = np.maximum.accumulate([conformal_quantile(scores, level) for scores in validation_scores])
    calibration = {
        "coverage": coverage,
        "method": metrics["interval_method"],
        "level": level,
        "relative_half_widths": adapted.tolist(),
    }
    return metrics, calibration


def format_report(metrics: dict) -> str:
    """The model beside persistence, one row per score, for the terminal."""
    rows = [
        ("RMSE", "rmse", "baseline_rmse", "{:12.4f}"),
        ("MAE", "mae", "baseline_mae", "{:12.4f}"),
        ("MAPE %", "mape", "baseline_mape", "{:12.3f}"),
        ("direction right", "directional_accuracy", "baseline_directional_accuracy", "{:12.1%}"),
    ]
    lines = [
        f"one-step-ahead forecasts, test period {metrics['test_start']} to {metrics['test_end']}",
        f"{'':16}{'model':>12}{'persistence':>14}",
    ]
    for label, key, baseline_key, number in rows:
        lines.append(f"{label:16}{number.format(metrics[key])}  {number.format(metrics[baseline_key])}")
    lines.append('(persistence makes no up/down call; its direction column is the constant call "up")')
    lines.append(
        f"rmse / baseline_rmse = {metrics['rmse_ratio']:.4f}: "
        f"{verdict(metrics['rmse_ratio'], metrics['dm_p_value'])}"
    )
    if "interval_coverage" in metrics:
        lines.append(f"{metrics['interval_coverage_asked']:.0%} intervals ({metrics['interval_method']}):")
        lines.append(f"{'':16}{'covered':>12}{'mean width':>14}{'Winkler':>12}")
        for label, prefix in (("model", "interval_"), ("naive", "naive_interval_")):
            lines.append(
                f"{label:16}{metrics[prefix + 'coverage']:12.1%}{metrics[prefix + 'mean_width']:14.4f}"
                f"{metrics[prefix + 'winkler']:12.4f}"
            )
        lines.append("(naive: persistence +- the training period's daily move at that quantile)")
    if "horizons" in metrics:
        lines.append(
            "recursive multi-day forecasts (as predict gives them) beside persistence at each horizon:"
        )
        lines.append(
            f"{'days ahead':>10}{'scored':>8}{'RMSE':>12}{'persistence':>13}{'ratio':>9}{'covered':>9}"
            "  verdict"
        )
        for horizon, scores in sorted(metrics["horizons"].items(), key=lambda item: int(item[0])):
            lines.append(
                f"{horizon:>10}{scores['days_scored']:8d}{scores['rmse']:12.4f}{scores['baseline_rmse']:13.4f}"
                f"{scores['rmse_ratio']:9.4f}{scores['interval_coverage']:9.1%}  "
                f"{verdict(scores['rmse_ratio'], scores['dm_p_value'])}"
            )
        lines.append(
            "(covered: the split-conformal interval of that horizon, not adapted on the test period)"
        )
    return "\n".join(lines)
