"""The registry finds plug-in projects; the workflow gives each run a complete folder."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

import projects
from common.__main__ import main
from common.core import registry, runs
from tests.conftest import another_process_training, assert_one_line_error, ctrl_c_after_epoch

# A name no user would give a project of their own: a user's projects/ may hold any other.
TOY = "points_fixture"

TOY_CONFIG = """
seed = 1
[data]
path = ""
rows = 64
[model]
units = 4
[train]
epochs = 2
batch_size = 16
learning_rate = 0.01
optimizer = "adam"
loss = "sparse_categorical_crossentropy"
metrics = ["accuracy"]
lr_schedule = "constant"
early_stopping_patience = 0
tensorboard = false
"""

TOY_PROJECT = '''
"""A fourth pipeline, living only in its own folder: points left or right of zero."""
import keras
import numpy as np

from common.kit.classification import evaluate_classifier
from common.kit.splits import Splits
from common.core.project import Headline, Project

from typing import Annotated

from common.core.project import Option

FAIL_DURING_FIT = False


def load_data(config, need_training=True):
    rng = np.random.default_rng(config.seed)
    x = rng.normal(size=(config.data.rows, 1)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    third = len(x) // 3
    return Splits(train=(x[:third], y[:third]), validation=(x[third:2 * third], y[third:2 * third]),
                  test=(x[2 * third:], y[2 * third:]), source="toy points")


def build_model(config, splits):
    layers = [keras.Input(shape=(1,)), keras.layers.Dense(config.model.units, activation="relu"),
              keras.layers.Dense(2, activation="softmax")]
    if FAIL_DURING_FIT:
        layers.insert(1, keras.layers.Lambda(lambda x: (_ for _ in ()).throw(KeyboardInterrupt())))
    return keras.Sequential(layers)


def evaluate(model, splits, config, out_dir):
    y_train = splits.train[1] if splits.train else None
    return evaluate_classifier(model, splits.test[0], splits.test[1], y_train, ["left", "right"], out_dir)


def predict(model, inputs, config, *, shift: Annotated[float, Option("added to each input first")] = 0.0):
    values = np.array([[float(value) + shift] for value in inputs], dtype="float32")
    return [{"input": value, "label": int(label)}
            for value, label in zip(inputs, model.predict(values, verbose=0).argmax(axis=1))]


PROJECT = Project(headline=Headline("test_accuracy", baseline="baseline_accuracy"), load_data=load_data,
                  build_model=build_model, evaluate=evaluate, predict=predict)
'''


@pytest.fixture
def toy_project(tmp_path, monkeypatch):
    """A project folder outside the repository, added to the ``projects`` package's path."""
    base = tmp_path / "plugins"
    folder = base / TOY
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(textwrap.dedent(TOY_CONFIG))
    (folder / "__init__.py").write_text(textwrap.dedent(TOY_PROJECT))
    monkeypatch.setattr(projects, "__path__", [str(base), *projects.__path__])
    yield folder
    sys.modules.pop(f"projects.{TOY}", None)


def test_registry_lists_the_shipped_projects():
    # Only the three that ship: a user's own project may be half-written while they test.
    names = registry.project_names()
    assert {"mnist", "emojify", "stock"} <= set(names)
    for name in ("mnist", "emojify", "stock"):
        project = registry.get_project(name)
        assert project.default_config.is_file()
        for function in ("load_data", "build_model", "evaluate", "predict"):
            assert callable(getattr(project.functions, function))


def test_a_project_declares_its_functions_and_hooks_in_one_place(toy_project):
    """``PROJECT`` names the functions; a hook it leaves out is ``None``, not probed for."""
    project = registry.get_project(TOY)
    assert project.name == TOY and project.folder == toy_project
    assert project.functions.load_data.__module__ == f"projects.{TOY}"
    assert project.functions.demo is None and project.functions.serving_model is None
    for shipped in ("mnist", "emojify", "stock"):
        declared = registry.get_project(shipped)
        assert declared.functions.validate_config.__module__ == f"projects.{shipped}.settings"
        assert declared.functions.predict.__module__ == f"projects.{shipped}.predict"
    assert registry.get_project("stock").functions.training_batches is None
    assert registry.get_project("emojify").functions.training_batches.__module__ == "projects.emojify.augment"


