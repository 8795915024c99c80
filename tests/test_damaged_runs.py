"""Damaged run folders: a resume checks every file it reads before training and refuses a damaged
one in one line, leaving the run as it was; the runs table and compare show the readable runs and
name the unreadable one; a run is held by the process holding its lock, whatever id its lock file
names, and of two resumes started together exactly one trains."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from common.core import runs
from tests.conftest import (
    ROOT,
    CliResult,
    another_process_training,
    assert_one_line_error,
    ctrl_c_after_epoch,
)
from tests.test_registry_and_runs import TOY, toy_project  # noqa: F401  (the fixture)


@contextmanager
def deadline(seconds: int):
    """Fails (instead of hanging the suite) when the block blocks, e.g. on opening a FIFO."""

    def expire(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _files(run_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}


def _replace(path: Path, data: bytes) -> None:
    """A new file under the name (the checkpoints may be hard links of one another)."""
    path.unlink()
    path.write_bytes(data)


@pytest.fixture
def interrupted(toy_project, models_dir, cli) -> Path:  # noqa: F811
    """A toy run of 4 epochs interrupted after its second: resumable, both checkpoints whole."""
    with ctrl_c_after_epoch(1):
        assert cli("train", TOY, "--name", "stopped", "--set", "train.epochs=4").code == 2
    [run_dir] = [path for path in (models_dir / TOY).iterdir() if path.name.endswith("-stopped")]
    assert runs.run_state(run_dir) == runs.INTERRUPTED
    assert json.loads((run_dir / "progress.json").read_text())["epochs_done"] == 2
    return run_dir


def _first_lines(path: Path, count: int) -> bytes:
    return "".join(path.read_text().splitlines(keepends=True)[:count]).encode()


def _progress_with(**changes):
    def damage(run_dir: Path) -> None:
        record = json.loads((run_dir / "progress.json").read_text())
        _replace(run_dir / "progress.json", json.dumps({**record, **changes}).encode())

    return damage


DAMAGE = {
    "checkpoint-last truncated": (
        lambda run: _replace(run / runs.LAST_CHECKPOINT, (run / runs.LAST_CHECKPOINT).read_bytes()[:3000]),
        [runs.LAST_CHECKPOINT, "--continue-from", runs.BEST_CHECKPOINT],
    ),
    "checkpoint-last random bytes": (
        lambda run: _replace(run / runs.LAST_CHECKPOINT, os.urandom(20000)),
        [runs.LAST_CHECKPOINT, "--continue-from", runs.BEST_CHECKPOINT],
    ),
    "progress.json not JSON": (
        lambda run: _replace(run / "progress.json", b'{"epochs_done": 2, "hist'),
        ["progress.json", "not valid JSON", "--continue-from", runs.LAST_CHECKPOINT],
    ),
    "progress.json a list": (
        lambda run: _replace(run / "progress.json", b"[]"),
        ["progress.json", "list", "--continue-from"],
    ),
    "epochs_done negative": (_progress_with(epochs_done=-5), ["progress.json", "epochs_done is -5"]),
    "epochs_done huge": (_progress_with(epochs_done=10**9), ["progress.json", "epochs_done is 1000000000"]),
    "epochs_done past the history": (
        _progress_with(epochs_done=3, epoch=2),
        ["progress.json", "history has 2 rows for 3 epochs"],
    ),
    "history.csv short of an epoch": (
        lambda run: _replace(
            run / "history.csv",
            "\n".join((run / "history.csv").read_text().splitlines()[:2]).encode() + b"\n",
        ),
        ["history.csv", "holds 1 epochs", "records 2"],
    ),
    "progress.json a FIFO": (
        lambda run: ((run / "progress.json").unlink(), os.mkfifo(run / "progress.json")),
        ["progress.json", "not a regular file"],
    ),
}


@pytest.mark.parametrize("damage, fragments", list(DAMAGE.values()), ids=list(DAMAGE))
def test_resume_refuses_a_damaged_run_in_one_line_and_leaves_it_resumable(
    damage, fragments, interrupted, models_dir, cli
):
    damage(interrupted)
    before = _files(interrupted)
    with deadline(60):
        result = cli("train", TOY, "--resume", str(interrupted))
    assert_one_line_error(result, f"--resume {interrupted}: cannot resume", *fragments)
    assert _files(interrupted) == before  # Nothing rewritten, state.json included.
    state = json.loads(before[runs.STATE_FILE])
    assert state["state"] == runs.INTERRUPTED and runs.run_state(interrupted) == runs.INTERRUPTED
    assert not (interrupted / runs.LOCK_FILE).exists()
    assert runs.latest_run(TOY) is None


def test_a_damaged_last_checkpoint_leaves_the_best_one_to_continue_from(interrupted, models_dir, cli, caplog):
    import keras

    best = keras.saving.load_model(interrupted / runs.BEST_CHECKPOINT).get_weights()
    _replace(interrupted / runs.LAST_CHECKPOINT, os.urandom(20000))
    refused = cli("train", TOY, "--resume", str(interrupted))
    assert_one_line_error(refused, "--continue-from")
    # It starts from nothing: it refused (the best checkpoint is named only as advice).
    assert not [record for record in caplog.records if "starting from" in record.getMessage()]
    started_from = []
    original_fit = keras.Model.fit

    def fit_recording_start(model, *args, **kwargs):
        started_from.append(model.get_weights())
        return original_fit(model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.Model, "fit", fit_recording_start)
        result = cli("train", TOY, "--continue-from", str(interrupted), "--set", "train.epochs=2")
    assert result.code == 0, result.stderr
    assert len(started_from) == 1
    for started, weights in zip(started_from[0], best, strict=True):
        assert (started == weights).all()
    assert runs.run_state(interrupted) == runs.INTERRUPTED


def test_a_run_killed_while_writing_its_first_state_resumes(toy_project, models_dir, cli):  # noqa: F811
    """Its config saved, its state.json never whole: nothing was trained and nothing failed."""
    assert cli("train", TOY, "--name", "whole", "--set", "train.epochs=2").code == 0
    [whole] = [path for path in (models_dir / TOY).iterdir() if path.name.endswith("-whole")]
    killed = runs.new_run_dir(TOY, "killed")
    shutil.copy(whole / runs.CONFIG_FILE, killed / runs.CONFIG_FILE)
    (killed / f".{runs.STATE_FILE}.partial").write_bytes(b'{"state": "runn')
    assert runs.run_state(killed) == runs.INTERRUPTED
    result = cli("train", TOY, "--resume", str(killed))
    assert result.code == 0, result.stderr
    assert runs.run_state(killed) == runs.COMPLETED
    assert json.loads((killed / "metrics.json").read_text())["epochs_run"] == 2


def test_a_bug_during_a_resume_leaves_the_run_resumable_not_failed(interrupted, models_dir, cli):
    import projects.points_fixture as toy

    declared = toy.PROJECT
    toy.PROJECT = dataclasses.replace(declared, evaluate=lambda *args: 1 / 0)
    try:
        with pytest.raises(ZeroDivisionError):
            cli("train", TOY, "--resume", str(interrupted))
    finally:
        toy.PROJECT = declared
    assert runs.run_state(interrupted) == runs.INTERRUPTED
    resumed = cli("train", TOY, "--resume", str(interrupted))
    assert resumed.code == 0, resumed.stderr
    assert runs.run_state(interrupted) == runs.COMPLETED


# The runs table and compare: one unreadable folder never hides the others ---------------------


@pytest.fixture
def two_runs(toy_project, models_dir, cli) -> list[Path]:  # noqa: F811
    assert cli("train", TOY, "--name", "a", "--set", "model.units=2").code == 0
    assert cli("train", TOY, "--name", "b", "--set", "model.units=8").code == 0
    return sorted(path for path in (models_dir / TOY).iterdir() if path.name[0].isdigit())


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _huge(path: Path) -> None:
    path.unlink(missing_ok=True)
    with open(path, "wb") as file:
        file.truncate(100 * 2**20)  # Sparse: 100 MB of zeros that take no disk.


MALFORMED = {
    "metrics.json a list": ("metrics.json", lambda path: path.write_text("[1, 2]"), "list"),
    "metrics.json Infinity": (
        "metrics.json",
        lambda path: path.write_text('{"test_accuracy": Infinity}'),
        "Infinity is not a JSON number",
    ),
    "metrics.json nested 100k deep": (
        "metrics.json",
        lambda path: path.write_text("[" * 100_000 + "]" * 100_000),
        "nested too deep",
    ),
    "metrics.json a FIFO": ("metrics.json", _fifo, "not a regular file"),
    "metrics.json 100 MB": ("metrics.json", _huge, "MB"),
    "config.toml not UTF-8": ("config.toml", lambda path: path.write_bytes(b"seed = \xff\xfe1\n"), "UTF-8"),
    "config.toml nested 100k deep": (
        "config.toml",
        lambda path: path.write_text("seed = " + "[" * 100_000 + "]" * 100_000),
        "nested too deep",
    ),
    "progress.json a list": ("progress.json", lambda path: path.write_text("[]"), "list"),
    "state.json a FIFO": ("state.json", _fifo, "not a regular file"),
}


@pytest.mark.parametrize("name, damage, why", list(MALFORMED.values()), ids=list(MALFORMED))
def test_one_malformed_run_is_marked_and_the_others_still_listed(
    name, damage, why, two_runs, models_dir, cli, tmp_path
):
    bad = models_dir / TOY / "29990101-000000-bad"
    shutil.copytree(two_runs[0], bad)
    damage(bad / name)
    with deadline(60):
        listed = cli("runs", TOY, "--json")
    assert listed.code == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {bad.name, *(run.name for run in two_runs)}
    assert rows[bad.name]["state"] == "unreadable"
    assert rows[bad.name]["unreadable"].startswith(name) and why in rows[bad.name]["unreadable"]
    for run in two_runs:
        recorded = json.loads((run / "metrics.json").read_text())
        assert rows[run.name]["state"] == "completed" and rows[run.name]["value"] == recorded["test_accuracy"]

    with deadline(60):
        table = cli("runs", TOY)
    assert table.code == 0 and "Traceback" not in table.stderr
    [marked] = [line for line in table.stdout.splitlines() if line.startswith(f"{bad.name}: unreadable")]
    assert name in marked and why in marked
    for run in two_runs:
        [line] = [line for line in table.stdout.splitlines() if line.startswith(run.name)]
        accuracy = json.loads((run / "metrics.json").read_text())["test_accuracy"]
        assert f"test_accuracy {accuracy:.4f}" in line

    with deadline(60):
        compared = cli("compare", TOY, *(run.name for run in two_runs), bad.name, "--out", tmp_path / "c.png")
    assert compared.code == 0, compared.stderr
    lines = compared.stdout.splitlines()
    [units] = [line for line in lines if line.startswith("model.units")]
    assert units.split()[1:] == ["2", "8"]
    [marked] = [line for line in lines if line.startswith(f"{bad.name}: unreadable")]
    assert name in marked and why in marked
    assert (tmp_path / "c.png").is_file()


def test_compare_names_a_run_whose_history_is_a_fifo_and_plots_the_others(two_runs, cli, tmp_path):
    _fifo(two_runs[1] / "history.csv")
    with deadline(60):
        compared = cli("compare", TOY, *(run.name for run in two_runs), "--out", tmp_path / "c.png")
    assert compared.code == 0, compared.stderr
    assert f"{two_runs[1].name}: no curve: history.csv: not a regular file" in compared.stdout.splitlines()


def test_compare_refuses_a_run_of_another_project(two_runs, models_dir, cli):
    other = models_dir / "stock" / two_runs[1].name
    shutil.copytree(two_runs[1], other)
    runs.set_state(other, runs.COMPLETED, project="stock")
    assert_one_line_error(cli("compare", TOY, two_runs[0].name, str(other)), "stock project", "not of")
    # Without a recorded project, the models folder it lies in tells.
    state = json.loads((other / runs.STATE_FILE).read_text())
    del state["project"]
    (other / runs.STATE_FILE).write_text(json.dumps(state))
    assert_one_line_error(cli("compare", TOY, two_runs[0].name, str(other)), "stock project")


def test_compare_and_tune_with_models_dir_a_file_are_one_line(
    two_runs, models_dir, cli, tmp_path, monkeypatch
):
    moved = tmp_path / "runs"
    shutil.move(models_dir, moved)
    models_dir.write_text("not a folder\n")
    paths = [str(moved / TOY / run.name) for run in two_runs]
    assert_one_line_error(cli("compare", TOY, *paths), "cannot write in", "MODELS_DIR", "--out")
    assert_one_line_error(cli("tune", "stock", "--trials", "1"), "cannot write in", "MODELS_DIR")
    assert models_dir.read_text() == "not a folder\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_compare_and_tune_with_a_read_only_models_dir_are_one_line(two_runs, models_dir, cli):
    os.chmod(models_dir, 0o555)
    os.chmod(models_dir / TOY, 0o555)
    try:
        names = [run.name for run in two_runs]
        assert_one_line_error(cli("compare", TOY, *names), "cannot write in", "Permission denied")
        assert_one_line_error(cli("tune", "stock", "--trials", "1"), "cannot write in", "Permission denied")
    finally:
        os.chmod(models_dir / TOY, 0o755)
        os.chmod(models_dir, 0o755)


# Locks: the operating system's, whatever process id a lock file names ----------------------------


def test_a_lock_file_naming_a_live_process_that_holds_no_lock_is_stale(interrupted, cli):
    """A killed trainer's .lock stays behind, and its process id may since name another process:
    only a process holding the lock holds the run."""
    runs.set_state(interrupted, runs.RUNNING)
    with subprocess.Popen(["sleep", "60"]) as other:
        try:
            (interrupted / runs.LOCK_FILE).write_text(f"{other.pid}\n")
            assert runs.lock_owner(interrupted) is None and runs.run_state(interrupted) == runs.INTERRUPTED
        finally:
            other.kill()
    with another_process_training(interrupted) as trainer:
        assert runs.run_state(interrupted) == runs.RUNNING
        assert_one_line_error(cli("train", TOY, "--resume", str(interrupted)), f"process {trainer.pid}")
    resumed = cli("train", TOY, "--resume", str(interrupted))
    assert resumed.code == 0, resumed.stderr
    assert runs.run_state(interrupted) == runs.COMPLETED
    assert not (interrupted / runs.LOCK_FILE).exists()


# Started together in separate processes, each waiting for the same file to appear: all of Keras and
# the training code imported first, so both reach the run at the same instant. Each committed epoch
# takes half a second more, so the one that trains still holds the run when the other arrives.
_RESUME_ON_SIGNAL = """
import sys, time
from pathlib import Path
import projects
projects.__path__.insert(0, sys.argv[1])
from common.keras_setup import quiet_keras_import
quiet_keras_import()
from common.training import checkpoints, steps
from common.__main__ import main
commit = checkpoints.RunRecorder.on_epoch_end
def slow_commit(self, done, logs=None):
    commit(self, done, logs)
    time.sleep(0.5)
