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

from common.core import runs
from tests.conftest import assert_one_line_error

BROUGHT = Path(__file__).resolve().parent / "keras_projects"


@pytest.fixture(autouse=True)
def brought(monkeypatch):
    """The projects of tests/keras_projects/ found ahead of the repository's own, so a user's
    project of the same name (``new reviews``) is neither run here nor broken by these tests."""
    import projects

    names = [folder.name for folder in BROUGHT.iterdir() if (folder / "__init__.py").is_file()]
    monkeypatch.setattr(projects, "__path__", [str(BROUGHT), *projects.__path__])
    _unimport(names)
    yield
    _unimport(names)


def _unimport(names: list[str]) -> None:
    for module in [
        key for key in sys.modules if key.split(".")[:2] in (["projects", name] for name in names)
    ]:
        del sys.modules[module]


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
    # A project that describes nothing: export.json still gives the shapes, and no classes (its
    # data names none, and its one output is no score per class).
    report = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert report["input"]["shape"] == [None, 30] and report["input"]["dtype"] == "float32"
    assert report["output"]["shape"] == [None, 1] and report["classes"] == []
    assert "predict.py" in report["input"]["meaning"]


def forget(project: str, *registered: str) -> None:
    """As a fresh process would start: the project's modules unimported and its classes and
    functions unknown to Keras, so a load must find them again through the project."""
    import keras

    _unimport([project])
    for name in registered:
        keras.saving.get_custom_objects().pop(name, None)


def test_a_resumed_run_finds_the_projects_own_loss_again(cli):
    from tests.conftest import ctrl_c_after_epoch

    with ctrl_c_after_epoch(1):
        assert cli("train", "tumour", "--set", "train.early_stopping_patience=0").code != 0
    [run_dir] = [
        path for path in (runs.models_dir() / "tumour").iterdir() if (path / "config.toml").is_file()
    ]
    forget("tumour", "focal_loss")
    result = cli("train", "tumour", "--resume", str(run_dir))
    assert result.code == 0, result.stderr
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history.epoch) == list(range(8))
    # The callback was called afresh and went on appending: each epoch logged once.
    logged = pd.read_csv(run_dir / "learning_rate.csv", header=None, names=["epoch", "rate"])
    assert list(logged.epoch) == list(range(8))


def test_a_registered_subclassed_model_is_found_wherever_it_is_loaded(cli, tmp_path):
    assert cli("train", "denoiser", "--promote").code == 0
    run_dir = runs.latest_run("denoiser")
    metrics = metrics_of(run_dir)
    assert metrics["error_ratio"] < 0.85  # it removes noise
    assert len(pd.read_csv(run_dir / "epochs.csv")) == 30  # Keras' CSVLogger, from the callbacks hook

    from PIL import Image

    picture = np.full((32, 32), 255, np.uint8)
    picture[4:28, 14:18] = 0
    Image.fromarray(picture).save(tmp_path / "one.png")
    for command in (
        ("evaluate", "denoiser"),
        ("predict", "denoiser", str(tmp_path / "one.png"), "--json"),
        ("export", "denoiser", "--format", "onnx", "--out", str(tmp_path / "onnx")),
    ):
        forget("denoiser", "denoiser>Autoencoder", "denoiser>Bottleneck")
        result = cli(*command)
        assert result.code == 0, (command, result.stderr)
    answer = cli("predict", "denoiser", str(tmp_path / "one.png"), "--json")
    assert len(json.loads(answer.stdout)["pixels"]) == 64
    assert (tmp_path / "onnx" / "model.onnx").is_file()


def test_a_text_model_trains_predicts_and_exports_where_a_format_takes_text(cli, tmp_path):
    assert cli("train", "reviews", "--promote").code == 0
    metrics = metrics_of(runs.latest_run("reviews"))
    assert metrics["test_accuracy"] >= 0.9 and metrics["baseline_accuracy"] == 0.5
    answer = cli("predict", "reviews", "the plot was brilliant and superb", "--json")
    assert answer.code == 0, answer.stderr
    assert json.loads(answer.stdout)["label"] == "positive"
    assert cli("evaluate", "reviews").code == 0
    assert_one_line_error(
        cli("export", "reviews", "--format", "onnx", "--out", str(tmp_path / "onnx")),
        "onnx export takes a model of one numeric input",
        "reads text",
        "--format tf_saved_model",
    )
    assert not (tmp_path / "onnx").exists()
    saved = cli("export", "reviews", "--format", "tf_saved_model", "--out", str(tmp_path / "saved"))
    assert saved.code == 0, saved.stderr
    assert json.loads((tmp_path / "saved" / "export.json").read_text())["labels_differ"] == 0


