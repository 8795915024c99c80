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
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from common.config import Config
from common.data import Splits
from projects.stock.data import check_model_input, target_to_price
from projects.stock.plots import plot_residuals, plot_test_predictions
from projects.stock.significance import diebold_mariano, verdict


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
    metrics.update(
        evaluation="one-step-ahead, from the true prices of the days before",
        target=target,
        price_column=splits.info["price_column"],
        input_columns=splits.info["input_columns"],
        window=config.data.window,
        test_start=f"{test_days['dates'][0]:%Y-%m-%d}",
        test_end=f"{test_days['dates'][-1]:%Y-%m-%d}",
    )
    plot_test_predictions(test_days, predicted, metrics, out_dir / "test_predictions.png")
    plot_residuals(test_days, predicted, metrics, out_dir / "residuals.png")
    return metrics


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
    return "\n".join(lines)
