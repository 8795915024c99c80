"""The stock pipeline: CSV shapes, no leakage, bad-data errors, and train → evaluate → forecast.

Every test builds its own small random-walk CSV; the real series in ../shared/data/stock are
used only by the tests marked slow.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from common.__main__ import main
from common.core import paths, registry
from common.core.config import load_config
from common.core.errors import UserError
from projects.stock import data as stock_data
from projects.stock.evaluate import format_report
from projects.stock.predict import format_prediction, price_decimals, recursive_forecast, significant
from projects.stock.settings import validate_config
from projects.stock.significance import diebold_mariano, format_p_value, verdict
from tests.conftest import SHARED_DATA, assert_one_line_error, run_subprocess

CONFIG = paths.PROJECTS_DIR / "stock" / "config.toml"
SHARED_STOCK = SHARED_DATA / "stock"
# Small enough to train in a few seconds on two CPU cores.
TINY = ["data.window=10", "model.units=[4]", "train.epochs=1", "train.batch_size=32"]


def random_walk(days: int = 300, seed: int = 0) -> pd.DataFrame:
    """Daily OHLCV prices of a random walk on business days, oldest first."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, days)))
    open_ = close * np.exp(rng.normal(0, 0.004, days))
    return pd.DataFrame(
        {
            "Date": pd.bdate_range("2017-01-02", periods=days),
            "Open": open_,
            "High": np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, days)),
            "Low": np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, days)),
            "Close": close,
            "Adj Close": close * 0.97,
            "Volume": rng.integers(100_000, 1_000_000, days),
        }
    )


