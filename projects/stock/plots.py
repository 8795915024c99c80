"""The stock charts: the model's one-step forecasts beside persistence, drawn so both can be seen.

A forecast that lands at persistence differs from it by a fraction of a point on a chart that
spans hundreds, so two thin lines would lie exactly on top of each other. Every chart therefore
draws persistence as a wide, pale band and the model as a thin dark line inside it (where the
model leaves persistence, the line leaves the band), and adds a panel of what tells them apart:
the model's forecast minus persistence's, or the running difference of their squared errors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from projects.stock.significance import format_p_value

ZOOM_DAYS = 60  # Over a whole test period the lines merge; the last weeks show single days.
MODEL_COLOR = "tab:blue"
PERSISTENCE_COLOR = "tab:orange"
MODEL_LABEL = "model, one step ahead (thin line)"
PERSISTENCE_LABEL = "persistence = yesterday's price (wide band)"


def draw_against_persistence(
    axis: Axes,
    dates,
    model: np.ndarray,
    persistence: np.ndarray,
    labels: tuple[str, str] = (MODEL_LABEL, PERSISTENCE_LABEL),
) -> None:
    """Persistence as a wide pale band, the model as a thin line on top of it."""
    axis.plot(
        dates,
        persistence,
        color=PERSISTENCE_COLOR,
        linewidth=5,
        alpha=0.45,
        solid_capstyle="round",
        label=labels[1],
    )
    axis.plot(dates, model, color=MODEL_COLOR, linewidth=1.1, label=labels[0])


def draw_interval(axis: Axes, dates, lower: np.ndarray, upper: np.ndarray, metrics: dict) -> None:
    """The model's forecast interval as a pale band, labelled with its asked and test coverage."""
    label = f"{metrics['interval_coverage_asked']:.0%} interval"
    if "interval_coverage" in metrics:
        label += f" (held {metrics['interval_coverage']:.1%} of test days)"
    axis.fill_between(dates, lower, upper, color=MODEL_COLOR, alpha=0.12, linewidth=0, label=label)


def draw_forecast_difference(axis: Axes, dates, model: np.ndarray, persistence: np.ndarray) -> None:
    """The model's forecast minus persistence's, on a scale of its own: the model's whole
    contribution. Persistence is the zero line."""
    difference = model - persistence
    axis.axhline(0, color=PERSISTENCE_COLOR, linewidth=2.5, label="persistence (0)")
    axis.plot(dates, difference, color=MODEL_COLOR, linewidth=1, label="model - persistence")
    axis.fill_between(dates, difference, 0, color=MODEL_COLOR, alpha=0.2, linewidth=0)


def plot_test_predictions(
    days: dict,
    predicted: np.ndarray,
    metrics: dict,
    out_path: Path,
    interval: tuple[np.ndarray, np.ndarray] | None = None,
) -> Figure:
    """Actual, model and persistence over the test period and its last weeks (with the model's
    forecast interval, ``(lower, upper)``, if given), and the gap between the model and
    persistence day by day. Saves the figure and returns it."""
    figure = Figure(figsize=(11, 10))
    whole, zoomed, difference = figure.subplots(3, 1, gridspec_kw={"height_ratios": [1.2, 1.2, 1]})
    zoom = slice(-ZOOM_DAYS, None)
    for axis, part in ((whole, slice(None)), (zoomed, zoom)):
        dates = days["dates"][part]
        # Actual first, so the model's thin line stays on top where the three merge.
        axis.plot(dates, days["actual"][part], color="black", linewidth=0.9, label="actual")
        draw_against_persistence(axis, dates, predicted[part], days["previous"][part])
        axis.legend(loc="best", fontsize=8)
    zoomed.plot(days["dates"][zoom], days["actual"][zoom], "o", color="black", markersize=2.5)
    if interval is not None:
        draw_interval(zoomed, days["dates"][zoom], interval[0][zoom], interval[1][zoom], metrics)
        zoomed.legend(loc="best", fontsize=8)
    p_text = format_p_value(metrics["dm_p_value"], with_sign=True)
    whole.set_title(
        f"test period: RMSE {metrics['rmse']:.3f} vs persistence {metrics['baseline_rmse']:.3f} "
        f"(ratio {metrics['rmse_ratio']:.4f}, Diebold-Mariano p {p_text})"
    )
    zoomed.set_title(f"last {min(ZOOM_DAYS, len(predicted))} test days")
    draw_forecast_difference(difference, days["dates"], predicted, days["previous"])
    moves = np.abs(days["actual"] - days["previous"])
    difference.set_title(
        "model's forecast - persistence's, each test day (for scale: the actual daily move "
        f"averages {moves.mean():.3g})",
        fontsize=10,
    )
    difference.legend(loc="best", fontsize=8)
    for axis in (whole, zoomed, difference):
        axis.grid(alpha=0.3)
        axis.tick_params(axis="x", labelrotation=20)
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    return figure


def plot_residuals(days: dict, predicted: np.ndarray, metrics: dict, out_path: Path) -> Figure:
    """Forecast errors of the model and of persistence, their spread, and the running
    difference of their squared errors (what the Diebold-Mariano test weighs). Saves the figure
    and returns it."""
    model_errors = predicted - days["actual"]
    baseline_errors = days["previous"] - days["actual"]
    figure = Figure(figsize=(12, 7.5))
    grid = figure.add_gridspec(2, 2, width_ratios=[2.5, 1])
    over_time = figure.add_subplot(grid[0, 0])
    spread = figure.add_subplot(grid[0, 1])
    running = figure.add_subplot(grid[1, :])

    draw_against_persistence(
        over_time,
        days["dates"],
        model_errors,
        baseline_errors,
        labels=("model's residual (thin line)", "persistence's residual (wide band)"),
    )
    over_time.axhline(0, color="black", linewidth=0.5)
    over_time.set_title("residual (forecast - actual)")
    over_time.legend(loc="best", fontsize=8)

    bins = np.histogram_bin_edges(np.concatenate([model_errors, baseline_errors]), bins=50).tolist()
    spread.hist(
        baseline_errors,
        bins=bins,
        histtype="step",
        color=PERSISTENCE_COLOR,
        linewidth=4,
        alpha=0.6,
        label="persistence",
    )
    spread.hist(model_errors, bins=bins, histtype="step", color=MODEL_COLOR, linewidth=1.1, label="model")
    spread.set_title("distribution")
    spread.legend(loc="best", fontsize=8)

    gap = np.cumsum(model_errors**2 - baseline_errors**2)
    running.axhline(0, color=PERSISTENCE_COLOR, linewidth=2.5, label="persistence (0)")
    running.plot(days["dates"], gap, color=MODEL_COLOR, linewidth=1.2, label="model")
    running.fill_between(days["dates"], gap, 0, color=MODEL_COLOR, alpha=0.2, linewidth=0)
    p_text = format_p_value(metrics["dm_p_value"], with_sign=True)
    running.set_title(
        "running sum of (model's squared error - persistence's): below 0, the model is ahead so far "
        f"(Diebold-Mariano p {p_text} at the end)",
        fontsize=10,
    )
    running.legend(loc="best", fontsize=8)
    for axis in (over_time, spread, running):
        axis.grid(alpha=0.3)
    for axis in (over_time, running):
        axis.tick_params(axis="x", labelrotation=20)
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    return figure
