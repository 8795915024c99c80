"""The next N trading days after a series' last row, forecast recursively.

Recursive: the first day is forecast from the window of the last true days; that forecast is
then appended as if it had happened, and the next day is forecast from the window ending on it,
and so on. One model serves every horizon, but errors compound and the path soon settles near
the training drift: past a few days it says little more than persistence does.

Each forecast day comes with an interval meant to hold the true price with the probability
asked in ``evaluate.coverage`` (90% by default): the conformal half-width of that horizon times
the last true price. For the series the model was trained on, the half-widths are those
calibrated in training on the validation period's recursive forecasts (``intervals.py``; stored
in the run folder as ``intervals.json``). A file given to ``predict`` is another series, which
may move far more or less: its own last days of recursive forecasts calibrate its band, or, when
it is too short for that, the output says the band is the training series'. Past the last
calibrated horizon it widens like ``sqrt(days ahead)``. A model saved without that file
forecasts without intervals. A last daily move far beyond every move before it is flagged.

An extra input column of an invented day is not forecast: its price columns (Open, High...) move
by the same factor as the forecast price, and its volume repeats the last day's.
Dates are business days (Monday to Friday) after the last row; exchange holidays are not known,
so a forecast date may fall on one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import keras
import numpy as np
import pandas as pd

from common.core.config import Config
from common.core.errors import UserError
from common.core.project import ModelIO, Option
from projects.stock.data import (
    check_model_input,
    find_column,
    is_volume_column,
    load_series,
    target_to_price,
    values_to_features,
)
from projects.stock.intervals import conformal_quantile, horizon_half_widths, read_intervals, relative_errors

DEFAULT_DAYS = 5
MAX_HISTORY = 5000  # True prices given back with a forecast, for a chart: about 20 years.
MAX_DAYS = 260  # About a trading year; a recursive forecast means little long before that.

# What `python -m common serve` offers: POST /api/stock/forecast with an optional CSV (field
# `file`; without it the model's configured series) and predict's options as query parameters.
WEB_API = {
    "verb": "forecast",
    "upload": ".csv",
    "upload_required": False,
    "upload_help": "a daily price CSV with a Date column (default: the model's configured series)",
}


def predict(
    model: keras.Model,
    inputs: list[str],
    config: Config,
    *,
    days: Annotated[
        int, Option(f"trading days to forecast after the CSV's last row (1 to {MAX_DAYS})")
    ] = DEFAULT_DAYS,
    history: Annotated[
        int, Option("also give the last N true prices (history_dates, history), for a chart", metavar="N")
    ] = 0,
    column: Annotated[
        str,
        Option(
            "the CSV's price column to forecast, where it is not the model's data.column "
            '(e.g. "Adj Close")',
            metavar="NAME",
        ),
    ] = "",
) -> list[dict]:
    """Forecasts the days after the last row of a CSV (default: the configured series).

    Returns:
        One ``{"input", "price_column", "last_date", "last_price", "method", "dates",
        "forecast", "interval"}`` dict, with ``lower`` and ``upper`` (the interval of each day)
        when the model's run folder holds its calibration; with ``history`` N > 0 also
        ``history_dates`` and ``history``, the last N true prices (a chart draws them before
        the forecast).

    Raises:
        UserError: among others, a CSV without the model's price column; its ``choices`` then
            name the file's price columns, for ``column`` (the web page offers them to pick).
    """
    if len(inputs) > 1:
        raise UserError(
            f"give at most one CSV file (received {len(inputs)}): "
            "python -m common predict stock prices.csv --days 5"
        )
    if not 0 <= history <= MAX_HISTORY:
        raise UserError(f"--history must be between 0 and {MAX_HISTORY}; received: {history}")
    if column.strip():
        config = with_price_column(config, column.strip())
    try:
        series = load_series(config, inputs[0] if inputs else None)
    except UserError as error:
        if "column" not in error.choices or not inputs:
            raise
        # The model's price column is not in the file: the file's columns can stand in for it.
        offered = error.choices["column"]
        whose = "given by --column" if column.strip() else "the model's price column"
        raise UserError(
            f"{inputs[0]}: no column {config.data.column!r} ({whose}); the file's price columns are "
            f"{offered}: pick one with --column, e.g. --column {(offered or ['Close'])[0]!r}",
            choices=error.choices,
        ) from None
    dates, forecast = forecast_prices(model, series.frame, config.data.target, config.data.window, days)
    result = {
        "input": inputs[0] if inputs else series.source,
        "price_column": series.price_column,
        "last_date": f"{series.dates[-1]:%Y-%m-%d}",
        "last_price": significant(series.prices[-1]),
        "method": "recursive one-step forecasts; business days, exchange holidays not known",
        "dates": [f"{date:%Y-%m-%d}" for date in dates],
        "forecast": [significant(price) for price in forecast],
    }
    calibration = saved_calibration(model)
    if calibration is None:
        result["interval"] = "none: the model was saved without interval calibration (train it again)"
    else:
        relative, result["interval"] = interval_for(model, series.frame, config, calibration, bool(inputs))
        half_widths = horizon_half_widths(relative, days) * series.prices[-1]
        result["lower"] = [significant(price) for price in forecast - half_widths]
        result["upper"] = [significant(price) for price in forecast + half_widths]
    warning = last_move_warning(series.prices)
    if warning:
        result["warning"] = warning
    if history:
        result["history_dates"] = [f"{date:%Y-%m-%d}" for date in series.dates[-history:]]
        result["history"] = [significant(price) for price in series.prices[-history:]]
    return [result]


# What the model reads and gives per data.target, in words, for export.json.
_TARGET_WORDS = {
    "return": ("simple returns (today / yesterday - 1)", "price = last price * (1 + output)"),
    "log_return": ("log returns (log of today / yesterday)", "price = last price * exp(output)"),
    "price": ("price levels", "the output is the price itself"),
}


def describe_io(config: Config) -> ModelIO:
    """What an exported stock model takes and gives (written into ``export.json``)."""
    data = config.data
    columns = [data.column] + [name for name in data.features if name.casefold() != data.column.casefold()]
    scale, to_price = _TARGET_WORDS[data.target]
    return ModelIO(
        input=(
            f"windows of {data.window} trading days, oldest first, of the columns {columns} "
            f"({data.column} first), as {scale}; a volume column as the day-to-day change of "
            "log(1 + volume) (log(1 + volume) itself when data.target is price). Each window's first "
            f"day is the change from the day before it, so a window needs {data.window + 1} rows of "
            "the CSV; the model scales its inputs itself. Reading and cleaning the CSV stays in "
            "Python: projects/stock/data.py (load_series, to_features)"
        ),
        output=(
            f"the next trading day's {data.column} as {scale.split(' (')[0]} "
            f"(data.target = {data.target!r}): {to_price}; further days are forecast by feeding "
            "each day's forecast back (projects/stock/predict.py)"
        ),
    )


def with_price_column(config: Config, column: str) -> Config:
    """The config with ``column`` as the price column, in the place of ``data.column`` among the
    inputs too: the model reads the same number of columns, with the price first."""
    values = config.to_dict()
    data = values["data"]
    data["features"] = [column if find_column([data["column"]], name) else name for name in data["features"]]
    data["column"] = column
    return Config(values)


# A series given to predict calibrates its own interval from its last CALIBRATION_ORIGINS days of
# recursive forecasts, when it has at least MIN_CALIBRATION_ORIGINS (fewer would give a band from
# a handful of errors: conformal's rank needs 9 for 90%, and a band that holds on few days).
CALIBRATION_ORIGINS = 250
MIN_CALIBRATION_ORIGINS = 60
# A last daily move this many times the largest of the series before it is flagged: a typo, a
# split or a unit change in the file more often than a market's move.
SURPRISING_MOVE = 5.0


def interval_for(
    model: keras.Model, frame: pd.DataFrame, config: Config, calibration: dict, own_series: bool
) -> tuple[list[float], str]:
    """The per-horizon relative half-widths of a forecast's interval, and how they were made.

    The saved calibration holds the errors of the model on its training series' validation
    period: another series (a file given to ``predict``) may move far more or less, so its own
    recent history calibrates the band instead (the same conformal rule, on the model's recursive
    forecasts from each of its last days), where it has enough; else the band is said to be the
    training series'."""
    coverage = calibration["coverage"]
    saved = [float(value) for value in calibration["relative_half_widths"]]
    trained_on = (
        f"{coverage:.0%} conformal interval, calibrated on the training series' validation period "
        f"({calibration['method']}); wider each day ahead"
    )
    if not own_series:
        return saved, trained_on
    window, horizons = config.data.window, len(saved)
    values = frame.to_numpy(np.float64)
    # Origins with every day of the horizon known: row window .. len - 1 - horizons.
    origins = np.arange(window, len(values) - horizons)[-CALIBRATION_ORIGINS:]
    if len(origins) < MIN_CALIBRATION_ORIGINS:
        return saved, (
            f"{trained_on}; this series is too short to calibrate its own ({len(frame)} days, needs "
            f"{window + horizons + MIN_CALIBRATION_ORIGINS}), so the band is the training series' and "
            "holds only if this one moves alike"
        )
    histories = np.stack([values[origin - window : origin + 1] for origin in origins])
    volume = np.array([is_volume_column(str(name)) for name in frame.columns])
    with np.errstate(all="ignore"):
        forecast = recursive_forecast(model, histories, volume, config.data.target, horizons)
    prices = values[:, 0]
    actual = prices[origins[:, None] + np.arange(1, horizons + 1)]
    scores = relative_errors(actual, forecast, prices[origins][:, None])
    if not np.isfinite(scores).all():
        return saved, f"{trained_on}; the model's forecasts of this series' past are not finite numbers"
    # Wider with the horizon: a longer way ahead is never more certain than a shorter one.
    relative = np.maximum.accumulate(
        [conformal_quantile(scores[:, day], coverage) for day in range(horizons)]
    )
    return [float(value) for value in relative], (
        f"{coverage:.0%} conformal interval, calibrated on this series' own last {len(origins)} days of "
        "forecasts (split conformal); wider each day ahead"
    )