def write_yahoo(path: Path, prices: pd.DataFrame) -> Path:
    """A Yahoo Finance export: ISO dates, oldest first."""
    prices.assign(Date=prices["Date"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    return path


def write_nse(path: Path, prices: pd.DataFrame) -> Path:
    """An NSE export like the tutorial's: 08-Oct-18 dates, newest first, NSE column names."""
    nse = pd.DataFrame(
        {
            "Date": prices["Date"].dt.strftime("%d-%b-%y"),
            "Open": prices["Open"],
            "High": prices["High"],
            "Low": prices["Low"],
            "Last": prices["Close"] * 1.001,
            "Close": prices["Close"],
            "Total Trade Quantity": prices["Volume"],
            "Turnover (Lacs)": prices["Volume"] * prices["Close"] / 1e5,
        }
    )
    nse.iloc[::-1].to_csv(path, index=False)
    return path


def stock_config(path: Path | str, *overrides: str):
    config = load_config(CONFIG, None, [f"data.path={path}", *overrides])
    validate_config(config)
    return config


@pytest.fixture
def yahoo_csv(tmp_path: Path) -> Path:
    return write_yahoo(tmp_path / "yahoo.csv", random_walk())


# --- Reading the CSV shapes -------------------------------------------------------------------


def test_reads_a_yahoo_export(yahoo_csv: Path) -> None:
    prices = random_walk()
    series = stock_data.load_series(stock_config(yahoo_csv))
    assert series.price_column == "Close"
    assert list(series.dates) == list(prices["Date"])
    np.testing.assert_allclose(series.prices, prices["Close"])
    assert str(yahoo_csv) in series.source


def test_reads_an_nse_export_newest_first_with_short_dates(tmp_path: Path) -> None:
    prices = random_walk()
    csv = write_nse(tmp_path / "nse.csv", prices)
    assert pd.read_csv(csv)["Date"].iloc[0] == prices["Date"].iloc[-1].strftime("%d-%b-%y")

    series = stock_data.load_series(stock_config(csv, "data.column=last", 'data.features=["Volume"]'))
    assert series.dates.is_monotonic_increasing
    assert series.dates[0] == pd.Timestamp("2017-01-02")
    # "last" matches regardless of case; "Volume" finds NSE's "Total Trade Quantity".
    assert list(series.frame.columns) == ["Last", "Total Trade Quantity"]
    np.testing.assert_allclose(series.prices, prices["Close"] * 1.001)


def test_the_price_column_is_chosen_by_config(yahoo_csv: Path) -> None:
    series = stock_data.load_series(stock_config(yahoo_csv, 'data.column="Adj Close"'))
    np.testing.assert_allclose(series.prices, random_walk()["Close"] * 0.97)
    # data.column alone is the input too: no Close beside it, unless data.features asks for one.
    assert list(series.frame.columns) == ["Adj Close"]
    ohlcv = stock_data.load_series(
        stock_config(yahoo_csv, 'data.features=["Open","High","Low","Close","Volume"]')
    )
    # The price column comes first, whatever the order in the file or in the config.
    assert list(ohlcv.frame.columns) == ["Close", "Open", "High", "Low", "Volume"]


@pytest.mark.parametrize(
    "written, read",
    [
        (['"1,234.50"', '"1,240.25"'], [1234.50, 1240.25]),  # thousands separators
        (['"12,345,678"', '"12,345,679.5"'], [12345678, 12345679.5]),
        (['"153,39"', '"154,01"'], [153.39, 154.01]),  # decimal commas, quoted in a comma CSV
        (['"1.234,50"', '"1.240,25"'], [1234.50, 1240.25]),  # dots grouping thousands, a decimal comma
        (["153.39", "154.01"], [153.39, 154.01]),
    ],
)
def test_numbers_are_read_in_the_convention_they_are_written_in(tmp_path: Path, written, read) -> None:
    csv = tmp_path / "prices.csv"
    csv.write_text("Date,Close\n2018-10-08," + written[0] + "\n2018-10-09," + written[1] + "\n")
    table = stock_data.read_price_csv(csv)
    numbers = stock_data.select_columns(table, "Close", [], str(csv))["Close"]
    np.testing.assert_allclose(numbers, read)


def test_a_column_mixing_thousands_separators_and_decimal_commas_is_one_line(tmp_path: Path) -> None:
    csv = tmp_path / "prices.csv"
    csv.write_text('Date,Close\n2018-10-08,"1,234.50"\n2018-10-09,"153,39"\n')
    table = stock_data.read_price_csv(csv)
    with pytest.raises(UserError, match="mixes thousands separators .* with decimal commas"):
        stock_data.select_columns(table, "Close", [], str(csv))


@pytest.mark.parametrize(
    "dates",
    [
        ["2018-10-08", "2018-10-31"],
        ["08-Oct-18", "31-Oct-18"],
        ["08-Oct-2018", "31-Oct-2018"],
        ["10/08/2018", "10/31/2018"],
        ["08.10.2018", "31.10.2018"],
        ["2018-10-08 00:00:00-04:00", "2018-10-31 00:00:00-04:00"],
    ],
)
def test_reads_common_date_formats(dates: list[str]) -> None:
    parsed = stock_data.parse_dates(pd.Series(dates), "test.csv")
    assert list(parsed) == [pd.Timestamp("2018-10-08"), pd.Timestamp("2018-10-31")]


def test_the_default_is_the_arch_sp500_series() -> None:
    series = stock_data.load_series(load_config(CONFIG))
    assert "S&P 500" in series.source
    assert series.dates[0] == pd.Timestamp("1999-01-04") and len(series.frame) > 5000


# --- Gaps -------------------------------------------------------------------------------------


def test_gaps_are_dropped_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    prices = random_walk()
    prices["Close"] = prices["Close"].astype(object)
    prices.loc[[50, 51], "Close"] = ["null", ""]  # Yahoo writes "null"; others leave it blank.
    csv = write_yahoo(tmp_path / "gaps.csv", prices)
    with caplog.at_level("WARNING"):
        series = stock_data.load_series(stock_config(csv))
    assert len(series.frame) == len(prices) - 2
    assert "dropping 2 row(s)" in caplog.text


def test_gaps_can_be_carried_forward(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    prices = random_walk()
    prices.loc[50, "Close"] = np.nan
    csv = write_yahoo(tmp_path / "gaps.csv", prices)
    with caplog.at_level("WARNING"):
        series = stock_data.load_series(stock_config(csv, "data.gaps=ffill"))
    assert len(series.frame) == len(prices)
    assert series.prices[50] == series.prices[49]
    assert "carrying the last value" in caplog.text


# --- No leakage -------------------------------------------------------------------------------


def test_changing_the_test_period_changes_nothing_the_model_learns_from(tmp_path: Path) -> None:
    prices = random_walk(days=400)
    config = stock_config(write_yahoo(tmp_path / "a.csv", prices), "data.window=10")
    original = stock_data.load_data(config)
    first_test_day = original.info["days"]["test"]["dates"][0]

    changed = prices.copy()
    in_test = changed["Date"] >= first_test_day
    rng = np.random.default_rng(1)
    for column in ("Open", "High", "Low", "Close", "Adj Close"):
        changed.loc[in_test, column] *= 3 * np.exp(rng.normal(0, 0.05, in_test.sum()))
    changed.loc[in_test, "Volume"] *= 10
    altered = stock_data.load_data(stock_config(write_yahoo(tmp_path / "b.csv", changed), "data.window=10"))

    for key, value in original.info["scaler"].items():
        np.testing.assert_array_equal(altered.info["scaler"][key], value, err_msg=key)
    for split in ("train", "validation"):
        np.testing.assert_array_equal(getattr(altered, split)[0], getattr(original, split)[0])
        np.testing.assert_array_equal(getattr(altered, split)[1], getattr(original, split)[1])
    # The change did reach the test period, and a change in the training period does move the
    # scaler: the assertions above can fail.
    assert not np.array_equal(altered.test[1], original.test[1])
    in_training = prices.copy()
    in_training.loc[20, "Close"] *= 1.5
    moved = stock_data.load_data(stock_config(write_yahoo(tmp_path / "c.csv", in_training), "data.window=10"))
    assert moved.info["scaler"]["target_std"] != original.info["scaler"]["target_std"]


@pytest.mark.parametrize(
    "target, label",
    [
        ("return", lambda actual, previous: actual / previous - 1),
        ("log_return", lambda actual, previous: np.log(actual / previous)),
        ("price", lambda actual, previous: actual),
    ],
)
def test_splits_are_chronological_and_labelled_with_the_next_day(yahoo_csv: Path, target, label) -> None:
    splits = stock_data.load_data(stock_config(yahoo_csv, "data.window=10", f"data.target={target}"))
    days = splits.info["days"]
    assert days["train"]["dates"][-1] < days["validation"]["dates"][0]
    assert days["validation"]["dates"][-1] < days["test"]["dates"][0]
    assert len(days["test"]["dates"]) == len(splits.test[1]) == round(289 * 0.2)
    np.testing.assert_allclose(
        splits.test[1], label(days["test"]["actual"], days["test"]["previous"]), rtol=1e-5
    )
    # A window ends on the day before its label's day: that day is the previous window's label.
    np.testing.assert_array_equal(splits.test[0][1:, -1, 0], splits.test[1][:-1])


# --- Better than persistence, or noise? The Diebold-Mariano test ------------------------------


def test_dm_matches_a_hand_computation() -> None:
    # Loss differentials d = 1, 2, 3, 4: mean 2.5, variance 1.25, so DM = 2.5 / sqrt(1.25 / 4)
    # = sqrt(20), and the HLN factor sqrt(3 / 4) makes it sqrt(15), read on t with 3 degrees of
    # freedom, whose CDF has the closed form 1/2 + (u / (1 + u^2) + atan(u)) / pi, u = t / sqrt(3).
    result = diebold_mariano(np.sqrt([1.0, 2.0, 3.0, 4.0]), np.zeros(4))
    statistic = math.sqrt(15)
    u = statistic / math.sqrt(3)
    p_value = 2 * (0.5 - (u / (1 + u**2) + math.atan(u)) / math.pi)
    assert result["dm_statistic"] == pytest.approx(statistic)
    assert result["dm_p_value"] == pytest.approx(p_value) and result["dm_p_value"] == pytest.approx(
        0.0305, abs=1e-4
    )


def test_dm_for_one_step_forecasts_is_the_t_test_of_the_loss_differential() -> None:
    rng = np.random.default_rng(0)
    errors, baseline_errors = rng.normal(0, 1.0, 500), rng.normal(0, 1.05, 500)
    result = diebold_mariano(errors, baseline_errors)
    t_test = stats.ttest_1samp(errors**2 - baseline_errors**2, 0.0)
    assert result["dm_statistic"] == pytest.approx(t_test.statistic)
    assert result["dm_p_value"] == pytest.approx(t_test.pvalue)


def test_dm_tells_a_clearly_better_forecast_from_noise() -> None:
    rng = np.random.default_rng(1)
    baseline_errors = rng.normal(0, 10.0, 1000)
    better = diebold_mariano(0.5 * baseline_errors + rng.normal(0, 1.0, 1000), baseline_errors)
    assert better["dm_statistic"] < 0 and better["dm_p_value"] < 1e-10
    # The same comparison the other way round: as significant, opposite sign.
    worse = diebold_mariano(baseline_errors, 0.5 * baseline_errors + rng.normal(0, 1.0, 1000))
    assert worse["dm_statistic"] > 0 and worse["dm_p_value"] < 1e-10
    # A forecast a hair off persistence, like the LSTM's: a ratio below 1 that is only noise.
    drifted = baseline_errors + rng.normal(0, 0.05, 1000)
    noise = diebold_mariano(drifted, baseline_errors)
    assert noise["dm_p_value"] > 0.05


def test_dm_degenerate_cases() -> None:
    errors = np.array([1.0, -2.0, 0.5])
    assert diebold_mariano(errors, errors) == {"dm_statistic": 0.0, "dm_p_value": 1.0}
    # The same loss gap every day: certain, but with no spread there is no finite statistic.
    assert diebold_mariano(np.full(5, 2.0), np.ones(5)) == {"dm_statistic": None, "dm_p_value": 0.0}
    with pytest.raises(ValueError, match="at least 2 days"):
        diebold_mariano([1.0], [2.0])
    with pytest.raises(ValueError, match="same length"):
        diebold_mariano([1.0, 2.0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "ratio, p_value, expected",
    [
        (0.9994, 0.87, "indistinguishable from persistence (Diebold-Mariano p = 0.87)"),
        (1.0031, 0.05, "indistinguishable from persistence (Diebold-Mariano p = 0.05)"),
        (0.98, 0.0012, "better than persistence (Diebold-Mariano p = 0.0012)"),
        (1.2, 1e-9, "worse than persistence (Diebold-Mariano p < 0.0001)"),
        # Rounded, 0.0499 would print as 0.05 beside the word "better".
        (0.99, 0.0499, "better than persistence (Diebold-Mariano p < 0.05)"),
    ],
)
def test_better_or_worse_only_when_significant(ratio, p_value, expected) -> None:
    assert verdict(ratio, p_value) == expected


def test_the_report_follows_the_test_not_the_ratio() -> None:
    metrics = {
        "test_start": "2015-01-02", "test_end": "2018-12-31", "rmse": 20.0, "baseline_rmse": 20.01,
        "rmse_ratio": 20.0 / 20.01, "mae": 1.0, "baseline_mae": 1.0, "mape": 1.0, "baseline_mape": 1.0,
        "directional_accuracy": 0.5, "baseline_directional_accuracy": 0.52, "dm_p_value": 0.6,
    }  # fmt: skip
    report = format_report(metrics)
    assert "better" not in report and "worse" not in report
    assert "rmse / baseline_rmse = 0.9995: indistinguishable from persistence" in report
    assert "better than persistence" in format_report(metrics | {"dm_p_value": 0.001})
    assert format_p_value(0.3) == "0.3" and format_p_value(1.0) == "1"


# --- Train → evaluate → forecast through the CLI ------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory):
    """One tiny training shared by the CLI tests: (csv, models_dir, run_dir)."""
    folder = tmp_path_factory.mktemp("stock")
    csv = write_yahoo(folder / "prices.csv", random_walk())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELS_DIR", str(folder / "models"))
        args = ["-q", "train", "stock", "--set", f"data.path={csv}", "--promote"]
        for override in TINY:
            args += ["--set", override]
        assert main(args) == 0
        yield csv, folder / "models", folder / "models" / "stock" / "latest"


@pytest.fixture
def trained_models(trained_run, monkeypatch) -> Path:
    """Points MODELS_DIR at the shared tiny run, promoted, so the CLI answers with it by default."""
    monkeypatch.setenv("MODELS_DIR", str(trained_run[1]))
    return trained_run[1]


def test_training_writes_scores_beside_persistence(trained_run) -> None:
    _, _, run_dir = trained_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in (
        "rmse", "baseline_rmse", "rmse_ratio", "mae", "baseline_mae", "mape", "baseline_mape",
        "directional_accuracy", "baseline_directional_accuracy", "validation_rmse_ratio",
        "dm_statistic", "dm_p_value", "validation_dm_p_value", "data_source", "n_train", "n_validation",
        "n_test",
    ):  # fmt: skip
        assert key in metrics, key
    assert metrics["rmse_ratio"] == pytest.approx(metrics["rmse"] / metrics["baseline_rmse"])
    assert 0 <= metrics["dm_p_value"] <= 1
    # The statistic's sign follows the ratio: positive when the model's squared errors are larger.
    assert (metrics["dm_statistic"] > 0) == (metrics["rmse_ratio"] > 1)
    assert metrics["n_test"] == round((300 - 1 - 10) * 0.2)
    assert "prices.csv" in metrics["data_source"]
    # The network's kind and size, and the intervals and horizons beside their baselines.
    assert metrics["cell"] == "lstm" and metrics["parameters"] == 4 * (4 * (1 + 4) + 4) + 4 + 1
    for key in ("interval", "naive_interval"):
        assert 0 <= metrics[f"{key}_coverage"] <= 1 and metrics[f"{key}_mean_width"] > 0
        assert metrics[f"{key}_winkler"] >= metrics[f"{key}_mean_width"]
    assert sorted(metrics["horizons"], key=int) == ["1", "5", "10"]
    assert metrics["horizons"]["1"]["rmse_ratio"] == pytest.approx(metrics["rmse_ratio"], rel=1e-4)
    assert metrics["horizons"]["10"]["days_scored"] == metrics["n_test"] - 9
    for picture in ("test_predictions.png", "residuals.png", "learning_curves.png"):
        assert (run_dir / picture).stat().st_size > 0


def test_evaluate_scores_the_saved_model(trained_run, trained_models, cli, tmp_path: Path) -> None:
    result = cli("evaluate", "stock", "--out", tmp_path)
    assert result.code == 0 and "rmse / baseline_rmse" in result.stdout
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    trained = json.loads((trained_run[2] / "metrics.json").read_text())
    assert evaluated["rmse"] == pytest.approx(trained["rmse"], rel=1e-5)
    assert evaluated["dm_p_value"] == pytest.approx(trained["dm_p_value"], rel=1e-4)
    report_verdict = [line for line in result.stdout.splitlines() if "rmse / baseline_rmse" in line][0]
    assert report_verdict.endswith(verdict(evaluated["rmse_ratio"], evaluated["dm_p_value"]))
    if evaluated["dm_p_value"] >= 0.05:
        # The verdict's words; a warning line may say the ratio is no better than persistence's 1.
        report = "\n".join(line for line in result.stdout.splitlines() if not line.startswith("warning:"))
        assert "better" not in report and "worse" not in report


def test_predict_forecasts_business_days_after_the_last_row(trained_run, trained_models, cli) -> None:
    csv = trained_run[0]
    # No file: the series the model was trained on (its config's data.path), with its saved band.
    result = cli("predict", "stock", "--days", "3", "--json")
    assert result.code == 0, result.stderr
    forecast = json.loads(result.stdout.strip().splitlines()[-1])
    last_date = random_walk()["Date"].iloc[-1]  # A Friday: the next business days skip the weekend.
    assert forecast["last_date"] == f"{last_date:%Y-%m-%d}"
    assert forecast["dates"] == [f"{day:%Y-%m-%d}" for day in pd.bdate_range(last_date, periods=4)[1:]]
    assert len(forecast["forecast"]) == 3 and all(price > 0 for price in forecast["forecast"])
    # A day's move of a tiny model on a random walk is small; anything else is a units bug.
    assert forecast["forecast"][0] == pytest.approx(forecast["last_price"], rel=0.05)
    # Each day has its interval, around the forecast and wider each day ahead, as calibrated.
    calibration = json.loads((trained_run[2] / "intervals.json").read_text())
    half_widths = np.array(calibration["relative_half_widths"][:3]) * forecast["last_price"]
    assert np.allclose(forecast["upper"], np.array(forecast["forecast"]) + half_widths, rtol=1e-8)
    assert np.allclose(forecast["lower"], np.array(forecast["forecast"]) - half_widths, rtol=1e-8)
    assert np.all(np.diff(np.subtract(forecast["upper"], forecast["lower"])) >= 0)
    assert "calibrated on the training series' validation period" in forecast["interval"]

    # The same model forecasts another file's shape (NSE, newest first), and prints a table.
    nse = write_nse(csv.with_name("nse.csv"), random_walk(seed=3))
    table = cli("predict", "stock", nse, "--days", "2")
    assert table.code == 0 and "nse.csv" in table.stdout
    lines = table.stdout.strip().splitlines()
    assert len(lines) == 3
    # Prices around 100 print in cents, like the quotes they continue, each with its interval.
    for line in lines[1:]:
        assert re.fullmatch(r"  \d{4}-\d\d-\d\d +\d+\.\d\d   \[\d+\.\d\d, \d+\.\d\d\]", line), line
        price, low, high = (float(number) for number in re.findall(r"\d+\.\d\d", line))
        assert low < price < high


def test_a_series_given_to_predict_calibrates_its_own_interval(trained_run, trained_models) -> None:
    """A series moving 10% a day, ten times the training series: a band from the training series
    would hold the next price on about a fifth of days; its own calibration holds about 90%."""
    from common.core import registry
    from common.serving import loading
    from projects.stock.predict import interval_for, saved_calibration

    model, config, _ = loading.load_saved(registry.get_project("stock"), None, announce=False)
    calibration = saved_calibration(model)
    rng = np.random.default_rng(7)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.10, 450)))
    frame = pd.DataFrame({"Close": prices}, index=pd.bdate_range("2015-01-01", periods=450))
    held, days = 0, range(330, 430)
    for last in days:  # the forecast made after day `last`, against the true day after it
        relative, how = interval_for(model, frame.iloc[: last + 1], config, calibration, own_series=True)
        forecast = recursive_forecast(model, frame.to_numpy()[None, last - config.data.window : last + 1],
                                      np.array([False]), config.data.target, 1)[0, 0]  # fmt: skip
        held += abs(prices[last + 1] - forecast) <= relative[0] * prices[last]
    assert "calibrated on this series' own last 250 days" in how
    assert calibration["relative_half_widths"][0] < 0.05 < 0.1 < relative[0]
    assert 0.8 <= held / len(days) <= 0.97

    short = frame.iloc[:60]  # 60 days - the window - the calibrated horizons: under 60 origins
    relative, how = interval_for(model, short, config, calibration, own_series=True)
    assert relative == calibration["relative_half_widths"]
    needs = config.data.window + len(calibration["relative_half_widths"]) + 60
    assert (
        f"too short to calibrate its own (60 days, needs {needs})" in how
        and "the band is the training series'" in how
    )


def test_a_last_move_far_beyond_any_before_is_flagged(trained_run, trained_models, cli) -> None:
    from projects.stock.predict import last_move_warning

    prices = random_walk()["Close"].to_numpy()
    assert last_move_warning(prices) == ""
    jumped = np.append(prices, prices[-1] * 1000)
    assert last_move_warning(jumped).startswith("the last day moved +99900.0%")
    walk = random_walk()
    walk.loc[len(walk) - 1, ["Open", "High", "Low", "Close", "Adj Close"]] *= 1000
    csv = write_yahoo(trained_run[0].with_name("jumped.csv"), walk)
    table = cli("predict", "stock", csv, "--days", "1")
    assert table.code == 0, table.stderr
    assert re.search(r"\n  warning: the last day moved \+\d{5,6}\.\d% \(", table.stdout), table.stdout


def test_json_prices_keep_ten_significant_digits_however_small():
    assert significant(2485.741234567891) == 2485.741235
    assert significant(1.2345e-300) == 1.2345e-300 and significant(0.0001) == 0.0001
    assert significant(123456789.123) == 123456789.1


@pytest.mark.parametrize(
    "price, decimals, printed",
    [
        (2485.7412, 2, "2485.74"),
        (180.94, 2, "180.94"),
        (1.0, 2, "1.00"),
        (0.5, 3, "0.500"),
        (0.012345, 4, "0.0123"),
        (1.2345e-300, 302, "1.23e-300"),  # not 0.00
    ],
)
def test_forecasts_print_prices_to_sensible_decimals(price, decimals, printed) -> None:
    assert price_decimals(price) == decimals
    result = {
        "input": "x.csv", "price_column": "Close", "last_price": price, "last_date": "2018-11-28",
        "method": "m", "dates": ["2018-11-29"], "forecast": [price * 1.0000001],
    }  # fmt: skip
    table = format_prediction(result).splitlines()
    assert f"Close was {printed} on" in table[0] and table[1].endswith(f" {printed}")


def test_the_demo_saves_a_chart_without_a_display(trained_models, cli, tmp_path: Path) -> None:
    out = tmp_path / "demo.png"
    result = cli("demo", "stock", "--no-show", "--days", "5", "--out", out)
    assert result.code == 0 and str(out) in result.stdout
    assert out.stat().st_size > 0


def test_the_demo_window_has_a_title(trained_models, cli, tmp_path: Path, monkeypatch) -> None:
    """The window says what it shows, not matplotlib's "Figure 1" (shown here without a screen)."""
    import importlib

    import matplotlib.pyplot as plt

    demo = importlib.import_module("projects.stock.demo")  # the package exports demo() by that name
    shown = []
    monkeypatch.setattr(demo, "_has_display", lambda: True)
    monkeypatch.setattr(demo, "_use_window_backend", lambda: None)  # stay on Agg: no real window
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf().canvas.manager.get_window_title()))
    result = cli("demo", "stock", "--days", "3", "--out", tmp_path / "demo.png")
    assert result.code == 0, result.stderr
    assert shown == ["Stock forecast: prices.csv, Close, next 3 business days"]


