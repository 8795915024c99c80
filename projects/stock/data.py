"""Daily price CSVs → a clean, date-sorted series → windows split by time, scaled on training only.

Sources (the one used is logged and recorded as ``data_source``):
1. ``data.path``: a daily CSV with a Date column, such as a Yahoo Finance export
   (``Date,Open,High,Low,Close,Adj Close,Volume``) or an NSE export
   (``Date,Open,High,Low,Last,Close,Total Trade Quantity,Turnover (Lacs)``), in either date order.
2. Otherwise the daily S&P 500 (1999-2018) that ships with the ``arch`` package: works offline.

How a series becomes training data, in order:
- Rows are sorted by date; a repeated date, a missing column or a non-numeric value is an error.
- Empty values (blank, ``null``, ``NaN``) in a used column follow ``data.gaps``: the row is
  dropped, the last value is carried forward, or the file is refused; the first two are logged.
- Every input column is moved to the scale of ``data.target``: log-returns, simple returns or
  price levels (volumes become changes of ``log(1 + volume)``). Row ``j`` of these features is
  day ``j + 1``, since a return needs the day before.
- Window ``i`` holds the features of ``data.window`` consecutive days and is labelled with the
  target of the next day. Windows are split in time order: training, then validation, then test.
- The scaling statistics (mean and standard deviation per input column, and of the target) come
  from the training part alone; the model applies them in its own layers (see ``model.py``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.core.config import Config
from common.core.errors import UserError
from common.kit.splits import Splits

log = logging.getLogger(__name__)

# Tried in order; the first that reads every date wins. Month-first (US) is tried before
# day-first; a file that both read (no day above 12) is read month-first, with a warning.
DATE_FORMATS = (
    "%Y-%m-%d",
    "%d-%b-%y",
    "%d-%b-%Y",
    "%Y/%m/%d",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%d.%m.%Y",
    "%Y%m%d",
    "%b %d, %Y",
)
# Another name a requested column may go by: NSE exports call the volume "Total Trade Quantity".
COLUMN_ALIASES = {"volume": ("total trade quantity", "shares traded")}
VOLUME_WORDS = ("volume", "quantity", "turnover", "trades")
MIN_TRAIN_WINDOWS = 20
MIN_EVALUATION_WINDOWS = 5


@dataclass
class PriceSeries:
    """A cleaned daily series: sorted dates as index, the forecast price column first.

    Attributes:
        frame: one row per trading day; the first column is the price to forecast, the others
            are the extra input columns, all as float64 with no missing values.
        source: where it came from, for logs and ``metrics.json``.
    """

    frame: pd.DataFrame
    source: str

    @property
    def price_column(self) -> str:
        return str(self.frame.columns[0])

    @property
    def prices(self) -> np.ndarray:
        return self.frame.iloc[:, 0].to_numpy(np.float64)

    @property
    def dates(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.frame.index)


def load_data(config: Config, need_training: bool = True) -> Splits:
    """Returns the chronological splits of the configured series.

    All three splits are always returned: they are cheap to cut, and evaluation reports the
    validation figures beside the test ones.
    """
    splits = make_splits(load_series(config), config)
    # Checked here, before training, rather than when the multi-day forecasts are scored.
    n_test, too_far = len(splits.test[1]), max(config.evaluate.horizons)
    if too_far > n_test:
        raise UserError(
            f"config key 'evaluate.horizons' asks for {too_far} trading days ahead, beyond the test period's "
            f"{n_test} days; use horizons up to {n_test}"
        )
    return splits


def load_series(config: Config, path: str | Path | None = None) -> PriceSeries:
    """Reads ``path`` (default: ``data.path``, else the arch S&P 500) and cleans it per config."""
    if not path and config.data.path and not Path(config.data.path).expanduser().exists():
        # Prediction reads a model's saved config, whose training data may have moved since.
        raise UserError(
            f"config key 'data.path' points to {config.data.path!r}, which is not here; "
            "pass the CSV file to forecast from"
        )
    path = path or config.data.path
    if path:
        table = read_price_csv(path)
        origin = str(path)
    else:
        table = _load_arch_sp500()
        origin = "S&P 500 daily prices (arch.data.sp500)"
    frame = select_columns(table, config.data.column, config.data.features, origin)
    frame = apply_gap_rule(frame, config.data.gaps, origin)
    _check_positive(frame, origin)
    if frame.empty:
        raise UserError(f"{origin}: no rows left after applying data.gaps = {config.data.gaps!r}")
    dates = frame.index
    source = (
        f"{origin}, column {frame.columns[0]}, {len(frame)} days {dates[0]:%Y-%m-%d} to {dates[-1]:%Y-%m-%d}"
    )
    return PriceSeries(frame=frame, source=source)


def read_price_csv(path: str | Path) -> pd.DataFrame:
    """Reads a daily CSV into a frame indexed by date, oldest first, columns as in the file.

    Raises:
        UserError: the file is missing or unreadable, has no Date column, a date that none of
            the known formats reads, or a date that appears twice.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: {'is a folder' if path.is_dir() else 'no such file'}; pass a CSV file")
    try:
        # Thousands separators ("1,234.50") and decimal commas ("153,39") appear in exchange
        # exports, quoted to keep them apart from the fields: such a column is read as text and
        # its convention told apart in _to_numbers (pandas' thousands="," makes "153,39" 15339).
        table = pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[0]
        raise UserError(f"{path}: not a readable CSV file ({reason})") from None
    table.columns = [str(name).strip() for name in table.columns]
    date_column = find_column(table.columns, "Date")
    if date_column is None:
        raise UserError(
            f"{path}: no Date column; found columns {list(table.columns)}. Expected a daily export "
            "such as Yahoo Finance's Date,Open,High,Low,Close,Adj Close,Volume"
        )
    if table.empty:
        raise UserError(f"{path}: has a header but no rows")
    dates = parse_dates(table[date_column], path)
    table = table.drop(columns=date_column)
    table.index = pd.DatetimeIndex(dates, name="Date")
    duplicated = table.index[table.index.duplicated()].unique()
    if len(duplicated):
        raise UserError(
            f"{path}: date {duplicated[0]:%Y-%m-%d} appears more than once ({len(duplicated)} repeated "
            "date(s) in all); keep one row per trading day"
        )
    table = table.sort_index(kind="stable")
    spacing = table.index.to_series().diff().median()
    if len(table) > 1 and spacing < pd.Timedelta(hours=12):
        log.warning(
            "%s: rows are %s apart (median): intraday data; the model reads each row as one trading "
            "day, so a 'day' of its forecast is one row of this file",
            path,
            spacing,
        )
    return table