def last_move_warning(prices: np.ndarray) -> str:
    """A warning when the series' last daily move is far beyond every move before it, else ``""``."""
    if len(prices) < 3:
        return ""
    moves = np.abs(np.diff(np.log(np.asarray(prices, np.float64))))
    largest_before = float(np.max(moves[:-1]))
    if not moves[-1] > SURPRISING_MOVE * largest_before:
        return ""
    change = prices[-1] / prices[-2] - 1
    return (
        f"the last day moved {change:+.1%} ({significant(prices[-2])} to {significant(prices[-1])}), over "
        f"{SURPRISING_MOVE:g} times the largest move before it ({np.expm1(largest_before):.1%}): check the "
        "file (a typo, a split, another unit); the forecast and its interval take it as real"
    )


def saved_calibration(model: keras.Model) -> dict | None:
    """The interval calibration in the run folder of the model (the folder it was loaded from,
    see common.serving.loading.load_saved), or None without one."""
    model_file = getattr(model, "source_file", None)
    return None if model_file is None else read_intervals(Path(model_file).parent)


def forecast_prices(
    model: keras.Model, frame: pd.DataFrame, target: str, window: int, days: int
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Forecasts ``days`` business days after the last row of a cleaned series, recursively.

    Args:
        model: a trained stock model.
        frame: a :class:`~projects.stock.data.PriceSeries` frame (price column first).
        target: ``data.target`` the model was trained with.
        window: ``data.window`` the model was trained with.
        days: how many days to forecast.

    Returns:
        The forecast dates and prices.
    """
    if not 1 <= days <= MAX_DAYS:
        raise UserError(f"--days must be between 1 and {MAX_DAYS}; received: {days}")
    check_model_input(model, window, list(frame.columns))
    if len(frame) < window + 1:
        raise UserError(
            f"the series has {len(frame)} days; a forecast needs at least data.window + 1 = {window + 1}"
        )
    last_date = pd.Timestamp(frame.index[-1]).normalize()
    dates = pd.bdate_range(last_date + pd.Timedelta(days=1), periods=days)
    # Only the last window (plus the day before it, for the first return) is ever read.
    history = frame.to_numpy(np.float64)[-(window + 1) :]
    volume = np.array([is_volume_column(str(name)) for name in frame.columns])
    with np.errstate(all="ignore"):  # A price the model cannot handle is reported below.
        forecast = recursive_forecast(model, history[None], volume, target, days)[0]
    if not np.isfinite(forecast).all():
        date = dates[int(np.argmin(np.isfinite(forecast)))]
        raise UserError(
            f"the forecast for {date:%Y-%m-%d} is not a finite number: the series' last prices "
            f"({history[-1, 0]:g}) are outside anything the model can handle"
        )
    return dates, forecast


def recursive_forecast(
    model: keras.Model, histories: np.ndarray, volume: np.ndarray, target: str, days: int
) -> np.ndarray:
    """The next ``days`` prices after each of many histories, each day's forecast fed back in.

    Args:
        model: a trained stock model.
        histories: raw values shaped ``(n, data.window + 1, columns)``, price in column 0,
            oldest day first; the extra day gives the first day's return.
        volume: one flag per column, true for a volume column.
        target: ``data.target`` the model was trained with.
        days: how many days to forecast.

    Returns:
        The forecast prices, shaped ``(n, days)``.
    """
    histories = np.array(histories, np.float64)
    forecast = np.empty((len(histories), days))
    for step in range(days):
        x = values_to_features(histories, volume, target).astype(np.float32)
        last_day = histories[:, -1]
        price = target_to_price(np.asarray(model.predict_on_batch(x)), last_day[:, 0], target)
        # The invented day: its other price columns move by the same factor, its volume repeats.
        next_day = last_day.copy()
        next_day[:, ~volume] *= (price / last_day[:, 0])[:, None]
        next_day[:, 0] = price
        histories = np.concatenate([histories[:, 1:], next_day[:, None]], axis=1)
        forecast[:, step] = price
    return forecast


def significant(price: float) -> float:
    """A price to 10 significant digits: cents up to a hundred million, and a tiny price (a
    penny stock's 0.0001, or 1e-300) stays what it is rather than rounding to 0."""
    return float(f"{float(price):.10g}")


def format_price(price: float, decimals: int, width: int = 0) -> str:
    """``price`` with ``decimals`` decimals, or in scientific notation (3 significant digits) when
    that would take more than 8: 1.23e-12, not a row of zeros."""
    if decimals > 8:
        return f"{price:{width}.2e}"
    return f"{price:{width}.{decimals}f}"


def price_decimals(price: float) -> int:
    """Decimals to print a price with: cents (2) from 1 up, three significant digits below
    (0.500, 0.0123), as quotes are written. More would only show the forecast's noise."""
    if not math.isfinite(price) or price <= 0:
        return 2
    return max(2, 2 - math.floor(math.log10(price)))


def format_prediction(result: dict) -> str:
    """A small table: the last known price, then one line per forecast day with its interval."""
    decimals = price_decimals(result["last_price"])
    lines = [
        f"{result['input']}: {result['price_column']} was {format_price(result['last_price'], decimals)} on "
        f"{result['last_date']}; forecast ({result['method']})"
        + (f"; interval: {result['interval']}" if "interval" in result else "")
    ]
    if "warning" in result:
        lines.append(f"  warning: {result['warning']}")
    for day, (date, price) in enumerate(zip(result["dates"], result["forecast"])):
        line = f"  {date}  {format_price(price, decimals, 12)}"
        if "lower" in result:
            lower, upper = (format_price(result[key][day], decimals) for key in ("lower", "upper"))
            line += f"   [{lower}, {upper}]"
        lines.append(line)
    return "\n".join(lines)
