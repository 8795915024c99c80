"""Damaged run folders: a resume checks every file it reads before training and refuses a damaged
one in one line, leaving the run as it was; the runs table and compare show the readable runs and
name the unreadable one; a lock whose process id was reused is stale."""

from __future__ import annotations

import json
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest

from common import runs
from tests.conftest import assert_one_line_error
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