def test_two_inputs_and_two_outputs_with_per_output_losses_from_config_tables(cli, tmp_path):
    assert_one_line_error(
        cli("train", "twoway", "--set", "train.loss.kind=sparse_crossentropy"),
        "train.loss.kind",
        "Keras knows no loss 'sparse_crossentropy'",
    )
    assert not (runs.models_dir() / "twoway").exists()  # refused before any folder was made
    assert cli("train", "twoway", "--promote").code == 0
    run_dir = runs.latest_run("twoway")
    history = pd.read_csv(run_dir / "history.csv")
    assert {"price_loss", "kind_loss", "price_mae", "kind_accuracy", "val_kind_accuracy"} <= set(
        history.columns
    )
    # loss = price_loss + 0.5 * kind_loss, the config's loss weights (1.0 * kind_loss would be
    # 0.5 * kind_loss away; Keras averages the parts over batches, so they add up only nearly)
    last = history.iloc[-1]
    weighted = last["val_price_loss"] + 0.5 * last["val_kind_loss"]
    assert abs(last["val_loss"] - weighted) < 0.1 * last["val_kind_loss"]
    metrics = metrics_of(run_dir)
    assert metrics["n_train"] == 540 and metrics["n_test"] == 180
    assert metrics["test_accuracy"] > metrics["baseline_accuracy"]
    assert metrics["test_price_mae"] < metrics["baseline_price_mae"]
    assert json.loads((run_dir / "best.json").read_text())["val_loss"] == pytest.approx(
        history.val_loss.min()
    )

    house = tmp_path / "house.json"
    house.write_text(json.dumps({"size": 200, "rooms": 6, "region": 1}))
    answer = cli("predict", "twoway", str(house), "--json")
    assert answer.code == 0, answer.stderr
    assert json.loads(answer.stdout)["kind"] == "villa"
    assert cli("evaluate", "twoway").code == 0
    assert_one_line_error(
        cli("export", "twoway", "--format", "onnx", "--out", str(tmp_path / "onnx")),
        "takes 2 inputs and gives 2 outputs",
        "--format tf_saved_model",
    )
    saved = cli("export", "twoway", "--format", "tf_saved_model", "--out", str(tmp_path / "saved"))
    assert saved.code == 0, saved.stderr
    assert json.loads((tmp_path / "saved" / "export.json").read_text())["largest_difference"] < 1e-4


def test_a_second_phase_unfreezes_the_base_and_starts_from_the_first_phases_weights(cli, tmp_path):
    import keras

    assert cli("train", "transfer").code == 0
    first = runs.latest_run("transfer")
    phases = pd.read_csv(first / "phases.csv", header=None, names=["epoch", "fine_tune", "trainable"])
    assert list(phases.trainable) == [2] * 4  # the head's kernel and bias alone
    phase2 = BROUGHT / "transfer" / "phase2.toml"
    result = cli(
        "train", "transfer", "--continue-from", str(first), "--config", str(phase2),
        "--set", "train.learning_rate=1e-12", "--promote",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    second = runs.latest_run("transfer")
    assert second != first
    phases = pd.read_csv(second / "phases.csv", header=None, names=["epoch", "fine_tune", "trainable"])
    assert list(phases.trainable) == [6] * 2  # and the base's two convolutions
    assert metrics_of(second)["continued_from"] == str(first)
    before = keras.saving.load_model(first / "model.keras", compile=False).get_weights()
    after = keras.saving.load_model(second / "model.keras", compile=False).get_weights()
    # A rate of 1e-12 leaves the weights where phase 1 left them: they were loaded, not made anew.
    assert all(np.allclose(mine, theirs, atol=1e-6) for mine, theirs in zip(before, after))
    assert metrics_of(second)["test_accuracy"] == pytest.approx(metrics_of(first)["test_accuracy"])
    exported = cli("export", "transfer", "--format", "onnx", "--out", str(tmp_path / "onnx"))
    assert exported.code == 0, exported.stderr
    # Without a describe_io hook, the data's class names are the classes: one score per digit.
    report = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert report["classes"] == [str(digit) for digit in range(10)]
    assert report["output"]["shape"] == [None, 10]
    assert report["output"]["meaning"].startswith("one score per class, in the order of classes")


def test_continuing_with_weights_of_other_shapes_is_one_line(cli):
    assert cli("train", "tumour", "--set", "train.epochs=1").code == 0
    run_dir = runs.latest_run("tumour")
    assert_one_line_error(
        cli("train", "tumour", "--continue-from", str(run_dir), "--set", "model.units=8"),
        "does not fit the weights of",
        "(30, 8) against (30, 16)",
    )


def test_serve_answers_a_text_model_and_a_two_input_model_batched(cli):
    """Both answered through the batching stand-in: texts are batched with other requests'
    texts, a two-input request is answered alone."""
    from fastapi.testclient import TestClient

    from common.serving import app

    for name in ("reviews", "twoway"):
        assert cli("train", name, "--set", "train.epochs=3", "--promote").code == 0
    served, unavailable = app.load_projects(["reviews", "twoway"])
    assert unavailable == {} and all(item.batching is not None for item in served.values())
    with TestClient(app.create_app(served, unavailable)) as client:
        for review, label in (
            (b"the acting was superb and moving", "positive"),
            (b"dull and awful", "negative"),
        ):
            answer = client.post("/api/reviews/predict", files={"file": ("review.txt", review, "text/plain")})
            assert answer.status_code == 200, answer.text
            assert answer.json()["label"] == label
        house = json.dumps({"size": 45, "rooms": 1, "region": 0}).encode()
        answer = client.post("/api/twoway/predict", files={"file": ("flat.json", house, "application/json")})
        assert answer.status_code == 200, answer.text
        assert answer.json()["kind"] == "flat"