def parse_dates(values: pd.Series, origin: str | Path) -> pd.Series:
    """Reads a column of dates in the first of :data:`DATE_FORMATS` that fits every row.

    ISO timestamps with a time or a time zone ("2018-10-08 00:00:00-04:00") are read as the
    local calendar time they name.
    """
    text = values.astype("string").str.strip()
    if text.isna().any():
        line = int(np.flatnonzero(text.isna().to_numpy())[0]) + 2  # +1 for the header, +1 for 1-based
        raise UserError(f"{origin}: empty date on line {line}; every row needs a date")
    for date_format in DATE_FORMATS:
        parsed = pd.to_datetime(text, format=date_format, errors="coerce")
        if parsed.notna().all():
            day_first = pd.to_datetime(text, format="%d/%m/%Y", errors="coerce")
            if date_format == "%m/%d/%Y" and day_first.notna().all():
                log.warning(
                    "%s: dates like %s could be month/day or day/month; read as month/day",
                    origin,
                    text.iloc[0],
                )
            return parsed
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=False)
    if parsed.notna().all():
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_localize(None)
        return parsed
    unread = int(np.flatnonzero(parsed.isna().to_numpy())[0])
    raise UserError(
        f"{origin}: cannot read the date {text.iloc[unread]!r} on line {unread + 2}; "
        "use a format such as 2018-10-08 or 08-Oct-18"
    )


def find_column(columns: list[str] | pd.Index, name: str) -> str | None:
    """The column called ``name``, ignoring case and known aliases (Volume = Total Trade Quantity)."""
    by_folded = {str(column).casefold(): str(column) for column in columns}
    wanted = name.strip().casefold()
    for candidate in (wanted, *COLUMN_ALIASES.get(wanted, ())):
        if candidate in by_folded:
            return by_folded[candidate]
    return None


