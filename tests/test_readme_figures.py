"""The README's results table, checked as a reader would: each row's "measured by" command, run
as written (``python`` being the project's, models written to a temporary folder), gives the
row's figure. Slow (minutes per row): ``make test-slow``.

Each check names the row by its first words and quotes the figure and the command exactly as the
README has them, so a README edit that changes either fails here until the check is updated. A
row whose data is not on this machine is skipped. The README's commands name the data where a user
puts it, ``data/...`` (data/README.md says how to get each dataset); here those paths are read
from the project's development copies, ``SHARED_DATA`` (``../shared/data`` by default).

Tolerances: a score on a fixed test set of a fixed model is reproduced to a hundredth of a point
(one borderline example may fall the other way on another CPU); a training is repeatable to the
bit on one machine only, so its figure gets the spread seen between machines.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED_DATA

pytestmark = pytest.mark.slow

README = ROOT / "README.md"


def table_row(first_words: str) -> str:
    """The README results-table row whose first cell starts with ``first_words``."""
    rows = [line for line in README.read_text().splitlines() if line.startswith(f"| {first_words}")]
    assert len(rows) == 1, f"no single README row starts with {first_words!r}"
    return rows[0]


def run_as_written(command: str, models: Path, timeout: float) -> str:
    """Runs a README command in the repository root, as a reader with the project's
    environment active would; returns its standard output."""
    # The README names data where a user puts it (data/...); this repository's own copies are in
    # SHARED_DATA (tests/conftest.py), read in their place.
    command = command.replace("data.path=data/", f"data.path={SHARED_DATA}/")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MODELS_DIR": str(models),
    }
    completed = subprocess.run(
        command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert completed.returncode == 0, f"{command}\n{completed.stderr[-3000:]}"
    return completed.stdout


def latest_metrics(models: Path, project: str) -> dict:
    """The newest completed run's (run folders are named by their start time)."""
    done = sorted(path for path in (models / project).iterdir() if (path / "metrics.json").is_file())
    return json.loads((done[-1] / "metrics.json").read_text())


def written_metrics(stdout: str) -> dict:
    """The metrics.json of an ``evaluate`` (its last line says where it wrote them)."""
    folder = re.search(r"metrics and plots written to (\S+)", stdout).group(1)
    return json.loads((Path(folder) / "metrics.json").read_text())


@dataclass
class Row:
    first_words: str
    figure: str  # as the README writes it
    commands: list[str]  # as the README writes them, run in order
    value: object  # the figure from the last command's output and the models folder
    expected: float
    tolerance: float
    needs: list[str] = field(default_factory=list)  # data under ../shared/data
    timeout: float = 1800


def accuracy_of_evaluation(stdout: str, models: Path) -> float:
    return 100 * written_metrics(stdout)["test_accuracy"]


ROWS = [
    Row(
        "**MNIST** digit CNN, shipped model",
        "**99.50%** accuracy",
        ["python -m common evaluate mnist --model pretrained --set data.path=data/mnist/mnist.npz"],
        accuracy_of_evaluation,
        99.50,
        0.01,
        needs=["mnist/mnist.npz"],
    ),
    Row(
        "MNIST, `make train-mnist` offline",
        "**98.32%** accuracy",
        [
            "make train-mnist",
            "python -m common evaluate mnist --model latest --set data.path=data/mnist",
        ],
        accuracy_of_evaluation,
        98.32,
        0.4,
        needs=["mnist/t10k-images-idx3-ubyte.gz"],
    ),
    Row(
        "MNIST, shipped model on drawings",
        "**99.45%** accuracy",
        [".venv/bin/python -m bench.mnist_drawn"],
        lambda stdout, models: float(re.search(r"drawn-digit accuracy: ([\d.]+)%", stdout).group(1)),
        99.45,
        0.05,
        needs=["mnist/mnist.npz"],
    ),
    Row(
        "**Stock** LSTM, next-day close",
        "RMSE 0.9994× persistence's",
        ["make train-stock"],
        lambda stdout, models: latest_metrics(models, "stock")["rmse_ratio"],
        0.9994,
        0.003,
    ),
    Row(
        "Stock, unseen series",
        "RMSE 1.0031× / 0.9997× persistence's",
        ["python -m common train stock --set data.path=data/stock/AAPL.csv"],
        lambda stdout, models: latest_metrics(models, "stock")["rmse_ratio"],
        1.0031,
        0.005,
        needs=["stock/AAPL.csv"],
    ),
    Row(
        "**Emojify** FER2013 emotion CNN, shipped model",
        "**68.16%** accuracy",
        ["python -m common evaluate emojify --model pretrained --set data.path=data/fer2013"],
        accuracy_of_evaluation,
        68.16,
        0.04,
        needs=["fer2013/train"],
    ),
    Row(
        "Emojify, `make train-emojify` without FER2013",
        "58.93% accuracy",
        ["make train-emojify"],
        lambda stdout, models: 100 * latest_metrics(models, "emojify")["test_accuracy"],
        58.93,
        6,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.first_words.strip("*`") for row in ROWS])
def test_a_readme_figure_is_what_its_command_gives(row: Row, tmp_path: Path) -> None:
    text = table_row(row.first_words)
    assert row.figure in text, f"the README row no longer says {row.figure!r}: update this check"
    for command in row.commands:
        assert f"`{command}" in text, f"the README row no longer gives `{command}`: update this check"
    missing = [name for name in row.needs if not (SHARED_DATA / name).exists()]
    if missing:
        pytest.skip(f"no {', '.join(missing)} under {SHARED_DATA}")
    stdout = ""
    for command in row.commands:
        stdout = run_as_written(command, tmp_path / "models", row.timeout)
    assert row.value(stdout, tmp_path / "models") == pytest.approx(row.expected, abs=row.tolerance)


def test_the_shipped_mnist_model_was_trained_as_its_row_says() -> None:
    """The row's training command has the shipped model's saved settings."""
    import tomllib

    text = table_row("**MNIST** digit CNN, shipped model")
    command = re.search(r"`(python -m common train mnist [^`]+)`", text).group(1)
    settings = dict(pair.split("=", 1) for pair in re.findall(r"--set (\S+)", command))
    shipped = tomllib.loads((ROOT / "models" / "pretrained" / "mnist" / "config.toml").read_text())
    assert settings.pop("data.path").endswith("mnist.npz")
    for key, value in settings.items():
        section, name = key.split(".")
        assert str(shipped[section][name]) == value, key