def _test_days(count: int = 120, seed: int = 0) -> tuple[dict, np.ndarray]:
    """A test period of a random walk and a model that is persistence plus a small drift."""
    prices = random_walk(count + 1, seed)
    days = {
        "dates": pd.DatetimeIndex(prices["Date"].iloc[1:]),
        "previous": prices["Close"].to_numpy()[:-1],
        "actual": prices["Close"].to_numpy()[1:],
    }
    return days, days["previous"] * 1.0003


def test_the_charts_keep_the_model_and_persistence_apart(tmp_path: Path) -> None:
    """The model hugs persistence, so the charts draw persistence as a wide band under the
    model's thin line and add a panel of what tells them apart."""
    from projects.stock.evaluate import price_scores
    from projects.stock.plots import plot_residuals, plot_test_predictions

    days, predicted = _test_days()
    metrics = price_scores(days["actual"], predicted, days["previous"])
    figure = plot_test_predictions(days, predicted, metrics, tmp_path / "test_predictions.png")
    whole, zoomed, difference = figure.axes
    for axis in (whole, zoomed):
        lines = {line.get_label(): line for line in axis.get_lines()}
        model = next(line for label, line in lines.items() if label.startswith("model"))
        persistence = next(line for label, line in lines.items() if label.startswith("persistence"))
        assert persistence.get_linewidth() >= 3 * model.get_linewidth()
        assert axis.get_lines().index(model) > axis.get_lines().index(persistence)  # drawn on top
    gap = next(line for line in difference.get_lines() if line.get_label() == "model - persistence")
    np.testing.assert_allclose(gap.get_ydata(), predicted - days["previous"])
    assert "p = " in whole.get_title() or "p < " in whole.get_title()

    figure = plot_residuals(days, predicted, metrics, tmp_path / "residuals.png")
    running = next(line for line in figure.axes[2].get_lines() if line.get_label() == "model")
    squared_gap = (predicted - days["actual"]) ** 2 - (days["previous"] - days["actual"]) ** 2
    np.testing.assert_allclose(running.get_ydata(), np.cumsum(squared_gap))
    for picture in ("test_predictions.png", "residuals.png"):
        assert (tmp_path / picture).stat().st_size > 0


