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
    parser.add_argument("--model", help="run folder or .keras file (default: latest run)")
    parser.add_argument("--input", help="a daily CSV (default: the series the model was trained on)")
    parser.add_argument("--days", type=int, default=20, help="trading days to forecast (default 20)")
    parser.add_argument("--out", type=Path, help="where to save the PNG (default: models/stock/demo.png)")
    parser.add_argument("--no-show", action="store_true", help="only save the PNG, open no window")
    options = parser.parse_args(argv)

    from common import registry, runs, workflow
    from projects.stock.data import load_series, make_splits
    from projects.stock.evaluate import one_step_prices
    from projects.stock.predict import forecast_prices

    model, config, model_file = workflow.load_saved(registry.get_project("stock"), options.model)
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

    figure, (overview, recent) = plt.subplots(2, 1, figsize=(12, 8))
    overview.plot(series.dates, series.prices, color="black", linewidth=0.8, label="history")
    overview.plot(
        test_days["dates"],
        one_step,
        color="tab:blue",
        linewidth=0.8,
        label="one-step forecasts (test period)",
    )
    overview.axvspan(test_days["dates"][0], test_days["dates"][-1], color="tab:blue", alpha=0.06)
    overview.set_title(f"{series.source}\nmodel: {model_file}", fontsize=9)

    recent_part = slice(-HISTORY_DAYS, None)
    recent.plot(
        series.dates[recent_part], series.prices[recent_part], color="black", linewidth=1.2, label="actual"
    )
    recent.plot(
        test_days["dates"][recent_part],
        one_step[recent_part],
        color="tab:blue",
        linewidth=1,
        label="model, one step ahead",
    )
    recent.plot(
        test_days["dates"][recent_part],
        test_days["previous"][recent_part],
        color="tab:orange",
        linewidth=1,
        linestyle="--",
        label="persistence (yesterday's price)",
    )
    recent.plot(
        # The forecast line starts at the last known price, so it joins the history.
        [series.dates[-1], *forecast_dates],
        [series.prices[-1], *forecast],
        color="tab:red",
        marker=".",
        label=f"forecast, next {len(forecast_dates)} business days (recursive)",
    )
    recent.set_title(f"last {HISTORY_DAYS} days and the forecast")
    for axis in (overview, recent):
        axis.set_ylabel(series.price_column)
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", fontsize=8)
        axis.tick_params(axis="x", labelrotation=20)
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    print(f"chart saved to {out_path}")
    if show:
        plt.show()
    plt.close(figure)
    return 0


def _has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _use_window_backend() -> None:
    """``common.plots`` selects the file-only Agg backend; a window needs an interactive one."""
    import matplotlib.pyplot as plt

    for backend in ("TkAgg", "QtAgg", "MacOSX"):
        try:
            plt.switch_backend(backend)
            return
        except Exception:  # Each backend fails in its own way when its toolkit is missing.
            continue