def _broken_project(toy_project, source: str) -> None:
    (toy_project / "__init__.py").write_text(textwrap.dedent(source))
    sys.modules.pop(f"projects.{TOY}", None)


def test_a_project_that_declares_nothing_is_one_line(toy_project, cli):
    _broken_project(
        toy_project,
        '''"""No declaration."""
def load_data(config, need_training=True):
    return None
''',
    )
    assert_one_line_error(cli("train", TOY), f"project '{TOY}'", "declares no `PROJECT = Project(...)`")


def test_a_declared_module_that_does_not_exist_is_one_line(toy_project, cli):
    _broken_project(
        toy_project,
        '''"""A declaration naming a data.py that is not there."""
from common.core.project import Headline, Project

PROJECT = Project(headline=Headline("test_accuracy"), load_data="data:load_data", build_model="model:build",
                  evaluate="evaluate:evaluate", predict="predict:predict")
''',
    )
    assert_one_line_error(
        cli("train", TOY), "load_data='data:load_data'", f"projects/{TOY}/data.py does not exist"
    )


def test_a_declared_function_its_module_lacks_is_one_line(toy_project, cli):
    (toy_project / "data.py").write_text("def read():\n    return None\n")
    _broken_project(
        toy_project,
        '''"""A declaration naming a function data.py does not define."""
from common.core.project import Headline, Project

PROJECT = Project(headline=Headline("test_accuracy"), load_data="data:load_data", build_model="data:read",
                  evaluate="data:read", predict="data:read")
''',
    )
    assert_one_line_error(cli("train", TOY), f"projects/{TOY}/data.py defines no load_data")
    sys.modules.pop(f"projects.{TOY}.data", None)


def test_a_project_whose_init_cannot_be_imported_is_one_line(toy_project, cli):
    _broken_project(toy_project, "import no_such_module_anywhere\n")
    assert_one_line_error(
        cli("train", TOY), f"projects/{TOY}/__init__.py cannot be imported", "no_such_module"
    )
    listed = cli("list")  # the other projects are still listed, the broken one marked
    assert listed.code == 0 and "mnist " in listed.stdout
    assert f"{TOY:10} cannot be used: project '{TOY}': projects/{TOY}/__init__.py" in listed.stdout


def test_runs_and_training_show_the_headline_the_project_declares(toy_project, models_dir, cli):
    """No metric name is built into ``common``: a project judged by its baseline's accuracy (an odd
    choice, but its own) is shown by it."""
    _broken_project(
        toy_project,
        TOY_PROJECT.replace(
            'Headline("test_accuracy", baseline="baseline_accuracy")',
            'Headline("baseline_accuracy", meaning="how often the majority class is right")',
        ),
    )
    result = cli("train", TOY, "--set", "train.epochs=1")
    assert result.code == 0, result.stderr
    metrics = json.loads((runs.latest_run(TOY) / runs.METRICS_FILE).read_text())
    headline = (
        f"baseline_accuracy: {metrics['baseline_accuracy']:.4f} (how often the majority class is right)"
    )
    assert result.stdout.splitlines()[0] == headline
    assert f"baseline_accuracy {metrics['baseline_accuracy']:.4f}" in cli("runs", TOY).stdout


def test_unknown_project_is_a_one_line_error(cli):
    result = cli("train", "nosuchproject")
    assert result.code == 2
    assert "unknown project 'nosuchproject'" in result.stderr and "mnist" in result.stderr
    assert "did you mean" not in result.stderr