def test_predict_offers_the_price_columns_of_a_file_without_the_models(
    trained_run, trained_models, cli, tmp_path: Path
) -> None:
    prices = random_walk(seed=5)
    csv = write_yahoo(tmp_path / "adjusted.csv", prices.drop(columns="Close"))
    refused = cli("predict", "stock", csv)
    assert_one_line_error(refused, "no column 'Close' (the model's price column)", "--column 'Open'")
    assert "['Open', 'High', 'Low', 'Adj Close']" in refused.stderr  # Volume is no price to forecast.

    answered = cli("predict", "stock", csv, "--column", "Adj Close", "--days", "2", "--json")
    assert answered.code == 0, answered.stderr
    forecast = json.loads(answered.stdout.strip().splitlines()[-1])
    assert forecast["price_column"] == "Adj Close"
    assert forecast["last_price"] == pytest.approx(prices["Adj Close"].iloc[-1], rel=1e-9)

    # The web page's way: the error carries the columns to pick, and the pick is the same option.
    pytest.importorskip("httpx2")
    from fastapi.testclient import TestClient

    from common.serving import app as web_app

    served, unavailable = web_app.load_projects(["stock"])
    with TestClient(web_app.create_app(served, unavailable), raise_server_exceptions=False) as client:

        def post(**params: str):
            with csv.open("rb") as stream:
                upload = {"file": ("adjusted.csv", stream, "text/csv")}
                return client.post("/api/stock/forecast", params={"days": "2", **params}, files=upload)

        offered = post()
        assert offered.status_code == 400
        assert offered.json()["choices"] == {"column": ["Open", "High", "Low", "Adj Close"]}
        assert offered.json()["error"].startswith("adjusted.csv: no column 'Close'")
        picked = post(column="Adj Close")
        assert picked.status_code == 200, picked.text
        assert picked.json()["price_column"] == "Adj Close"
        assert picked.json()["forecast"] == forecast["forecast"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--days", "0"], "--days must be between 1 and"),
        (["a.csv", "b.csv"], "at most one CSV file"),
        (["missing.csv"], "missing.csv: no such file"),
        # The training series has moved since: say so, rather than fail on a missing file.
        (["--set", "data.path=/nowhere/prices.csv"], "'/nowhere/prices.csv', which is not here"),
    ],
)
def test_predict_refuses_bad_arguments(trained_models, cli, args, message) -> None:
    assert_one_line_error(cli("predict", "stock", *args), message)


# --- Bad data: one line naming the problem, exit status 2 -------------------------------------


def _without_close(prices: pd.DataFrame) -> pd.DataFrame:
    return prices.drop(columns="Close")


def _with_text(prices: pd.DataFrame) -> pd.DataFrame:
    prices = prices.astype({"Close": object})
    prices.loc[120, "Close"] = "n/a-ish"
    return prices


def _with_repeated_date(prices: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([prices, prices.iloc[[100]]])


def _with_gap(prices: pd.DataFrame) -> pd.DataFrame:
    prices.loc[77, "Close"] = np.nan
    return prices


def _with_negative_price(prices: pd.DataFrame) -> pd.DataFrame:
    prices.loc[10, "Close"] = -3.0
    return prices


def _with_infinite_last_close(prices: pd.DataFrame) -> pd.DataFrame:
    prices.loc[len(prices) - 1, "Close"] = np.inf
    return prices


def _with_huge_last_close(prices: pd.DataFrame) -> pd.DataFrame:
    prices.loc[len(prices) - 1, "Close"] = 1e308
    return prices


def _with_bad_date(prices: pd.DataFrame) -> pd.DataFrame:
    prices = prices.assign(Date=prices["Date"].dt.strftime("%Y-%m-%d"))
    prices.loc[5, "Date"] = "someday"
    return prices


def test_one_key_names_the_price_column_of_a_file_without_close(tmp_path: Path) -> None:
    prices = random_walk()
    csv = tmp_path / "price.csv"
    pd.DataFrame({"Date": prices["Date"], "Price": prices["Close"]}).to_csv(csv, index=False)
    series = stock_data.load_series(stock_config(csv, "data.column=Price"))
    assert list(series.frame.columns) == ["Price"]
    np.testing.assert_allclose(series.prices, prices["Close"])


@pytest.mark.parametrize(
    "make_bad, overrides, message",
    [
        (_without_close, [], "no column 'Close' (config key 'data.column')"),
        (lambda prices: prices, ['data.features=["Close","Turnover"]'], "no column 'Turnover'"),
        (_with_text, [], "column 'Close' has non-numeric values, e.g. 'n/a-ish' on 2017-06-19"),
        (_with_repeated_date, [], "date 2017-05-22 appears more than once"),
        (lambda prices: prices.iloc[:40], [], "too few rows for data.window = 10"),
        (lambda prices: prices, ["data.window=280"], "too few rows for data.window = 280"),
        (_with_gap, ["data.gaps=error"], "1 row(s) with an empty value"),
        (_with_negative_price, [], "impossible value -3.0 on 2017-01-16"),
        (_with_infinite_last_close, [], "column 'Close' has a value that is infinite or too large"),
        (_with_huge_last_close, [], "column 'Close' has a value that is infinite or too large, 1e+308"),
        (_with_bad_date, [], "cannot read the date 'someday' on line 7"),
        (lambda prices: prices.rename(columns={"Date": "Day"}), [], "no Date column"),
        (lambda prices: prices.iloc[:0], [], "has a header but no rows"),
    ],
)
def test_bad_data_is_one_clear_error(tmp_path, models_dir, cli, make_bad, overrides, message) -> None:
    csv = tmp_path / "bad.csv"
    make_bad(random_walk()).to_csv(csv, index=False, date_format="%Y-%m-%d")
    args = ["train", "stock", "--set", f"data.path={csv}", "--set", "data.window=10"]
    for override in overrides:
        args += ["--set", override]
    assert_one_line_error(cli(*args), message)
    assert not (models_dir / "stock" / "latest").exists()


def test_an_empty_file_is_one_clear_error(tmp_path, cli) -> None:
    csv = tmp_path / "empty.csv"
    csv.write_text("")
    assert_one_line_error(cli("train", "stock", "--set", f"data.path={csv}"), "the file is empty")


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.target=level", "data.target"),
        ("data.gaps=interpolate", "data.gaps"),
        ("data.window=1", "data.window"),
        ("data.test_fraction=0.7", "data.test_fraction"),
        ("model.units=[0]", "model.units"),
        ("model.dropout=1.0", "model.dropout"),
        ("model.kernel_size=0", "model.kernel_size"),
        ("evaluate.coverage=1.0", "evaluate.coverage"),
        ("evaluate.coverage=0", "evaluate.coverage"),
        ("evaluate.adapt_rate=-0.1", "evaluate.adapt_rate"),
        ("evaluate.horizons=[0]", "evaluate.horizons"),
        ('data.column=""', "data.column"),
        ("data.features=[1]", "data.features"),
    ],
)
def test_bad_settings_name_the_key(cli, override, key) -> None:
    assert_one_line_error(cli("train", "stock", "--set", override), f"'{key}'")


def test_the_real_cli_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    csv = write_yahoo(tmp_path / "short.csv", random_walk(days=30))
    result = run_subprocess(
        "-q", "train", "stock", "--set", f"data.path={csv}", env={"MODELS_DIR": str(tmp_path / "models")}
    )
    assert_one_line_error(result, "too few rows")
    assert result.stderr.strip().count("\n") == 0, result.stderr


def test_every_stock_config_file_is_valid() -> None:
    project = registry.get_project("stock")
    for path in project.config_variants():
        config = load_config(project.default_config, path if path != project.default_config else None)
        validate_config(config)


# --- Real series (slow) -------------------------------------------------------------------------


needs_shared_data = pytest.mark.skipif(
    not SHARED_STOCK.is_dir(), reason=f"real series not found in {SHARED_STOCK}"
)