def is_volume_column(name: str) -> bool:
    """Whether a column counts shares or money traded rather than giving a price."""
    return any(word in name.casefold() for word in VOLUME_WORDS)


def select_columns(table: pd.DataFrame, column: str, features: list[str], origin: str) -> pd.DataFrame:
    """The price column first, then the other feature columns, as numbers.

    The price column is always the first input, whether or not ``features`` lists it: empty
    ``features`` (the default) read the price column alone, so ``data.column`` is the one key to
    set for a file whose price column has another name.

    Raises:
        UserError: a column is missing, or holds a value that is not a number.
    """
    selected: list[str] = []
    for key, name in [("data.column", column), *(("data.features", feature) for feature in features)]:
        actual = find_column(table.columns, name)
        if actual is None:
            # The file's other price columns, for predict (and the web page) to offer in its place.
            prices = [str(name) for name in table.columns if not is_volume_column(str(name))]
            raise UserError(
                f"{origin}: no column {name!r} (config key '{key}'); the file has "
                f"{list(table.columns)}; set {key} to one of them",
                choices={"column": prices} if key == "data.column" else None,
            )
        if actual not in selected:
            selected.append(actual)
    frame = table[selected].copy()
    for name in selected:
        frame[name] = _to_numbers(frame[name], name, origin)
    return frame


# "1,234.50" and "12,345,678": commas between groups of three digits. "153,39" and "1.234,50":
# a decimal comma (a comma followed by three digits alone, "1,234", reads as thousands).
_THOUSANDS = r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?"
_DECIMAL_COMMA = r"[+-]?\d{1,3}(?:\.\d{3})*,\d+|[+-]?\d+,\d+"