@pytest.mark.parametrize("typed", ["MNIST", "mnsit", "Mnist"])
def test_a_mistyped_project_gets_a_suggestion(typed, cli):
    assert_one_line_error(cli("train", typed), f"unknown project '{typed}' (did you mean 'mnist'?)")


def test_a_new_project_folder_plugs_in_and_trains(toy_project, models_dir, cli, capsys):
    listed = cli("list")
    assert TOY in listed.stdout and "points left or right" in listed.stdout

    result = cli("train", TOY, "--set", "train.epochs=3", "--name", "first", "--promote")
    assert result.code == 0, result.stderr
    run_dir = runs.latest_run(TOY)
    assert run_dir is not None and run_dir.name.endswith("-first")
    for name in (
        "model.keras",
        "config.toml",
        "history.csv",
        "metrics.json",
        "learning_curves.png",
        "checkpoint-best.keras",
        "checkpoint-last.keras",
        "confusion_matrix.png",
    ):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["data_source"] == "toy points"
    assert metrics["n_train"] == 21 and metrics["n_test"] == 22 and metrics["epochs_run"] == 3
    # The scores, worked out here from the toy's data and the saved model's weights in NumPy.
    import keras

    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 1)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    kernel, bias, out_kernel, out_bias = keras.saving.load_model(run_dir / "model.keras").get_weights()
    predicted = (np.maximum(x[42:] @ kernel + bias, 0) @ out_kernel + out_bias).argmax(axis=1)
    assert metrics["test_accuracy"] == pytest.approx(np.mean(predicted == y[42:]), abs=1e-12)
    majority = np.bincount(y[:21]).argmax()
    assert metrics["baseline_accuracy"] == pytest.approx(np.mean(y[42:] == majority), abs=1e-12)
    assert metrics["baseline_class"] == ["left", "right"][majority]
    # The resolved config, override included, is saved with the run.
    assert "epochs = 3" in (run_dir / "config.toml").read_text()

    predicted = cli("predict", TOY, "-2.5", "3.0", "--json")
    assert predicted.code == 0, predicted.stderr
    assert [json.loads(line)["input"] for line in predicted.stdout.splitlines()] == ["-2.5", "3.0"]
    # predict's keyword option is its flag, with its type and help.
    with pytest.raises(SystemExit):
        main(["predict", TOY, "--help"])
    assert "--shift SHIFT  added to each input first (default 0.0)" in capsys.readouterr().out
    shifted = cli("predict", TOY, "-2.5", "--shift", "5.5", "--json")
    assert shifted.code == 0, shifted.stderr
    labels = [json.loads(line)["label"] for line in predicted.stdout.splitlines()]
    assert json.loads(shifted.stdout)["label"] == labels[1]

    evaluated = cli("evaluate", TOY)
    assert evaluated.code == 0, evaluated.stderr
    assert "test_accuracy" in evaluated.stdout
    # Evaluating writes its own folder, with the scores of the same model on the same test split,
    # and leaves the run's metrics.json alone.
    [evaluation] = (models_dir / TOY / "evaluations").iterdir()
    scored = json.loads((evaluation / "metrics.json").read_text())
    assert scored["test_accuracy"] == metrics["test_accuracy"] and scored["n_test"] == 22
    assert scored["model"] == str(run_dir / "model.keras")
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics


def test_evaluate_never_writes_into_a_run_folder(toy_project, models_dir, cli, tmp_path):
    """A run's metrics.json is the record of its training: ``evaluate --out`` naming the run (its
    folder, a folder inside it, ``latest``) is refused in one line, and nothing of the run changes."""
    assert cli("train", TOY, "--set", "train.epochs=2").code == 0
    run_dir = runs.latest_run(TOY)

    def files_of(folder):
        return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}

    before = files_of(run_dir)
    for out in (run_dir, run_dir / "scores", models_dir / TOY / "latest", run_dir / "plots" / ".." / "x"):
        result = cli("evaluate", TOY, "--model", str(run_dir), "--out", str(out))
        assert_one_line_error(result, f"--out {out}", f"the run folder {run_dir}", "metrics.json")
    assert files_of(run_dir) == before
    assert not (run_dir / "scores").exists() and not (models_dir / TOY / "evaluations").exists()
    # Any other folder takes the scores.
    scored = cli("evaluate", TOY, "--model", str(run_dir), "--out", str(tmp_path / "scores"))
    assert scored.code == 0, scored.stderr
    assert (tmp_path / "scores" / "metrics.json").is_file() and files_of(run_dir) == before


def test_interrupted_run_never_becomes_latest_and_resumes(toy_project, models_dir, cli):
    assert cli("train", TOY, "--name", "good", "--set", "train.epochs=3").code == 0
    good_run = runs.latest_run(TOY)
    good_model = (good_run / "model.keras").read_bytes()

    with ctrl_c_after_epoch(0):
        result = cli("train", TOY, "--name", "broken", "--set", "train.epochs=3")
    assert result.code == 2
    assert "interrupted" in result.stderr and "--resume" in result.stderr
    assert runs.latest_run(TOY) == good_run
    assert (good_run / "model.keras").read_bytes() == good_model
    [broken] = [path for path in (models_dir / TOY).iterdir() if path.name.endswith("-broken")]
    assert not (broken / "model.keras").exists()
    assert runs.run_state(broken) == runs.INTERRUPTED
    assert not (broken / runs.LOCK_FILE).exists()

    resumed = cli("train", TOY, "--resume", str(broken))
    assert resumed.code == 0, resumed.stderr
    assert runs.latest_run(TOY) == broken and runs.run_state(broken) == runs.COMPLETED
    epochs = [line.split(",")[0] for line in (broken / "history.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2"]
    # Resumed, it ends exactly as the same training run without a break.
    assert (broken / "history.csv").read_text() == (good_run / "history.csv").read_text()
    import keras

    resumed_weights = keras.saving.load_model(broken / "model.keras").get_weights()
    for resumed_weight, good_weight in zip(
        resumed_weights, keras.saving.load_model(good_run / "model.keras").get_weights(), strict=True
    ):
        np.testing.assert_array_equal(resumed_weight, good_weight)


def test_a_run_interrupted_before_its_first_epoch_leaves_nothing(toy_project, models_dir, cli):
    import projects.points_fixture as toy

    toy.FAIL_DURING_FIT = True
    result = cli("train", TOY, "--name", "broken")
    toy.FAIL_DURING_FIT = False
    assert result.code == 2 and "nothing was kept" in result.stderr
    assert not any(path.name.endswith("-broken") for path in (models_dir / TOY).iterdir())


def test_resume_refuses_what_is_not_an_interrupted_run(toy_project, models_dir, cli, tmp_path):
    assert cli("train", TOY, "--set", "train.epochs=2").code == 0
    run_dir = runs.latest_run(TOY)
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    assert_one_line_error(cli("train", TOY, "--resume", str(run_dir)), "completed", "--continue-from")
    assert_one_line_error(cli("train", TOY, "--resume", str(models_dir / TOY / "latest")), "latest")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.toml").write_text((run_dir / "config.toml").read_text())
    assert_one_line_error(cli("train", TOY, "--resume", str(outside)), f"not a run folder of {TOY}")
    assert_one_line_error(
        cli("train", TOY, "--resume", str(run_dir), "--set", "train.epochs=4"), "--continue-from"
    )
    after = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    assert after == before and runs.latest_run(TOY) == run_dir


def test_resume_refuses_a_run_another_process_is_training(toy_project, models_dir, cli):
    assert cli("train", TOY, "--set", "train.epochs=2").code == 0
    run_dir = runs.latest_run(TOY)
    runs.set_state(run_dir, runs.RUNNING)
    with another_process_training(run_dir) as trainer:
        assert runs.run_state(run_dir) == runs.RUNNING
        assert_one_line_error(cli("train", TOY, "--resume", str(run_dir)), f"process {trainer.pid}")
    # Once its process is gone, so is its lock, and the run reads as interrupted.
    assert runs.run_state(run_dir) == runs.INTERRUPTED


def test_continue_from_trains_a_completed_run_further_into_a_new_folder(toy_project, models_dir, cli):
    assert cli("train", TOY, "--set", "train.epochs=2").code == 0
    first = runs.latest_run(TOY)
    first_files = {path.name: path.read_bytes() for path in first.iterdir() if path.is_file()}
    result = cli("train", TOY, "--continue-from", str(first), "--set", "train.epochs=3")
    assert result.code == 0, result.stderr
    second = runs.latest_run(TOY)
    assert second != first
    metrics = json.loads((second / "metrics.json").read_text())
    assert metrics["continued_from"] == str(first) and metrics["epochs_run"] == 3
    assert {path.name: path.read_bytes() for path in first.iterdir() if path.is_file()} == first_files


def test_continue_from_an_interrupted_run_starts_from_its_last_checkpoint(
    toy_project, models_dir, cli, monkeypatch
):
    with ctrl_c_after_epoch(1):
        assert cli("train", TOY, "--name", "stopped", "--set", "train.epochs=4").code == 2
    [stopped] = [path for path in (models_dir / TOY).iterdir() if path.name.endswith("-stopped")]
    assert runs.run_state(stopped) == runs.INTERRUPTED

    # While another process trains it, it is a moving target: refused in one line.
    runs.set_state(stopped, runs.RUNNING)
    with another_process_training(stopped) as trainer:
        assert_one_line_error(
            cli("train", TOY, "--continue-from", str(stopped)), f"process {trainer.pid}", "stop it"
        )
    (stopped / runs.LOCK_FILE).unlink()
    runs.set_state(stopped, runs.INTERRUPTED)
    stopped_files = {path.name: path.read_bytes() for path in stopped.iterdir() if path.is_file()}

    # Once stopped, a new run starts from the weights of its last committed epoch, with new settings.
    import keras

    last = keras.saving.load_model(stopped / runs.LAST_CHECKPOINT).get_weights()
    started_from = []
    original_fit = keras.Model.fit

    def fit_recording_start(model, *args, **kwargs):
        started_from.append(model.get_weights())
        return original_fit(model, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit_recording_start)
    result = cli("train", TOY, "--continue-from", str(stopped), "--set", "train.epochs=2")
    assert result.code == 0, result.stderr
    for started, weights in zip(started_from[0], last, strict=True):
        np.testing.assert_array_equal(started, weights)
    second = runs.latest_run(TOY)
    assert second != stopped
    assert json.loads((second / "metrics.json").read_text())["continued_from"] == str(stopped)
    # The interrupted run is untouched and can still be resumed.
    assert {path.name: path.read_bytes() for path in stopped.iterdir() if path.is_file()} == stopped_files
    assert runs.run_state(stopped) == runs.INTERRUPTED


def test_no_trained_model_says_what_to_do(toy_project, models_dir, cli):
    result = cli("predict", TOY, "1.0")
    assert result.code == 2
    assert f"python -m common train {TOY}" in result.stderr


def test_a_model_predicts_after_its_training_data_has_moved(toy_project, models_dir, cli, tmp_path):
    data_file = tmp_path / "points.csv"
    data_file.write_text("unused by the toy project\n")
    assert cli("train", TOY, "--set", f"data.path={data_file}", "--promote").code == 0
    data_file.unlink()
    assert cli("predict", TOY, "1.5").code == 0
    # Evaluation reads the data, so there the missing path is an error naming the key.
    evaluated = cli("evaluate", TOY)
    assert evaluated.code == 2 and "'data.path'" in evaluated.stderr