@pytest.mark.slow
@needs_shared_data
def test_reads_the_real_exports() -> None:
    aapl = stock_data.load_series(stock_config(SHARED_STOCK / "AAPL.csv"))
    assert len(aapl.frame) == 5033 and aapl.dates.is_monotonic_increasing
    nse = stock_data.load_series(stock_config(SHARED_STOCK / "NSE-TATAGLOBAL.csv"))
    assert len(nse.frame) == 2035 and nse.dates[0] == pd.Timestamp("2010-07-21")
    assert nse.dates[-1] == pd.Timestamp("2018-09-28")


@pytest.mark.slow
@pytest.mark.parametrize("csv", ["", "AAPL.csv", "NSE-TATAGLOBAL.csv"])
def test_the_defaults_match_persistence_on_real_series(csv, models_dir, cli) -> None:
    """The bars: rmse / baseline_rmse at most 1.02 with the default config, and the 90% interval
    holding 88-92% of the test days."""
    if csv and not SHARED_STOCK.is_dir():
        pytest.skip(f"real series not found in {SHARED_STOCK}")
    result = cli("train", "stock", "--set", f"data.path={SHARED_STOCK / csv if csv else ''}")
    assert result.code == 0, result.stderr
    metrics = json.loads((models_dir / "stock" / "latest" / "metrics.json").read_text())
    assert metrics["rmse_ratio"] <= 1.02
    assert 0 <= metrics["dm_p_value"] <= 1 and 0 <= metrics["validation_dm_p_value"] <= 1
    # The 90% intervals hold 88-92% of the test days (measured: 88.7%, 89.6%, 89.1%).
    assert 0.88 <= metrics["interval_coverage"] <= 0.92


# --- Windows, splits, scaling and scores, by value on hand-made series --------------------------

# A 40-day series cut by window = 3 and 20% + 20%: 39 feature rows (day j + 1 in row j) give 36
# windows, of which round(7.2) = 7 test, 7 validation and 22 training windows. Window i holds days
# i + 1 .. i + 3 and is labelled with day i + 4: training labels are days 4-25, validation days
# 26-32, test days 33-39, so the training inputs span days 1-25.
HAND_DAYS = 40
HAND = ["data.window=3", "data.validation_fraction=0.2", "data.test_fraction=0.2"]
TRAIN_LABEL_DAYS = range(4, 26)
VALIDATION_LABEL_DAYS = range(26, 33)
TEST_LABEL_DAYS = range(33, 40)


def hand_prices() -> np.ndarray:
    """Prices near 100 while training, far above in validation (~500) and test (~900), so any
    statistic that reads past day 25 comes out visibly different."""
    day = np.arange(HAND_DAYS)
    return np.where(
        day <= 25, 100.0 + (day * 7) % 5 + day / 2, np.where(day <= 32, 500.0 + 3 * day, 900.0 - day)
    )


def hand_series(prices: np.ndarray, **columns: np.ndarray) -> stock_data.PriceSeries:
    frame = pd.DataFrame(
        {"Close": prices, **columns},
        index=pd.DatetimeIndex(pd.bdate_range("2020-01-01", periods=len(prices))),
    )
    return stock_data.PriceSeries(frame=frame, source="hand-made series")


def test_windows_hold_consecutive_rows_and_the_next_rows_target() -> None:
    features = np.arange(12, dtype=np.float64).reshape(6, 2)  # row r is (2r, 2r + 1)
    x, y = stock_data.make_windows(features, 4)
    assert x.shape == (2, 4, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], [[0, 1], [2, 3], [4, 5], [6, 7]])
    np.testing.assert_array_equal(x[1], [[2, 3], [4, 5], [6, 7], [8, 9]])
    # Labelled with column 0 of the row right after the window.
    np.testing.assert_array_equal(y, [8, 10])


@pytest.mark.parametrize(
    "n_windows, validation, test, sizes",
    [(100, 0.1, 0.2, (70, 10, 20)), (36, 0.2, 0.2, (22, 7, 7)), (289, 0.1, 0.2, (202, 29, 58))],
)
def test_split_sizes_take_the_test_and_validation_shares_from_the_end(n_windows, validation, test, sizes):
    assert stock_data.split_sizes(n_windows, validation, test) == sizes


def test_price_windows_splits_and_days_match_a_hand_count() -> None:
    prices = hand_prices()
    dates = pd.bdate_range("2020-01-01", periods=HAND_DAYS)
    splits = stock_data.make_splits(hand_series(prices), stock_config("", *HAND, "data.target=price"))
    assert splits.sizes() == {"n_train": 22, "n_validation": 7, "n_test": 7}
    label_days = {"train": TRAIN_LABEL_DAYS, "validation": VALIDATION_LABEL_DAYS, "test": TEST_LABEL_DAYS}
    for name, label_day in label_days.items():
        x, y = getattr(splits, name)
        label_day = np.array(label_day)
        # The label is the day right after the window's last day; the window is the 3 days before.
        np.testing.assert_allclose(y, prices[label_day], rtol=1e-6)
        np.testing.assert_allclose(x[:, :, 0], prices[label_day[:, None] + np.array([-3, -2, -1])], rtol=1e-6)
        days = splits.info["days"][name]
        assert list(days["dates"]) == list(dates[label_day])
        np.testing.assert_array_equal(days["actual"], prices[label_day])
        np.testing.assert_array_equal(days["previous"], prices[label_day - 1])
    # Every day from the first label to the last is the label of exactly one window.
    all_dates = np.concatenate([splits.info["days"][name]["dates"] for name in label_days])
    assert list(all_dates) == list(dates[4:])


def test_the_scaler_is_fitted_on_the_training_period_alone() -> None:
    prices = hand_prices()
    splits = stock_data.make_splits(hand_series(prices), stock_config("", *HAND, "data.target=price"))
    scaler = splits.info["scaler"]
    # Inputs: the price levels of days 1-25; targets: days 4-25 (population standard deviations).
    inputs, targets = prices[1:26], prices[4:26]
    np.testing.assert_allclose(scaler["feature_mean"], [inputs.mean()])
    np.testing.assert_allclose(scaler["feature_std"], [inputs.std()])
    assert scaler["target_mean"] == pytest.approx(targets.mean())
    assert scaler["target_std"] == pytest.approx(targets.std())
    # The example can tell: one more day, the first validation label, would move every figure.
    assert not np.isclose(prices[1:27].mean(), inputs.mean()) and not np.isclose(
        prices[4:27].std(), targets.std()
    )


def test_the_scaler_of_returns_and_volumes_is_fitted_on_the_training_period_alone() -> None:
    prices = hand_prices()
    volume = 1000.0 + 50 * np.arange(HAND_DAYS) ** 1.5
    splits = stock_data.make_splits(
        hand_series(prices, Volume=volume), stock_config("", *HAND, "data.target=log_return")
    )
    scaler = splits.info["scaler"]
    # Day d's log-return is log(p[d] / p[d - 1]); its volume change log(1 + v[d]) - log(1 + v[d - 1]).
    returns = np.log(prices[1:26] / prices[0:25])
    volume_changes = np.log((1 + volume[1:26]) / (1 + volume[0:25]))
    np.testing.assert_allclose(scaler["feature_mean"], [returns.mean(), volume_changes.mean()])
    np.testing.assert_allclose(scaler["feature_std"], [returns.std(), volume_changes.std()])
    assert scaler["target_mean"] == pytest.approx(returns[3:].mean())
    assert scaler["target_std"] == pytest.approx(returns[3:].std())
    np.testing.assert_allclose(splits.train[1], returns[3:], rtol=1e-5)


def test_scores_and_persistence_match_a_hand_computation() -> None:
    from projects.stock.evaluate import price_scores

    actual = np.array([10.0, 12.0, 11.0, 11.0, 14.0])
    previous = np.array([9.0, 10.0, 12.0, 11.0, 11.0])
    predicted = np.array([8.0, 11.0, 12.0, 12.0, 13.0])
    scores = price_scores(actual, predicted, previous)
    # Model errors -2, -1, 1, 1, -1; persistence's (previous - actual) -1, -2, 1, 0, -3.
    assert scores["rmse"] == pytest.approx(math.sqrt(8 / 5))
    assert scores["baseline_rmse"] == pytest.approx(math.sqrt(15 / 5))
    assert scores["rmse_ratio"] == pytest.approx(math.sqrt(8 / 15))
    assert scores["mae"] == pytest.approx(6 / 5)
    assert scores["baseline_mae"] == pytest.approx(7 / 5)
    assert scores["mape"] == pytest.approx(100 * (2 / 10 + 1 / 12 + 1 / 11 + 1 / 11 + 1 / 14) / 5)
    assert scores["baseline_mape"] == pytest.approx(100 * (1 / 10 + 2 / 12 + 1 / 11 + 0 / 11 + 3 / 14) / 5)
    # Day 4 did not move and is left out. The moves were up, up, down, up; the model called
    # down, up, none, up: 2 of 4 right. Persistence's constant "up" is right on 3 of 4.
    assert scores["directional_accuracy"] == pytest.approx(2 / 4)
    assert scores["baseline_directional_accuracy"] == pytest.approx(3 / 4)
    # Squared-error differentials d = 3, -3, 0, 1, -8: mean -1.4, squared deviations summing to
    # 73.2, so the t statistic (the HLN-corrected DM for one step) is -1.4 / sqrt(73.2 / 4 / 5).
    statistic = -1.4 / math.sqrt(73.2 / 4 / 5)
    assert scores["dm_statistic"] == pytest.approx(statistic)
    assert scores["dm_p_value"] == pytest.approx(2 * stats.t.cdf(statistic, df=4))


