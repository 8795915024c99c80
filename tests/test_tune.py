"""Sweeps with KerasTuner: every trial an ordinary run, resumable, the best config reusable."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import tomllib
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

import projects
from common.core import commands, registry, runs
from common.core.config import Config
from common.core.errors import UserError
from common.experiments import tuning
from common.training import checkpoints, steps
from tests.conftest import ROOT, assert_one_line_error, ctrl_c_after_epoch
from tests.test_workflow import CURVES, CURVES_CONFIG, CURVES_PROJECT, curves  # noqa: F401  (the fixture)

TINY_MNIST = [
    "data.download_timeout=0",
    "model.conv_filters=[4]",
    "train.batch_size=256",
    "train.epochs=1",
]


def _sets(overrides: list[str]) -> list[str]:
    return [part for override in overrides for part in ("--set", override)]


def _trial_runs(models_dir, project: str, name: str) -> list[str]:
    return sorted(path.name for path in (models_dir / project).glob(f"*-tune-{name}-*"))


@pytest.mark.slow
def test_tune_writes_a_table_and_a_best_config_that_train_accepts(models_dir, cli):
    result = cli("tune", "stock", "--trials", "2", "--name", "quick", "--set", "train.epochs=1")
    assert result.code == 0, result.stderr
    assert len(_trial_runs(models_dir, "stock", "quick")) == 2
    assert "best config:" in result.stdout and "val_loss" in result.stdout
    # The best trial's keys, as a variant file that `train --config` loads (the slow test trains it).
    best = tuning.tune_dir("stock", "quick") / "best.toml"
    table = pd.read_csv(tuning.tune_dir("stock", "quick") / "results.csv")
    config = registry.get_project("stock").load_config(str(best))
    assert config.data.window == table.iloc[0]["data.window"]
    assert config.train.learning_rate == pytest.approx(table.iloc[0]["train.learning_rate"])


@pytest.mark.slow
def test_tune_runs_trials_as_runs_and_writes_a_reusable_best_config(models_dir, cli, monkeypatch):
    # Stopped during the second trial (Ctrl-C), then started again: only what was left runs.
    train = steps.train
    calls = {"count": 0}

    def interrupt_the_second_trial(*args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 2:
            raise KeyboardInterrupt
        return train(*args, **kwargs)

    monkeypatch.setattr(steps, "train", interrupt_the_second_trial)
    stopped = cli("tune", "mnist", "--trials", "3", "--name", "sweep", *_sets(TINY_MNIST))
    assert stopped.code == 2 and "interrupted in trial 2 of 3" in stopped.stderr
    monkeypatch.setattr(steps, "train", train)
    assert len(_trial_runs(models_dir, "mnist", "sweep")) == 1

    result = cli("tune", "mnist", "--trials", "3", "--name", "sweep", *_sets(TINY_MNIST))
    assert result.code == 0, result.stderr
    trial_runs = _trial_runs(models_dir, "mnist", "sweep")
    assert len(trial_runs) == 3 and sum(name.endswith("-0") for name in trial_runs) == 1
    for name in trial_runs:
        assert runs.run_state(models_dir / "mnist" / name) == runs.COMPLETED

    folder = tuning.tune_dir("mnist", "sweep")
    table = pd.read_csv(folder / "results.csv")
    assert len(table) == 3 and set(table["status"]) == {"completed"}
    assert list(table["val_loss"]) == sorted(table["val_loss"])  # best (smallest) first
    assert {"train.learning_rate", "model.dense_units", "model.dropout"} <= set(table.columns)

    best = folder / "best.toml"
    again = cli("train", "mnist", "--config", str(best), *_sets(TINY_MNIST))
    assert again.code == 0, again.stderr
    chosen = table.iloc[0]
    assert (
        f"learning_rate = {chosen['train.learning_rate']}"
        in (runs.latest_run("mnist") / "config.toml").read_text()
    )


def test_a_search_space_that_names_no_config_key_is_one_line(cli, tmp_path):
    variant = tmp_path / "space.toml"
    variant.write_text('[tune.space]\n"train.learnin_rate" = [0.1, 0.01]\n')
    assert_one_line_error(
        cli("tune", "mnist", "--config", str(variant)), "train.learnin_rate", "not a config key"
    )
    variant.write_text('[tune.space]\n"train.learning_rate" = { normal = [0.1, 0.01] }\n')
    assert_one_line_error(cli("tune", "mnist", "--config", str(variant)), "log_uniform")


def test_a_search_whose_every_trial_failed_ends_with_one_error_line(curves, cli):  # noqa: F811
    # No training points: each trial fails before its first epoch.
    result = cli("tune", CURVES, "--trials", "1", "--name", "lost", "--set", "train.epochs=2",
                 "--set", "data.rows=0")  # fmt: skip
    # (KerasTuner prints each failed trial's traceback, as the toy project checks no value.)
    assert result.code == 2
    assert result.stderr.splitlines()[-1] == (
        "error: no trial of search 'lost' finished; see the run folders of its trials"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_distributed_search_with_a_chief_and_two_workers_on_localhost(tmp_path):
    """KerasTuner's own chief/worker mode: the chief holds the oracle, the workers train."""
    environment = {
        **os.environ,
        "MODELS_DIR": str(tmp_path / "models"),
        "KERAS_HOME": str(tmp_path / "keras"),
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(_free_port()),
    }
    command = [sys.executable, "-m", "common", "tune", "stock", "--trials", "3", "--name", "spread", "-q",
               "--set", "train.epochs=1"]  # fmt: skip
    processes = {
        role: subprocess.Popen(
            command,
            cwd=ROOT,
            env={**environment, "KERASTUNER_TUNER_ID": role},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in ("chief", "tuner0", "tuner1")
    }
    try:
        outputs = {role: process.communicate(timeout=300) for role, process in processes.items()}
    finally:
        for process in processes.values():
            process.kill()
    assert all(process.returncode == 0 for process in processes.values()), outputs
    chief_out = outputs["chief"][0]
    assert "best config:" in chief_out
    trials = list((tmp_path / "models" / "stock").glob("*-tune-spread-*"))
    assert len(trials) == 3
    table = pd.read_csv(tmp_path / "models" / "stock" / "tune" / "spread" / "results.csv")
    assert len(table) == 3 and set(table["status"]) == {"completed"}


def test_the_best_config_is_the_trial_with_the_lowest_validation_loss(curves):  # noqa: F811
    """Two trials of the toy project, one with 5% of its validation labels wrong, one with 40%."""
    import tomllib

    table, best_file = tuning.run_search(curves, None, ["train.epochs=2"], "pick", trials=2)
    # Each trial's score, read from its own run folder: the lowest validation loss of its epochs.
    scores = {}
    for run_dir in runs.models_dir().joinpath(CURVES).glob("*-tune-pick-*"):
        flip = tomllib.loads((run_dir / "config.toml").read_text())["data"]["flip"]
        val_loss = pd.read_csv(run_dir / "history.csv")["val_loss"]
        assert val_loss.min() < val_loss.max()  # the lowest is not simply any epoch's
        scores[flip] = val_loss.min()
    assert sorted(scores) == [0.05, 0.4]
    assert scores[0.05] < scores[0.4]  # fewer wrong labels, a lower loss
    # The search's --set, then the best trial's value.
    assert tomllib.loads(best_file.read_text()) == {"data": {"flip": 0.05}, "train": {"epochs": 2}}
    assert f"best validation loss {scores[0.05]:.6g}" in best_file.read_text()
    # The results table, best first, with each trial's own score.
    saved = pd.read_csv(best_file.parent / "results.csv")
    assert list(saved.columns[:2]) == ["trial", "status"]  # the table's own columns, no index
    assert list(saved["data.flip"]) == [0.05, 0.4]
    np.testing.assert_allclose(saved["val_loss"], [scores[0.05], scores[0.4]], rtol=1e-12)
    assert list(saved["status"]) == ["completed", "completed"]
    assert list(table["data.flip"]) == [0.05, 0.4]


# The toy project of test_workflow, scored on its test split as a real project is.
SCORED = "curves_scored_fixture"
SCORED_EVALUATE = """
def evaluate(model, splits, config, out_dir):
    x, y = splits.test
    accuracy = float((model.predict(x, verbose=0).argmax(axis=1) == y).mean())
    return {"test_accuracy": accuracy, "baseline_accuracy": 0.5}
"""
# A space in which the config's own values lie: flip 0.25 among the choices, the rate in range.
SPACE_WITH_DEFAULTS = """
[tune.space]
"data.flip" = [0.4, 0.25, 0.05]
"train.learning_rate" = { log_uniform = [0.01, 1.0] }
"""


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    base = tmp_path_factory.mktemp("plugins")
    folder = base / SCORED
    folder.mkdir()
    (folder / "config.toml").write_text(textwrap.dedent(CURVES_CONFIG))
    source = textwrap.dedent(CURVES_PROJECT)
    evaluate = source.index("def evaluate(")
    source = source[:evaluate] + SCORED_EVALUATE.lstrip() + source[source.index("def predict(") - 2 :]
    (folder / "__init__.py").write_text(source)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(projects, "__path__", [str(base), *projects.__path__])
        yield registry.get_project(SCORED)
    sys.modules.pop(f"projects.{SCORED}", None)


def test_trial_1_is_the_config_as_it_stands_and_trials_count_from_1_everywhere(
    scored, models_dir, tmp_path, caplog, cli
):
    variant = tmp_path / "space.toml"
    variant.write_text(SPACE_WITH_DEFAULTS)
    caplog.set_level(logging.INFO, logger="common")
    overrides = ["train.epochs=2", "train.learning_rate=0.1"]
    table, best_file = tuning.run_search(scored, str(variant), overrides, "numbered", trials=2)

    # Each trial's config, by the number it is shown with: run folder "-0" is trial 1.
    trial_dirs = {int(path.name.rsplit("-", 1)[1]) + 1: path for path in _trial_dirs(models_dir, SCORED)}
    assert sorted(trial_dirs) == [1, 2]
    configs = {
        number: tomllib.loads((path / "config.toml").read_text()) for number, path in trial_dirs.items()
    }
    # Trial 1 trains the config as the search was given it (the --set rate, the default flip).
    assert configs[1]["data"]["flip"] == 0.25 and configs[1]["train"]["learning_rate"] == 0.1
    assert (configs[2]["data"]["flip"], configs[2]["train"]["learning_rate"]) != (0.25, 0.1)
    assert all(config["train"]["epochs"] == 2 for config in configs.values())

    progress = [
        record.getMessage() for record in caplog.records if record.name == "common.experiments.tuning"
    ]
    flip, rate = configs[2]["data"]["flip"], configs[2]["train"]["learning_rate"]
    assert [line.split(": best val_loss ")[0] for line in progress] == [
        "trial 1 of 2: data.flip=0.25, train.learning_rate=0.1 (the config's own values)",
        "trial 1 of 2",
        f"trial 2 of 2: data.flip={flip}, train.learning_rate={rate}",
        "trial 2 of 2",
    ]
    scores = {
        number: pd.read_csv(path / "history.csv")["val_loss"].min() for number, path in trial_dirs.items()
    }
    assert progress[1] == f"trial 1 of 2: best val_loss {scores[1]:.6g}"

    # The table numbers the trials as the progress did, each beside its own run and values.
    saved = pd.read_csv(best_file.parent / "results.csv")
    assert sorted(saved["trial"]) == [1, 2] and list(table["trial"]) == list(saved["trial"])
    for row in saved.to_dict("records"):
        assert row["run"] == trial_dirs[row["trial"]].name
        assert row["data.flip"] == configs[row["trial"]]["data"]["flip"]
        assert row["val_loss"] == pytest.approx(scores[row["trial"]], rel=1e-12)
    best = int(saved["trial"].iloc[0])
    assert scores[best] == min(scores.values())

    # best.toml: the search's --config and --set, then the best trial's values; training from it
    # resolves to exactly the best trial's config.
    text = best_file.read_text()
    assert f"trial {best}, best validation loss {scores[best]:.6g}" in text
    expected = {
        "train": {"epochs": 2, "learning_rate": configs[best]["train"]["learning_rate"]},
        "tune": tomllib.loads(SPACE_WITH_DEFAULTS)["tune"],
    }
    if configs[best]["data"]["flip"] != 0.25:
        expected["data"] = {"flip": configs[best]["data"]["flip"]}
    assert tomllib.loads(text) == expected
    assert scored.load_config(str(best_file)).to_dict() == configs[best]

    # `runs` shows a trial's validation loss, never its test score, beside the run.
    listing = cli("runs", SCORED).stdout.splitlines()
    for number, path in trial_dirs.items():
        [line] = [line for line in listing if line.startswith(path.name)]
        assert f"val_loss {scores[number]:.4f} (tune trial {number} of 'numbered')" in line
        assert "test_accuracy" not in line


def _trial_dirs(models_dir, project: str, name: str = "numbered") -> list:
    return sorted((models_dir / project).glob(f"*-tune-{name}-*"))


@contextmanager
def sigterm_after_epoch(epoch: int):
    """Inside the block, the process sends itself SIGTERM (as ``kill PID``) right after epoch
    ``epoch`` (0-based) of a training was committed to its run folder."""
    commit = checkpoints.RunRecorder.on_epoch_end

    def commit_then_terminate(self, done, logs=None):
        commit(self, done, logs)
        if done == epoch:
            os.kill(os.getpid(), signal.SIGTERM)

    checkpoints.RunRecorder.on_epoch_end = commit_then_terminate
    try:
        yield
    finally:
        checkpoints.RunRecorder.on_epoch_end = commit


@pytest.mark.parametrize("stop", [ctrl_c_after_epoch, sigterm_after_epoch], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_search_stops_and_the_same_command_reruns_the_interrupted_trial(
    curves,  # noqa: F811
    models_dir,
    cli,
    stop,
):
    command = ["tune", CURVES, "--name", "stop", "--trials", "2", "--set", "train.epochs=2"]
    with stop(0):
        stopped = cli(*command)
    assert stopped.code == 2 and "Traceback" not in stopped.stderr
    assert [line for line in stopped.stderr.splitlines() if line.startswith("error:")] == [
        "error: search 'stop' interrupted in trial 1 of 2; that trial runs again first. "
        f"Continue with: {shlex.quote(commands.python_command())} -m common {' '.join(command)}"
    ]
    [interrupted] = _trial_dirs(models_dir, CURVES, "stop")
    assert runs.run_state(interrupted) == runs.INTERRUPTED
    assert len(pd.read_csv(interrupted / "history.csv")) == 1
    assert not (tuning.tune_dir(CURVES, "stop") / "results.csv").exists()

    again = cli(*command)
    assert again.code == 0, again.stderr
    # Trial 1 resumed in its own run folder (its second epoch added), then trial 2: two trials.
    trial_dirs = _trial_dirs(models_dir, CURVES, "stop")
    assert len(trial_dirs) == 2 and interrupted in trial_dirs
    for path in trial_dirs:
        assert runs.run_state(path) == runs.COMPLETED
        assert list(pd.read_csv(path / "history.csv")["epoch"]) == [0, 1]
    table = pd.read_csv(tuning.tune_dir(CURVES, "stop") / "results.csv")
    assert sorted(table["trial"]) == [1, 2] and set(table["status"]) == {"completed"}
    assert set(table["run"]) == {path.name for path in trial_dirs}


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("", "[tune.space] is empty"),
        ('"data.flip" = []', "'data.flip': give one or more values to try"),
        ('"data.flip" = {}', "'data.flip': expected a list or a one-entry table; received {}"),
        ('"data.flip" = { uniform = [0.1, 0.4], int = [1, 2] }', "expected a list or a one-entry table"),
        ('"data.flip" = { uniform = [0.4, 0.1] }', "'data.flip': use a list of values, or one of"),
        ('"data.flip" = { uniform = [0.1, 0.1] }', "'data.flip': use a list of values, or one of"),
        ('"data.flip" = { normal = [0.1, 0.4] }', "'data.flip': use a list of values, or one of"),
        ('"train.learning_rate" = { log_uniform = [0.0, 1.0] }', "log_uniform needs a low bound above 0"),
        ('"train.learning_rate" = { log_uniform = [-1.0, 1.0] }', "log_uniform needs a low bound above 0"),
        ('"data" = [1, 2]', "'data', a table; name one of its keys"),
        ('"data.nope" = [1, 2]', "'data.nope', which is not a config key of curves_fixture"),
        ('"seed" = [1, 2]', "names 'seed', which draws the splits"),
        ('"train.epochs" = [2, "many"]', "'train.epochs': 'many' cannot be tried: config key 'train.epochs'"),
        (
            '"train.learning_rate" = [0.1, -0.5]',
            "-0.5 cannot be tried: config key 'train.learning_rate' must",
        ),
        ('"train.epochs" = { int = [0, 3] }', "'train.epochs': 0 cannot be tried"),
        ('"train.optimizer" = ["adam", "adamm"]', "did you mean 'adam'"),
    ],
)
def test_each_malformed_search_space_entry_is_one_line_naming_it(space, message, curves):  # noqa: F811
    values = curves.load_config().to_dict()
    values["tune"]["space"] = tomllib.loads(space)
    with pytest.raises(UserError) as raised:
        tuning.search_space(curves, Config(values))
    assert message in str(raised.value)


def test_well_formed_search_spaces_are_accepted_as_written(curves):  # noqa: F811
    values = curves.load_config().to_dict()
    space = {
        "data.flip": [0.05, 0.4],
        "train.learning_rate": {"log_uniform": [0.01, 1.0]},
        "train.epochs": {"int": [1, 3]},
        "data.rows": {"uniform": [10, 20]},
    }
    values["tune"]["space"] = space
    assert tuning.search_space(curves, Config(values)) == space
