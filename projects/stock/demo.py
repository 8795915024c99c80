"""A forecast chart: history, the test period's one-step forecasts beside persistence, and the
next days forecast recursively.

Run: make demo-stock   (or: python -m common demo stock [--model RUN] [--input CSV] [--days 20])
The chart is always saved as a PNG (its path is printed); with a display it also opens in a window.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HISTORY_DAYS = 120  # Days before the forecast shown in the lower, zoomed panel.


def demo(argv: list[str]) -> int:
    """Draws the chart for a saved model; saves it, and shows it when there is a display."""
    parser = argparse.ArgumentParser(prog="python -m common demo stock", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        help="run folder, .keras file or latest (default: the promoted run, else the shipped model)",
    )
    parser.add_argument("--input", help="a daily CSV (default: the series the model was trained on)")
    parser.add_argument("--days", type=int, default=20, help="trading days to forecast (default 20)")
    parser.add_argument("--out", type=Path, help="where to save the PNG (default: models/stock/demo.png)")
    parser.add_argument("--no-show", action="store_true", help="only save the PNG, open no window")
    options = parser.parse_args(argv)

    from common.core import registry, runs
    from common.serving import loading
    from projects.stock.data import load_series, make_splits
    from projects.stock.evaluate import one_step_prices
    from projects.stock.intervals import horizon_half_widths, read_intervals
    from projects.stock.plots import MODEL_COLOR, draw_against_persistence, draw_forecast_difference
    from projects.stock.predict import forecast_prices

    model, config, model_file = loading.load_saved(registry.get_project("stock"), options.model)
    series = load_series(config, options.input)
    splits = make_splits(series, config)
    test_days = splits.info["days"]["test"]
    one_step = one_step_prices(model, splits.test[0], test_days["previous"], config.data.target)
    forecast_dates, forecast = forecast_prices(
        model, series.frame, config.data.target, config.data.window, options.days
    )

    out_path = options.out or runs.models_dir() / "stock" / "demo.png"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    show = not options.no_show and _has_display()
    if show:
        _use_window_backend()
    import matplotlib.pyplot as plt

    figure, (overview, recent, difference) = plt.subplots(
        3,
        1,
        figsize=(12, 9),  # 900 px tall at 100 dpi: fits a 1080p screen
        gridspec_kw={"height_ratios": [1.1, 1.4, 0.75]},
        num=window_title(options.input or config.data.path, series.price_column, len(forecast_dates)),
    )
    overview.plot(series.dates, series.prices, color="black", linewidth=0.8, label="history")
    overview.plot(
        test_days["dates"],
        one_step,
        color=MODEL_COLOR,
        linewidth=0.8,
        label="one-step forecasts (test period)",
    )
    overview.axvspan(test_days["dates"][0], test_days["dates"][-1], color=MODEL_COLOR, alpha=0.06)
    overview.set_title(f"{series.source}\nmodel: {model_file}", fontsize=9)

    recent_part = slice(-HISTORY_DAYS, None)
    recent_dates = test_days["dates"][recent_part]
    recent.plot(
        series.dates[recent_part], series.prices[recent_part], color="black", linewidth=0.9, label="actual"
    )
    draw_against_persistence(recent, recent_dates, one_step[recent_part], test_days["previous"][recent_part])
    recent.plot(
        # The forecast line starts at the last known price, so it joins the history.
        [series.dates[-1], *forecast_dates],
        [series.prices[-1], *forecast],
        color="tab:red",
        marker=".",
        label=f"forecast, next {len(forecast_dates)} business days (recursive)",
    )
    calibration = read_intervals(model_file.parent)
    if calibration is not None:
        half_widths = (
            horizon_half_widths(calibration["relative_half_widths"], len(forecast)) * series.prices[-1]
        )
        recent.fill_between(
            [series.dates[-1], *forecast_dates],
            [series.prices[-1], *(forecast - half_widths)],
            [series.prices[-1], *(forecast + half_widths)],
            color="tab:red",
            alpha=0.15,
            linewidth=0,
            label=f"{calibration['coverage']:.0%} forecast interval",
        )
    recent.set_title(f"last {HISTORY_DAYS} days and the forecast")
    difference.sharex(recent)  # The same days under each other; the forecast days stay blank here.
    draw_forecast_difference(
        difference, recent_dates, one_step[recent_part], test_days["previous"][recent_part]
    )
    difference.set_title(
        f"one-step forecasts, last {HISTORY_DAYS} days: model - persistence (in {series.price_column})",
        fontsize=10,
    )
    for axis in (overview, recent, difference):
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize=8)
        axis.tick_params(axis="x", labelrotation=20)
    for axis in (overview, recent):
        axis.set_ylabel(series.price_column)
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    print(f"chart saved to {out_path}")
    if show:
        plt.show()
    plt.close(figure)
    return 0


def window_title(source: str | None, price_column: str, days: int) -> str:
    """What the window's title bar says (instead of matplotlib's "Figure 1")."""
    name = Path(source).name if source else "S&P 500 (arch)"
    return f"Stock forecast: {name}, {price_column}, next {days} business days"


def _has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _use_window_backend() -> None:
    """``common.kit.plots`` selects the file-only Agg backend; a window needs an interactive one."""
    import matplotlib.pyplot as plt

    for backend in ("TkAgg", "QtAgg", "MacOSX"):
        try:
            plt.switch_backend(backend)
            return
        except Exception:  # Each backend fails in its own way when its toolkit is missing.
            continue