def test_dm_of_eight_days_matches_the_papers_formulas() -> None:
    errors = np.array([2.0, -2.5, 1.5, 3.0, -2.0, 2.5, 1.0, -2.0])
    baseline_errors = np.array([1.0, -1.0, 1.0, 2.0, -2.0, 2.0, 1.5, -1.0])
    # d = e^2 - b^2 = 3, 5.25, 1.25, 5, 0, 2.25, -1.25, 3: sum 18.5, mean 2.3125.
    d = np.array([3.0, 5.25, 1.25, 5.0, 0.0, 2.25, -1.25, 3.0])
    np.testing.assert_array_equal(errors**2 - baseline_errors**2, d)
    days, h = 8, 1
    mean = 18.5 / days
    gamma_0 = sum((value - mean) ** 2 for value in d) / days
    dm = mean / math.sqrt(gamma_0 / days)  # Diebold & Mariano (1995), h = 1: no autocovariances
    hln = dm * math.sqrt((days + 1 - 2 * h + h * (h - 1) / days) / days)  # Harvey et al. (1997)
    result = diebold_mariano(errors, baseline_errors)
    assert result["dm_statistic"] == pytest.approx(hln)
    assert result["dm_p_value"] == pytest.approx(2 * stats.t.cdf(-abs(hln), df=days - 1))
    # The correction and the t distribution matter at this size: neither is left out.
    assert not math.isclose(result["dm_statistic"], dm, rel_tol=1e-3)
    assert not math.isclose(result["dm_p_value"], 2 * stats.norm.cdf(-abs(hln)), rel_tol=1e-3)
    assert not math.isclose(result["dm_p_value"], 2 * stats.t.cdf(-abs(hln), df=days), rel_tol=1e-3)
    # Swapping the forecasts flips the statistic's sign and keeps the p-value.
    swapped = diebold_mariano(baseline_errors, errors)
    assert swapped["dm_statistic"] == pytest.approx(-hln)
    assert swapped["dm_p_value"] == pytest.approx(result["dm_p_value"])