checkpoints.RunRecorder.on_epoch_end = slow_commit
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
sys.exit(main(sys.argv[3:]))
"""


def test_two_resumes_of_one_run_at_once_train_it_once(interrupted, models_dir, capsys, monkeypatch):
    """The CLI twice at the same instant, in two threads of this process (each its own open lock
    file, as two processes have): one resumes the run, the other is refused in one line."""
    import threading

    from common.__main__ import main
    from common.training import checkpoints

    commit = checkpoints.RunRecorder.on_epoch_end

    def slow_commit(self, done, logs=None):
        commit(self, done, logs)
        time.sleep(0.3)  # The trainer still holds the run when the other arrives.

    monkeypatch.setattr(checkpoints.RunRecorder, "on_epoch_end", slow_commit)
    start, codes = threading.Barrier(2, timeout=60), []

    def resume() -> None:
        start.wait()
        codes.append(main(["-q", "train", TOY, "--resume", str(interrupted)]))

    other = threading.Thread(target=resume)
    other.start()
    resume()
    other.join(timeout=120)
    captured = capsys.readouterr()
    assert sorted(codes) == [0, 2]
    assert_one_line_error(CliResult(2, captured.out, captured.err), f"process {os.getpid()}")
    assert runs.run_state(interrupted) == runs.COMPLETED and not (interrupted / runs.LOCK_FILE).exists()
    epochs = [line.split(",")[0] for line in (interrupted / "history.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2", "3"]


def test_a_resume_that_gets_the_lock_after_another_completed_the_run_trains_nothing(
    interrupted, models_dir, cli, monkeypatch
):
    """Checked, then held up until another resume has completed the run and let go of it: the check
    is made again under the lock, so the run is not trained twice."""
    lock = runs.RunLock

    class LateLock(lock):
        def __enter__(self):
            runs.set_state(interrupted, runs.COMPLETED)  # what the other resume left
            return super().__enter__()

    monkeypatch.setattr(runs, "RunLock", LateLock)
    before = _files(interrupted)
    assert_one_line_error(cli("train", TOY, "--resume", str(interrupted)), "this run is completed")
    after = _files(interrupted)
    assert after.pop(runs.STATE_FILE) != before.pop(runs.STATE_FILE) and after == before


# Slow: two processes of TensorFlow.
@pytest.mark.slow
def test_two_simultaneous_resumes_of_one_run_train_it_once(interrupted, toy_project, models_dir, tmp_path):  # noqa: F811
    go = tmp_path / "go"
    command = [sys.executable, "-c", _RESUME_ON_SIGNAL, str(toy_project.parent), str(go)]
    command += ["-q", "train", TOY, "--resume", str(interrupted)]
    environment = {**os.environ, "MODELS_DIR": str(models_dir)}
    both = [
        subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    time.sleep(0.5)
    go.touch()
    results = []
    for process in both:
        stdout, stderr = process.communicate(timeout=120)
        results.append((process.pid, CliResult(process.returncode, stdout, stderr)))
    [(trainer, trained)] = [(pid, result) for pid, result in results if result.code == 0]
    [(_, refused)] = [(pid, result) for pid, result in results if result.code != 0]
    assert "Traceback" not in trained.stderr
    assert_one_line_error(refused, f"process {trainer}")
    assert runs.run_state(interrupted) == runs.COMPLETED and not (interrupted / runs.LOCK_FILE).exists()
    epochs = [line.split(",")[0] for line in (interrupted / "history.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2", "3"]