def _to_numbers(values: pd.Series, name: str, origin: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return _finite(values.astype(np.float64), values, name, origin)
    text = values.astype("string").str.strip()
    thousands = text.str.fullmatch(_THOUSANDS).fillna(False)
    decimal_comma = text.str.fullmatch(_DECIMAL_COMMA).fillna(False) & ~thousands
    if thousands.any() and decimal_comma.any():
        first, other = thousands.to_numpy().nonzero()[0][0], decimal_comma.to_numpy().nonzero()[0][0]
        raise UserError(
            f"{origin}: column {name!r} mixes thousands separators ({values.iloc[first]!r}) with decimal "
            f"commas ({values.iloc[other]!r}); write every number one way, e.g. 1234.50"
        )
    if decimal_comma.any():
        # "1.234,50": the dots group thousands, the comma marks the decimals.
        converted = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        text = text.where(~decimal_comma, converted)
    else:
        text = text.where(~thousands, text.str.replace(",", "", regex=False))
    numbers = pd.to_numeric(text, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        first = bad.to_numpy().nonzero()[0][0]
        raise UserError(
            f"{origin}: column {name!r} has non-numeric values, e.g. {values.iloc[first]!r} on "
            f"{values.index[first]:%Y-%m-%d} ({int(bad.sum())} in all); fix or delete those rows"
        )
    return _finite(numbers.astype(np.float64), values, name, origin)


# No price or volume of a real series comes near this; values beyond it overflow the features.
MAX_ABS_VALUE = 1e15


def _finite(numbers: pd.Series, values: pd.Series, name: str, origin: str) -> pd.Series:
    """Infinite values, and values too large for any real series, are errors naming the day."""
    bad = numbers.notna() & ~(numbers.abs() <= MAX_ABS_VALUE)
    if bad.any():
        first = bad.to_numpy().nonzero()[0][0]
        raise UserError(
            f"{origin}: column {name!r} has a value that is infinite or too large, {values.iloc[first]} on "
            f"{values.index[first]:%Y-%m-%d} ({int(bad.sum())} in all); fix or delete those rows"
        )
    return numbers


def apply_gap_rule(frame: pd.DataFrame, rule: str, origin: str) -> pd.DataFrame:
    """Handles empty values by ``data.gaps``: ``drop`` the rows, ``ffill`` them, or ``error``.

    Dropping never invents a price: the next return simply spans two trading days. Carrying the
    last value forward invents a day without change. Both are logged with the count of rows.
    """
    missing = frame.isna().any(axis=1)
    if not missing.any():
        return frame
    description = (
        f"{int(missing.sum())} row(s) with an empty value in {list(frame.columns)} "
        f"(first on {missing.idxmax():%Y-%m-%d})"
    )
    if rule == "error":
        raise UserError(
            f"{origin}: {description}; fill or delete them, or set data.gaps to 'drop' or 'ffill'"
        )
    if rule == "drop":
        log.warning("%s: dropping %s (data.gaps = 'drop')", origin, description)
        return frame[~missing]
    log.warning("%s: carrying the last value into %s (data.gaps = 'ffill')", origin, description)
    filled = frame.ffill()
    leading = filled.isna().any(axis=1)
    if leading.any():
        log.warning("%s: dropping %d leading row(s) with nothing to carry", origin, int(leading.sum()))
    return filled[~leading]


def _check_positive(frame: pd.DataFrame, origin: str) -> None:
    """Prices must be above 0 (returns and percentage errors divide by them); volumes at least 0."""
    for name in frame.columns:
        values = frame[name]
        bad = values < 0 if is_volume_column(name) else values <= 0
        if bad.any():
            day = bad.idxmax()
            raise UserError(
                f"{origin}: column {name!r} has the impossible value {values[day]} on {day:%Y-%m-%d}; "
                "prices must be above 0 (volumes 0 or more)"
            )


def _load_arch_sp500() -> pd.DataFrame:
    try:
        from arch.data import sp500
    except ImportError:
        raise UserError(
            "data.path is empty and the arch package, which ships the default S&P 500 series, is not "
            "installed; pip install arch, or set data.path to a daily CSV"
        ) from None
    frame = sp500.load()
    frame.index = pd.DatetimeIndex(frame.index, name="Date")
    return frame.sort_index()


def to_features(frame: pd.DataFrame, target: str) -> np.ndarray:
    """Every column of a series on the target's scale: row ``j`` describes day ``j + 1``.

    Price columns are transformed like the target (so column 0 *is* the target series);
    volumes become the change of ``log(1 + volume)``, or its level for the ``price`` target.

    Returns:
        A float64 array of shape ``(days - 1, columns)``.
    """
    volume = np.array([is_volume_column(str(name)) for name in frame.columns])
    return values_to_features(frame.to_numpy(np.float64), volume, target)


def values_to_features(values: np.ndarray, volume: np.ndarray, target: str) -> np.ndarray:
    """:func:`to_features` of raw values shaped ``(..., days, columns)``, e.g. many windows at once.

    Args:
        values: prices and volumes, the forecast price in column 0.
        volume: one flag per column, true for a volume column.
        target: ``data.target``.
    """
    values = np.asarray(values, np.float64)
    features = np.empty((*values.shape[:-2], values.shape[-2] - 1, values.shape[-1]))
    features[..., ~volume] = price_to_target(values[..., ~volume], target, axis=-2)
    logs = np.log1p(values[..., volume])
    features[..., volume] = logs[..., 1:, :] if target == "price" else np.diff(logs, axis=-2)
    return features


def price_to_target(prices: np.ndarray, target: str, axis: int = -1) -> np.ndarray:
    """Day-to-day targets of a price series (days along ``axis``): one fewer value than prices."""
    prices = np.asarray(prices, np.float64)
    days = prices.shape[axis]
    later = np.take(prices, np.arange(1, days), axis=axis)
    if target == "log_return":
        return np.diff(np.log(prices), axis=axis)
    if target == "return":
        return later / np.take(prices, np.arange(days - 1), axis=axis) - 1.0
    if target == "price":
        return later
    raise ValueError(f"target must be one of log_return, return, price; received: {target!r}")


def target_to_price(predicted: np.ndarray, previous_prices: np.ndarray, target: str) -> np.ndarray:
    """Turns predicted targets back into prices, given each day's previous (true) price."""
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    if target == "log_return":
        return previous_prices * np.exp(predicted)
    if target == "return":
        return previous_prices * (1.0 + predicted)
    if target == "price":
        return predicted
    raise ValueError(f"target must be one of log_return, return, price; received: {target!r}")


def make_windows(features: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every run of ``window`` feature rows, labelled with the next row's target (column 0).

    Returns:
        ``x`` of shape ``(rows - window, window, columns)`` as float32, and ``y`` of shape
        ``(rows - window,)``.
    """
    views = np.lib.stride_tricks.sliding_window_view(features, window, axis=0)[:-1]
    x = np.ascontiguousarray(np.moveaxis(views, -1, 1), dtype=np.float32)
    y = features[window:, 0].astype(np.float32)
    return x, y


def split_sizes(n_windows: int, validation_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """``(n_train, n_validation, n_test)``: the last windows are the test, those before validation."""
    n_test = round(n_windows * test_fraction)
    n_validation = round(n_windows * validation_fraction)
    return n_windows - n_validation - n_test, n_validation, n_test


def make_splits(series: PriceSeries, config: Config) -> Splits:
    """Cuts a series into chronological train / validation / test windows.

    The scaling statistics are computed from the feature rows up to the last training day only,
    so nothing from the validation or test periods reaches them.

    Raises:
        UserError: the series is too short for the window and the split fractions.
    """
    data = config.data
    window = data.window
    features = to_features(series.frame, data.target)
    n_windows = len(features) - window
    n_train, n_validation, n_test = split_sizes(
        max(n_windows, 0), data.validation_fraction, data.test_fraction
    )
    if n_train < MIN_TRAIN_WINDOWS or min(n_validation, n_test) < MIN_EVALUATION_WINDOWS:
        needed = math.ceil(
            max(
                MIN_TRAIN_WINDOWS / (1 - data.validation_fraction - data.test_fraction),
                (MIN_EVALUATION_WINDOWS + 0.5) / data.validation_fraction,
                (MIN_EVALUATION_WINDOWS + 0.5) / data.test_fraction,
            )
        )
        raise UserError(
            f"{series.source}: too few rows for data.window = {window}: {len(series.frame)} days give "
            f"{n_train} training, {n_validation} validation and {n_test} test windows; at least "
            f"{MIN_TRAIN_WINDOWS}, {MIN_EVALUATION_WINDOWS} and {MIN_EVALUATION_WINDOWS} are needed. "
            f"Use a series of at least {needed + window + 1} days or a smaller data.window"
        )
    x, y = make_windows(features, window)
    # Window i predicts day window + i + 1 of the series (features start on the second day).
    target_days = np.arange(window + 1, window + 1 + n_windows)
    training_rows = features[: window + n_train]
    scaler = {
        "feature_mean": training_rows.mean(axis=0),
        # A constant training column (a volume of 0 throughout) is left unscaled rather than
        # divided by zero.
        "feature_std": _nonzero(training_rows.std(axis=0)),
        "target_mean": float(y[:n_train].astype(np.float64).mean()),
        "target_std": float(_nonzero(y[:n_train].astype(np.float64).std())),
    }
    prices, dates = series.prices, series.dates
    bounds = {
        "train": (0, n_train),
        "validation": (n_train, n_train + n_validation),
        "test": (n_train + n_validation, n_windows),
    }
    days = {}
    for name, (start, stop) in bounds.items():
        target_day = target_days[start:stop]
        days[name] = {
            "dates": dates[target_day],
            "previous": prices[target_day - 1],
            "actual": prices[target_day],
        }

    def part(name: str) -> tuple[np.ndarray, np.ndarray]:
        start, stop = bounds[name]
        return x[start:stop], y[start:stop]

    log.info(
        "%d windows of %d days: train to %s, validation to %s, test to %s",
        n_windows,
        window,
        *(f"{days[name]['dates'][-1]:%Y-%m-%d}" for name in bounds),
    )
    return Splits(
        train=part("train"),
        validation=part("validation"),
        test=part("test"),
        source=series.source,
        info={
            "scaler": scaler,
            "target": data.target,
            "price_column": series.price_column,
            "input_columns": [str(name) for name in series.frame.columns],
            "days": days,
            # Each period's windows, as [start, stop) of all windows in time order.
            "bounds": bounds,
            "series": series,
        },
    )


def _nonzero(std: np.ndarray) -> np.ndarray:
    return np.where(std > 0, std, 1.0)


def check_model_input(model: Any, window: int, columns: list[str]) -> None:
    """A model saved with another window or column count would fail deep in Keras; say why here."""
    expected = tuple(model.input_shape[1:])
    if expected != (window, len(columns)):
        raise UserError(
            f"the model takes windows of {expected[0]} days x {expected[1]} column(s), but the config "
            f"gives data.window = {window} and the columns {columns}; use the config.toml saved "
            "beside the model"
        )