def constant_return_model(window: int, columns: int, value: float):
    """A real Keras model that forecasts the same target, ``value``, for every window."""
    import keras

    model = keras.Sequential(
        [keras.Input(shape=(window, columns)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    model.set_weights([np.zeros((window * columns, 1), dtype="float32"), np.array([value], dtype="float32")])
    return model


def test_evaluate_scores_the_test_days_against_persistence_by_hand(tmp_path: Path) -> None:
    from projects.stock.evaluate import evaluate

    prices = hand_prices()
    config = stock_config("", *HAND, "data.target=return", "evaluate.horizons=[1, 2, 5]")
    splits = stock_data.make_splits(hand_series(prices), config)
    # A model that always forecasts a 1% rise: day d is forecast as 1.01 p[d - 1].
    metrics = evaluate(constant_return_model(3, 1, 0.01), splits, config, tmp_path)

    # Forecast h days ahead recursively from day o, it forecasts 1.01 ** h * p[o], and persistence
    # p[o]; the test period's origins are the days 32 .. 39 - h (the last labelled day is 39).
    for horizon in (1, 2, 5):
        origins = np.arange(32, 40 - horizon)
        actual = prices[origins + horizon]
        errors, baseline_errors = 1.01**horizon * prices[origins] - actual, prices[origins] - actual
        scores = metrics["horizons"][str(horizon)]
        assert scores["days_scored"] == 8 - horizon
        assert scores["rmse"] == pytest.approx(math.sqrt(np.mean(errors**2)), rel=1e-5)
        assert scores["baseline_rmse"] == pytest.approx(math.sqrt(np.mean(baseline_errors**2)))
        expected = diebold_mariano(errors, baseline_errors, horizon=horizon)["dm_p_value"]
        assert scores["dm_p_value"] == pytest.approx(expected, rel=1e-3)

    def by_hand(label_days: range) -> tuple[float, float]:
        days = np.array(label_days)
        actual, previous = prices[days], prices[days - 1]
        model = math.sqrt(np.mean((1.01 * previous - actual) ** 2))
        return model, math.sqrt(np.mean((previous - actual) ** 2))

    rmse, baseline_rmse = by_hand(TEST_LABEL_DAYS)
    assert metrics["rmse"] == pytest.approx(rmse, rel=1e-5)
    assert metrics["baseline_rmse"] == pytest.approx(baseline_rmse)
    assert metrics["rmse_ratio"] == pytest.approx(rmse / baseline_rmse, rel=1e-5)
    days = np.array(TEST_LABEL_DAYS)
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(1.01 * prices[days - 1] - prices[days])), rel=1e-5)
    validation_rmse, validation_baseline_rmse = by_hand(VALIDATION_LABEL_DAYS)
    assert metrics["validation_rmse"] == pytest.approx(validation_rmse, rel=1e-5)
    assert metrics["validation_baseline_rmse"] == pytest.approx(validation_baseline_rmse)
    dates = pd.bdate_range("2020-01-01", periods=HAND_DAYS)
    assert (metrics["test_start"], metrics["test_end"]) == (f"{dates[33]:%Y-%m-%d}", f"{dates[39]:%Y-%m-%d}")
    assert metrics["window"] == 3 and metrics["target"] == "return"


@pytest.mark.parametrize("price, shown", [(0.0, "0.0"), (-0.01, "-0.01")])
def test_a_price_of_zero_or_below_is_one_clear_error(tmp_path, models_dir, cli, price, shown) -> None:
    prices = random_walk()
    prices.loc[10, "Close"] = price
    csv = write_yahoo(tmp_path / "bad.csv", prices)
    message = f"column 'Close' has the impossible value {shown} on 2017-01-16"
    with pytest.raises(UserError, match="prices must be above 0"):
        stock_data.load_series(stock_config(csv, 'data.features=["Open"]'))
    assert_one_line_error(
        cli("train", "stock", "--set", f"data.path={csv}", "--set", "data.window=10"), message
    )
    assert not (models_dir / "stock" / "latest").exists()


def test_forecasting_from_a_price_of_zero_is_one_clear_error(trained_models, cli, tmp_path: Path) -> None:
    prices = random_walk()
    prices.loc[len(prices) - 1, "Close"] = 0.0
    csv = write_yahoo(tmp_path / "zero.csv", prices)
    assert_one_line_error(cli("predict", "stock", csv), "impossible value 0.0 on 2018-02-23")


def test_tiny_prices_and_zero_volumes_are_accepted_but_negative_volumes_are_not(tmp_path: Path) -> None:
    prices = random_walk()
    prices.loc[10, "Close"] = 1e-6
    prices.loc[11, "Volume"] = 0
    config = stock_config(write_yahoo(tmp_path / "tiny.csv", prices), 'data.features=["Volume"]')
    series = stock_data.load_series(config)
    assert series.prices[10] == 1e-6 and series.frame["Volume"].iloc[11] == 0
    prices.loc[11, "Volume"] = -1
    config = stock_config(write_yahoo(tmp_path / "negative.csv", prices), 'data.features=["Volume"]')
    with pytest.raises(UserError, match="column 'Volume' has the impossible value -1.0"):
        stock_data.load_series(config)


def test_the_trained_runs_persistence_figures_match_a_hand_computation(trained_run) -> None:
    close = random_walk()["Close"].to_numpy()
    metrics = json.loads((trained_run[2] / "metrics.json").read_text())
    # 300 days, window 10: 289 windows, of which the last round(57.8) = 58 are the test period
    # (label days 242-299) and the round(28.9) = 29 before them validation (days 213-241).
    assert (metrics["n_train"], metrics["n_validation"], metrics["n_test"]) == (202, 29, 58)
    test_days, validation_days = np.arange(242, 300), np.arange(213, 242)
    persistence = close[test_days - 1] - close[test_days]
    assert metrics["baseline_rmse"] == pytest.approx(np.sqrt(np.mean(persistence**2)))
    assert metrics["baseline_mae"] == pytest.approx(np.mean(np.abs(persistence)))
    assert metrics["baseline_mape"] == pytest.approx(100 * np.mean(np.abs(persistence) / close[test_days]))
    assert metrics["baseline_directional_accuracy"] == pytest.approx(np.mean(persistence < 0))
    validation = close[validation_days - 1] - close[validation_days]
    assert metrics["validation_baseline_rmse"] == pytest.approx(np.sqrt(np.mean(validation**2)))
    dates = random_walk()["Date"]
    assert (metrics["test_start"], metrics["test_end"]) == (
        f"{dates[242]:%Y-%m-%d}",
        f"{dates[299]:%Y-%m-%d}",
    )


def test_evaluating_with_another_window_than_the_model_was_trained_on_is_one_line(trained_run, cli, tmp_path):
    """A 10-day model scored with data.window=30 would fail deep inside Keras; predict and
    evaluate both say why in one line."""
    csv, _, run_dir = trained_run
    for command in (["evaluate", "stock", "--out", tmp_path / "scores"], ["predict", "stock"]):
        result = cli(*command, "--model", run_dir, "--set", f"data.path={csv}", "--set", "data.window=30")
        assert_one_line_error(result, "windows of 10 days", "data.window = 30")
    assert not (tmp_path / "scores").exists() or not any((tmp_path / "scores").iterdir())


def test_rows_minutes_apart_are_read_with_a_warning_that_each_row_is_a_day(tmp_path, caplog):
    prices = 100 + np.arange(30, dtype=float)
    times = pd.date_range("2024-03-01 09:30", periods=30, freq="min")
    csv = tmp_path / "minutes.csv"
    pd.DataFrame({"Date": times.strftime("%Y-%m-%d %H:%M:%S"), "Close": prices}).to_csv(csv, index=False)
    with caplog.at_level(logging.WARNING):
        table = stock_data.read_price_csv(csv)
    assert len(table) == 30 and list(table["Close"]) == list(prices)
    [warning] = [record.getMessage() for record in caplog.records if "intraday" in record.getMessage()]
    assert "0 days 00:01:00 apart" in warning and "each row as one trading day" in warning
    caplog.clear()
    daily = tmp_path / "daily.csv"
    days = pd.bdate_range("2024-03-01", periods=30)
    pd.DataFrame({"Date": days.strftime("%Y-%m-%d"), "Close": prices}).to_csv(daily, index=False)
    with caplog.at_level(logging.WARNING):
        stock_data.read_price_csv(daily)
    assert not [record for record in caplog.records if "intraday" in record.getMessage()]


def test_an_empty_date_is_one_error_naming_the_first_empty_line(tmp_path: Path) -> None:
    csv = tmp_path / "gaps.csv"
    csv.write_text("Date,Close\n2024-01-02,1\n,2\n2024-01-04,3\n,4\n")
    with pytest.raises(UserError) as raised:
        stock_data.read_price_csv(csv)
    assert str(raised.value) == f"{csv}: empty date on line 3; every row needs a date"


@pytest.mark.parametrize(
    "target, expected",
    [
        # Volumes 9, 99, 999 are log(1 + v) = log 10, 2 log 10, 3 log 10: levels from day 2 for
        # the price target, day-to-day changes otherwise.
        ("price", [[11.0, 2 * math.log(10)], [12.1, 3 * math.log(10)]]),
        ("log_return", [[math.log(1.1), math.log(10)], [math.log(1.1), math.log(10)]]),
        ("return", [[0.1, math.log(10)], [0.1, math.log(10)]]),
    ],
)
def test_features_put_prices_and_volumes_on_the_targets_scale(target, expected) -> None:
    frame = pd.DataFrame({"Close": [10.0, 11.0, 12.1], "Volume": [9.0, 99.0, 999.0]})
    features = stock_data.to_features(frame, target)
    assert features.shape == (2, 2)
    np.testing.assert_allclose(features, expected, rtol=1e-12)


def test_prices_come_back_from_each_target_and_an_unknown_target_is_refused() -> None:
    previous = np.array([10.0, 20.0])
    np.testing.assert_array_equal(stock_data.target_to_price([11.0, 19.0], previous, "price"), [11.0, 19.0])
    np.testing.assert_allclose(stock_data.target_to_price([0.1, -0.5], previous, "return"), [11.0, 10.0])
    np.testing.assert_allclose(
        stock_data.target_to_price([math.log(1.1), 0.0], previous, "log_return"), [11.0, 20.0]
    )
    # Names that sort before and after "price" alike.
    for target in ("level", "volume"):
        with pytest.raises(ValueError) as raised:
            stock_data.target_to_price([1.0, 2.0], previous, target)
        assert str(raised.value) == (f"target must be one of log_return, return, price; received: '{target}'")


@pytest.mark.parametrize(
    "fractions, sizes, needed",
    [
        # 20 days, window 3: 16 windows. Training binds: 20 / (1 - 0.25 - 0.25) = 40 windows.
        (("0.25", "0.25"), "8 training, 4 validation and 4 test", 40),
        # Validation binds: (5 + 0.5) / 0.125 = 44 windows (training needs 20 / 0.625 = 32).
        (("0.125", "0.25"), "10 training, 2 validation and 4 test", 44),
    ],
)
def test_a_short_series_is_told_how_many_days_it_needs(fractions, sizes, needed) -> None:
    config = stock_config(
        "", "data.window=3", f"data.validation_fraction={fractions[0]}", f"data.test_fraction={fractions[1]}"
    )
    with pytest.raises(UserError) as raised:
        stock_data.make_splits(hand_series(100.0 + np.arange(20)), config)
    assert str(raised.value) == (
        f"hand-made series: too few rows for data.window = 3: 20 days give {sizes} windows; at least "
        f"20, 5 and 5 are needed. Use a series of at least {needed + 3 + 1} days or a smaller data.window"
    )


def test_the_split_is_logged_with_the_last_label_day_of_each_period(caplog) -> None:
    dates = pd.bdate_range("2020-01-01", periods=HAND_DAYS)
    with caplog.at_level(logging.INFO, logger="projects.stock.data"):
        stock_data.make_splits(hand_series(hand_prices()), stock_config("", *HAND, "data.target=price"))
    [message] = [record.getMessage() for record in caplog.records if "windows of" in record.getMessage()]
    assert message == (
        f"36 windows of 3 days: train to {dates[25]:%Y-%m-%d}, validation to {dates[32]:%Y-%m-%d}, "
        f"test to {dates[39]:%Y-%m-%d}"
    )


def test_the_report_prints_every_score_beside_persistence() -> None:
    metrics = {
        "test_start": "2020-02-19", "test_end": "2020-02-27", "rmse": 1.5, "baseline_rmse": 2.0,
        "rmse_ratio": 0.75, "mae": 1.25, "baseline_mae": 1.5, "mape": 0.5, "baseline_mape": 0.75,
        "directional_accuracy": 0.6, "baseline_directional_accuracy": 0.5, "dm_p_value": 0.2,
    }  # fmt: skip
    assert format_report(metrics).split("\n") == [
        "one-step-ahead forecasts, test period 2020-02-19 to 2020-02-27",
        "                       model   persistence",
        "RMSE                  1.5000        2.0000",
        "MAE                   1.2500        1.5000",
        "MAPE %                 0.500         0.750",
        "direction right        60.0%         50.0%",
        '(persistence makes no up/down call; its direction column is the constant call "up")',
        "rmse / baseline_rmse = 0.7500: indistinguishable from persistence (Diebold-Mariano p = 0.2)",
    ]


def test_dm_refuses_errors_of_either_length_mismatch_and_a_constant_gap_has_no_statistic() -> None:
    for errors, baseline_errors in (([1.0, 2.0, 3.0], [1.0, 2.0]), ([1.0, 2.0], [1.0, 2.0, 3.0])):
        with pytest.raises(ValueError) as raised:
            diebold_mariano(errors, baseline_errors)
        assert str(raised.value) == (
            "errors and baseline_errors must have the same length; received: "
            f"{len(errors)} and {len(baseline_errors)}"
        )
    # The model's squared error is 3 smaller every day: certain, with no finite statistic.
    assert diebold_mariano(np.ones(4), np.full(4, 2.0)) == {"dm_statistic": None, "dm_p_value": 0.0}


# --- Network kinds, forecast intervals, multi-day scores ------------------------------------------


def test_the_settings_list_the_cells_the_model_builds() -> None:
    from projects.stock import model, settings

    assert settings.CELLS == model.CELLS


def test_a_misspelt_cell_is_one_line_with_the_closest_name(cli) -> None:
    assert_one_line_error(cli("train", "stock", "--set", "model.cell=grn"), "did you mean 'gru'?")


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple_rnn", "conv1d"])
def test_each_cell_trains_an_epoch_and_reloads(cell: str, tmp_path: Path) -> None:
    import keras

    from projects.stock.model import build_model

    config = stock_config("", *HAND, f"model.cell={cell}", "model.units=[4, 3]", "model.kernel_size=2")
    splits = stock_data.make_splits(hand_series(hand_prices()), config)
    model = build_model(config, splits)
    assert [layer.name for layer in model.layers if cell in layer.name] == [f"{cell}_1", f"{cell}_2"]
    model.compile(optimizer="adam", loss="mse")
    model.fit(*splits.train, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    x_test = splits.test[0]
    np.testing.assert_allclose(
        reloaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0), rtol=1e-6
    )
    assert reloaded.count_params() == model.count_params() > 0


def test_conformal_quantile_and_interval_scores_match_a_hand_count() -> None:
    from projects.stock.intervals import conformal_quantile, interval_scores

    scores = np.arange(1, 11) / 10  # 0.1 .. 1.0
    # The ceil((n + 1) * coverage)-th smallest: ceil(9.9) = 10th for 90%, ceil(8.8) = 9th for 80%.
    assert conformal_quantile(scores, 0.9) == 1.0 and conformal_quantile(scores, 0.8) == 0.9
    assert conformal_quantile(scores[:5], 0.9) == 0.5  # Too few scores: the largest.
    actual = np.array([10.0, 12.0, 8.0, 11.0])  # inside, 1 above, 1 below, on the upper end
    scored = interval_scores(actual, np.full(4, 9.0), np.full(4, 11.0), coverage=0.5)
    # Winkler: width 2, plus 2 / (1 - 0.5) = 4 times each miss's distance: (2 + 6 + 6 + 2) / 4.
    assert scored == {"coverage": 0.5, "mean_width": 2.0, "winkler": 4.0}


def test_adaptive_intervals_widen_after_a_miss_and_use_only_earlier_days() -> None:
    from projects.stock.intervals import adaptive_half_widths, conformal_quantile

    calibration = np.arange(1, 11) / 10
    # 80% asks for the 9th score (0.9). A miss raises the level by 0.1 * 0.8 to 0.88 (the 10th
    # score, 1.0); each hit lowers it by 0.1 * 0.2, back to 0.80 after four.
    widths, level = adaptive_half_widths(calibration, [0.95, 0.5, 0.5, 0.5, 0.5], 0.8, 0.1)
    np.testing.assert_allclose(widths, [0.9, 1.0, 1.0, 1.0, 1.0])
    assert level == pytest.approx(0.8) and conformal_quantile(calibration, level) == 0.9
    # Without adaptation it is plain split conformal: the same width every day.
    widths, level = adaptive_half_widths(calibration, [0.95, 0.5, 2.0], 0.8, 0.0)
    np.testing.assert_allclose(widths, [0.9, 0.9, 0.9])
    # A day's width depends only on the days before it.
    later_changed, _ = adaptive_half_widths(calibration, [0.95, 0.5, 0.5, 0.0, 9.0], 0.8, 0.1)
    np.testing.assert_allclose(later_changed[:4], [0.9, 1.0, 1.0, 1.0])


def test_interval_calibration_comes_from_the_validation_period_alone(tmp_path: Path) -> None:
    from projects.stock.evaluate import evaluate
    from projects.stock.intervals import INTERVALS_FILE

    config = stock_config("", *HAND, "evaluate.horizons=[1, 2]", "evaluate.adapt_rate=0")
    calibrations = []
    for test_prices in (900.0 - np.arange(33, 40), 300.0 + 40 * np.arange(7)):
        prices = hand_prices()
        prices[33:] = test_prices
        out = tmp_path / f"{test_prices[0]:.0f}"
        out.mkdir()
        splits = stock_data.make_splits(hand_series(prices), config)
        evaluate(constant_return_model(3, 1, 0.01), splits, config, out)
        calibrations.append(json.loads((out / INTERVALS_FILE).read_text()))
    assert calibrations[0] == calibrations[1]
    # Validation's one-step errors of a 1% rise, as a share of the day before's price: 7 scores,
    # too few for a 90% rank, so the largest.
    days = np.array(VALIDATION_LABEL_DAYS)
    prices = hand_prices()
    expected = np.max(np.abs(1.01 * prices[days - 1] - prices[days]) / prices[days - 1])
    assert calibrations[0]["relative_half_widths"][0] == pytest.approx(expected, rel=1e-5)


def test_dm_at_a_horizon_adds_the_autocovariances_of_overlapping_forecasts() -> None:
    errors = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 2.5, 0.0, -1.5])
    baseline_errors = np.array([0.5, -1.0, 1.5, 1.0, -2.0, 1.0, 0.5, -1.0])
    d = errors**2 - baseline_errors**2
    days, centred = len(d), d - d.mean()
    gamma = [np.sum(centred[k:] * centred[: days - k]) / days for k in range(3)]
    statistic = d.mean() / math.sqrt((gamma[0] + 2 * (gamma[1] + gamma[2])) / days)
    statistic *= math.sqrt((days + 1 - 2 * 3 + 3 * 2 / days) / days)
    result = diebold_mariano(errors, baseline_errors, horizon=3)
    assert result["dm_statistic"] == pytest.approx(statistic)
    assert result["dm_p_value"] == pytest.approx(2 * stats.t.sf(abs(statistic), df=days - 1))


