"""Projects of the kinds keras-io examples write (tests/keras_projects/), brought to the template
without a line of common/ changed: each trains, evaluates, predicts, promotes and exports (or is
refused in one line by the export format that cannot take it), through the project's hooks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common import runs
from tests.conftest import assert_one_line_error

BROUGHT = Path(__file__).resolve().parent / "keras_projects"


@pytest.fixture(autouse=True)
def brought(monkeypatch):
    """The projects of tests/keras_projects/ found beside the repository's own."""
    import projects

    monkeypatch.setattr(projects, "__path__", [*projects.__path__, str(BROUGHT)])
    yield
    for name in [key for key in sys.modules if key.split(".")[:2][-1] in _names()]:
        if name.startswith("projects."):
            del sys.modules[name]


def _names() -> list[str]:
    return [folder.name for folder in BROUGHT.iterdir() if (folder / "__init__.py").is_file()]


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_a_loss_function_metric_objects_class_weights_and_a_callback(cli, tmp_path):
    result = cli("train", "tumour", "--promote")
    assert result.code == 0, result.stderr
    run_dir = runs.latest_run("tumour")
    history = pd.read_csv(run_dir / "history.csv")
    # The metric objects' names, not the config's "accuracy" list.
    assert {"auc", "precision", "val_auc", "val_precision"} <= set(history.columns)
    # The project's callback wrote into the run folder, one line an epoch.
    logged = pd.read_csv(run_dir / "learning_rate.csv", header=None, names=["epoch", "rate"])
    assert list(logged.epoch) == list(history.epoch)
    assert logged.rate.iloc[0] == pytest.approx(0.01)
    metrics = metrics_of(run_dir)
    assert metrics["test_accuracy"] > metrics["baseline_accuracy"] + 0.2

    table = tmp_path / "two.csv"
    from sklearn.datasets import load_breast_cancer

    cancer = load_breast_cancer()
    pd.DataFrame(cancer.data[[0, 19]], columns=cancer.feature_names).to_csv(table, index=False)
    answer = cli("predict", "tumour", str(table), "--json")
    assert answer.code == 0, answer.stderr
    rows = [json.loads(line) for line in answer.stdout.splitlines()]
    assert [row["malignant"] for row in rows] == [True, False]  # cancer.target: 0 malignant, 1 benign
    assert cli("evaluate", "tumour").code == 0

    exported = cli("export", "tumour", "--format", "onnx", "--out", str(tmp_path / "onnx"))
    assert exported.code == 0, exported.stderr
    assert (tmp_path / "onnx" / "model.onnx").is_file()