def test_a_horizon_beyond_the_test_period_is_one_line(tmp_path, models_dir, cli) -> None:
    csv = write_yahoo(tmp_path / "prices.csv", random_walk(days=120))
    result = cli(
        "train",
        "stock",
        "--set",
        f"data.path={csv}",
        "--set",
        "evaluate.horizons=[1, 60]",
        *sum((["--set", o] for o in TINY), []),
    )
    assert_one_line_error(
        result, "config key 'evaluate.horizons' asks for 60 trading days ahead, beyond the test period's"
    )


def test_a_window_longer_than_the_series_is_one_line(tmp_path, models_dir, cli) -> None:
    csv = write_yahoo(tmp_path / "prices.csv", random_walk(days=120))
    result = cli("train", "stock", "--set", f"data.path={csv}", "--set", "data.window=200")
    assert_one_line_error(result, "too few rows for data.window = 200")


@pytest.mark.parametrize(
    "saved",
    [
        {"relative_half_widths": [0.01, 0.02], "method": "adaptive"},  # no coverage
        {"relative_half_widths": [0.01, 0.02], "coverage": 0.9},  # no method
        {"relative_half_widths": [0.01], "coverage": 1.5, "method": "adaptive"},
        {"relative_half_widths": [], "coverage": 0.9, "method": "adaptive"},
        ["not", "a", "table"],
    ],
)
def test_a_damaged_interval_calibration_is_one_line(tmp_path: Path, saved) -> None:
    from projects.stock.intervals import read_intervals

    (tmp_path / "intervals.json").write_text(json.dumps(saved))
    with pytest.raises(UserError, match="intervals.json: .*train the model again"):
        read_intervals(tmp_path)


def test_the_report_prints_the_intervals_and_each_horizon_in_order() -> None:
    metrics = {
        "test_start": "2020-02-19", "test_end": "2020-02-27", "rmse": 1.5, "baseline_rmse": 2.0,
        "rmse_ratio": 0.75, "mae": 1.25, "baseline_mae": 1.5, "mape": 0.5, "baseline_mape": 0.75,
        "directional_accuracy": 0.6, "baseline_directional_accuracy": 0.5, "dm_p_value": 0.2,
        "interval_coverage_asked": 0.9, "interval_method": "split conformal",
        "interval_coverage": 0.875, "interval_mean_width": 3.0, "interval_winkler": 4.5,
        "naive_interval_coverage": 0.95, "naive_interval_mean_width": 5.0, "naive_interval_winkler": 5.5,
        "horizons": {
            "10": {"days_scored": 90, "rmse": 6.0, "baseline_rmse": 5.0, "rmse_ratio": 1.2,
                   "dm_p_value": 0.01, "interval_coverage": 0.9},
            "1": {"days_scored": 99, "rmse": 1.5, "baseline_rmse": 2.0, "rmse_ratio": 0.75,
                  "dm_p_value": 0.2, "interval_coverage": 0.85},
        },
    }  # fmt: skip
    assert format_report(metrics).split("\n")[8:] == [
        "90% intervals (split conformal):",
        "                     covered    mean width     Winkler",
        "model                  87.5%        3.0000      4.5000",
        "naive                  95.0%        5.0000      5.5000",
        "(naive: persistence +- the training period's daily move at that quantile)",
        "recursive multi-day forecasts (as predict gives them) beside persistence at each horizon:",
        "days ahead  scored        RMSE  persistence    ratio  covered  verdict",
        "         1      99      1.5000       2.0000   0.7500    85.0%  indistinguishable from persistence "
        "(Diebold-Mariano p = 0.2)",
        "        10      90      6.0000       5.0000   1.2000    90.0%  worse than persistence "
        "(Diebold-Mariano p = 0.01)",
        "(covered: the split-conformal interval of that horizon, not adapted on the test period)",
    ]


def test_predicts_intervals_widen_like_the_square_root_of_the_horizon_past_the_calibrated_ones() -> None:
    from projects.stock.intervals import horizon_half_widths

    np.testing.assert_allclose(
        horizon_half_widths([0.01, 0.02], 4), [0.01, 0.02, 0.02 * math.sqrt(3 / 2), 0.02 * math.sqrt(2)]
    )
    np.testing.assert_allclose(horizon_half_widths([0.01, 0.02, 0.03], 2), [0.01, 0.02])


def test_the_recursive_forecast_compounds_each_day_on_the_one_before() -> None:
    from projects.stock.predict import forecast_prices

    prices = hand_prices()
    volume = np.arange(HAND_DAYS) * 1000.0
    frame = hand_series(prices, Open=prices * 0.99, Volume=volume).frame
    dates, forecast = forecast_prices(constant_return_model(3, 3, 0.01), frame, "return", 3, 4)
    np.testing.assert_allclose(forecast, prices[-1] * 1.01 ** np.arange(1, 5), rtol=1e-6)
    assert list(dates) == list(pd.bdate_range(frame.index[-1], periods=5)[1:])
