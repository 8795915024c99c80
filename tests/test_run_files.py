"""The run folder's file primitives: atomic writes, folder syncs where the system allows them, and
the run's state record."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from common.core import files, registry, runs
from tests.conftest import another_process_training


def test_an_atomic_write_leaves_exactly_the_new_bytes_and_no_partial_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_bytes(b"old")
    files.write_bytes_atomically(b'{"a": 1}\n', target)
    assert target.read_bytes() == b'{"a": 1}\n'
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.json"]


def test_a_file_at_its_read_limit_is_read_whole_and_one_byte_over_is_refused_naming_the_limit(tmp_path):
    limit = 2**20
    at_limit, over = tmp_path / "at.json", tmp_path / "over.json"
    at_limit.write_bytes(b"x" * limit)
    over.write_bytes(b"x" * (limit + 1))
    assert files.read_regular_file(at_limit, limit) == b"x" * limit
    with pytest.raises(files.UnreadableFile, match=r"over\.json: over 1 MB, far larger than such a file is$"):
        files.read_regular_file(over, limit)


def test_a_folder_the_system_will_not_open_is_not_synced_and_the_write_lands(tmp_path, monkeypatch):
    """Some file systems (and Windows) refuse to open a folder: the write still lands."""
    refused, real_open = [], os.open

    def refuse_folders(path, flags, *args):
        if os.path.isdir(path):
            refused.append(path)
            raise PermissionError(errno.EACCES, "refused", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse_folders)
    files.write_bytes_atomically(b"new", tmp_path / "file")
    assert (tmp_path / "file").read_bytes() == b"new" and refused == [tmp_path]


def test_a_folder_the_system_will_not_fsync_is_skipped_and_the_write_lands(tmp_path, monkeypatch):
    folders, refused, real_open, real_fsync = set(), [], os.open, os.fsync

    def remember_folders(path, flags, *args):
        descriptor = real_open(path, flags, *args)
        if os.path.isdir(path):
            folders.add(descriptor)
        return descriptor

    def refuse_folder_fsync(descriptor):
        if descriptor in folders:
            refused.append(descriptor)
            raise OSError(errno.EINVAL, "refused")
        return real_fsync(descriptor)

    monkeypatch.setattr(os, "open", remember_folders)
    monkeypatch.setattr(os, "fsync", refuse_folder_fsync)
    files.write_bytes_atomically(b"new", tmp_path / "file")
    assert (tmp_path / "file").read_bytes() == b"new" and len(refused) == 1


def test_the_state_record_keeps_earlier_keys_and_drops_an_old_message(tmp_path):
    runs.set_state(tmp_path, runs.FAILED, message="diverged at epoch 3", epoch=3)
    runs.set_state(tmp_path, runs.INTERRUPTED, signal="SIGTERM")
    record = json.loads((tmp_path / runs.STATE_FILE).read_text())
    assert record["state"] == runs.INTERRUPTED and record["signal"] == "SIGTERM" and record["epoch"] == 3
    assert "message" not in record
    assert runs.read_state(tmp_path) == record


def test_strict_json_writes_a_path_as_its_text_and_refuses_other_objects(tmp_path):
    from pathlib import Path

    import pytest

    data = {"model": Path("models/run/model.keras"), "n_test": 3, "ratio": 0.5, "names": ["a", None]}
    assert files.strict_json(data, sort_keys=True) == (
        '{"model": "models/run/model.keras", "n_test": 3, "names": ["a", null], "ratio": 0.5}'
    )
    files.write_json(data, tmp_path / "metrics.json")
    assert json.loads((tmp_path / "metrics.json").read_text()) == {
        "model": "models/run/model.keras", "n_test": 3, "ratio": 0.5, "names": ["a", None],
    }  # fmt: skip
    with pytest.raises(TypeError, match="^cannot write object to JSON$"):
        files.strict_json({"other": object()})


def test_describe_model_names_the_shipped_the_promoted_and_any_other_model(models_dir):
    shipped = runs.pretrained_dir("mnist") / "model.keras"
    data = runs.read_metrics(shipped.parent)["data_source"]
    assert runs.describe_model(registry.get_project("mnist"), shipped) == [
        f"shipped model: models/pretrained/mnist/model.keras (data: {data}; recorded test_accuracy 0.9950)"
    ]
    assert runs.describe_model(registry.get_project("mnist"), shipped, chosen_by_default=True)[0].startswith(
        "shipped model (no run promoted): models/pretrained/mnist/model.keras ("
    )
    run = models_dir / "mnist" / "mine"
    run.mkdir(parents=True)
    (run / runs.METRICS_FILE).write_text('{"test_accuracy": 0.5}')
    assert runs.describe_model(registry.get_project("mnist"), run / "model.keras") == [
        f"model: {run / 'model.keras'} (recorded test_accuracy 0.5000)"
    ]
    # A model file beside the shipped folder (its path sorts after it) is no shipped model either.
    beside = runs.pretrained_dir("mnist").parent / "zz-other" / "model.keras"
    assert runs.describe_model(registry.get_project("mnist"), beside) == [
        "model: models/pretrained/zz-other/model.keras"
    ]
    runs.promote("mnist", run)
    assert runs.describe_model(registry.get_project("mnist"), run / "model.keras") == [
        f"promoted model: {run / 'model.keras'} (recorded test_accuracy 0.5000)"
    ]


def _take_the_lock_in_rounds(folder: str, rounds: int, start, done, wins) -> None:
    """One of several takers (processes or threads, each with its own open file) that try in each
    round, all at the same instant, to lock the same run folder; a winner holds the lock until
    every taker has tried, then lets it go before the next round."""
    from common.core.errors import UserError

    try:
        for round_ in range(rounds):
            start.wait()
            try:
                with runs.RunLock(Path(folder)):
                    wins.put(round_)
                    done.wait()
            except UserError:
                done.wait()
    except BaseException as error:  # noqa: BLE001 - reported to the test, which fails on it
        wins.put(f"{type(error).__name__}: {error}")


@pytest.mark.parametrize("takers", ["processes", "threads"])
def test_exactly_one_of_many_simultaneous_takers_gets_the_run_lock_every_time(takers, tmp_path):
    """Two trainers at once on one run: one of them trains, every time, whoever comes first. (A lock
    file found created but its process id not yet written was taken for stale and deleted, and
    both trained.)"""
    import multiprocessing
    import queue
    import threading

    count, rounds = 6, 100
    if takers == "processes":
        context = multiprocessing.get_context("spawn")  # no copy of this process's threads
        start, done, wins = (
            context.Barrier(count, timeout=60),
            context.Barrier(count, timeout=60),
            context.Queue(),
        )
        workers = [
            context.Process(target=_take_the_lock_in_rounds, args=(str(tmp_path), rounds, start, done, wins))
            for _ in range(count)
        ]
    else:
        start, done, wins = (
            threading.Barrier(count, timeout=60),
            threading.Barrier(count, timeout=60),
            queue.Queue(),
        )
        workers = [
            threading.Thread(target=_take_the_lock_in_rounds, args=(str(tmp_path), rounds, start, done, wins))
            for _ in range(count)
        ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    won = []
    while True:
        try:
            won.append(wins.get(timeout=1))
        except queue.Empty:
            break
    assert [item for item in won if isinstance(item, str)] == []
    assert sorted(won) == list(range(rounds)), "each round exactly one winner"
    assert not (tmp_path / runs.LOCK_FILE).exists()


def test_a_lock_file_nobody_holds_is_no_lock_whatever_process_id_it_names(tmp_path):
    """A killed trainer leaves its .lock (it cannot remove it) but never the lock: the system drops
    that with the process. The process id written in the file, alive or not, decides nothing."""
    import subprocess

    with subprocess.Popen(["sleep", "60"]) as alive:
        try:
            for written in ("", "garbage", f"{alive.pid}", "1", f"{os.getpid()}"):
                (tmp_path / runs.LOCK_FILE).write_text(written + "\n")
                assert runs.lock_owner(tmp_path) is None, written
                with runs.RunLock(tmp_path):
                    assert (tmp_path / runs.LOCK_FILE).read_text() == f"{os.getpid()}\n"
                    assert runs.lock_owner(tmp_path) == os.getpid()
                assert not (tmp_path / runs.LOCK_FILE).exists() and runs.lock_owner(tmp_path) is None
        finally:
            alive.kill()


def test_a_held_lock_is_refused_in_one_line_naming_its_process_and_left_alone(tmp_path):
    from common.core.errors import UserError

    with another_process_training(tmp_path) as holder:
        assert runs.lock_owner(tmp_path) == holder.pid
        with pytest.raises(UserError) as refused:
            runs.RunLock(tmp_path).__enter__()
        assert str(refused.value) == (
            f"{tmp_path} is being trained by process {holder.pid}; wait for it or stop it first"
        )
        assert (tmp_path / runs.LOCK_FILE).read_text() == f"{holder.pid}\n"  # not taken
    # Killed, it no longer holds the run (its file is left behind).
    assert (tmp_path / runs.LOCK_FILE).exists() and runs.lock_owner(tmp_path) is None
    with runs.RunLock(tmp_path):
        assert runs.lock_owner(tmp_path) == os.getpid()
        # Within one process too: a second lock (another thread's) is refused, never taken over.
        with pytest.raises(UserError, match=f"process {os.getpid()}; "):
            runs.RunLock(tmp_path).__enter__()
        assert runs.lock_owner(tmp_path) == os.getpid()  # the refused try released nothing
    assert runs.lock_owner(tmp_path) is None


def _progress(**changes):
    """A progress record as a run writes it after 2 of 4 epochs, with ``changes``."""
    record = {
        "epoch": 1,
        "epochs_done": 2,
        "finished": False,
        "best": 0.5,
        "history": [{"epoch": 0, "loss": 0.9, "val_loss": 0.6}, {"epoch": 1, "loss": 0.7, "val_loss": 0.5}],
        "train_seconds": 3.5,
        "files": ["checkpoint-last.keras"],
        "seed_states": [[1, 2]],
        "early_stopping": {"wait": 0, "best": 0.5, "best_epoch": 1},
        "plateau": None,
    }
    record.update(changes)
    return record


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"epochs_done": 0}, "epochs_done is 0, not a count of epochs"),
        ({"epochs_done": True}, "epochs_done is True, not a count of epochs"),
        ({"epochs_done": 10**7 + 1}, "epochs_done is 10000001, not a count of epochs"),
        ({"epochs_done": 5, "epoch": 4}, "epochs_done is 5, more than the run's 4 epochs (train.epochs)"),
        ({"epoch": 0}, "epoch is 0 but epochs_done is 2"),
        ({"history": {"0": {}}}, "its history has dict rows for 2 epochs done"),
        ({"history": [{"epoch": 0, "loss": 0.9}]}, "its history has 1 rows for 2 epochs done"),
        ({"history": [{"epoch": 0}, {"epoch": 2}]}, "row 1 of its history is not epoch 1's"),
        ({"history": [{"epoch": 0}, "row"]}, "row 1 of its history is not epoch 1's"),
        ({"history": [{"epoch": 0, "loss": None}, {"epoch": 1}]}, "row 0 of its history holds a value"),
        (
            {"history": [{"epoch": 0}, {"epoch": 1, "loss": float("nan")}]},
            "row 1 of its history holds a value",
        ),
        ({"finished": 1}, "finished is 1, not true or false"),
        ({"best": float("inf")}, "best or train_seconds is not a finite number"),
        ({"best": "0.5"}, "best or train_seconds is not a finite number"),
        ({"train_seconds": None}, "best or train_seconds is not a finite number"),
        ({"train_seconds": -1.0}, "train_seconds is negative"),
        ({"seed_states": [1, 2]}, "seed_states is not a list of seed states"),
        ({"seed_states": "x"}, "seed_states is not a list of seed states"),
        ({"early_stopping": {"wait": -1, "best": 0.5, "best_epoch": 1}}, "early_stopping is not the state"),
        ({"early_stopping": {"wait": 0, "best": 0.5}}, "early_stopping is not the state of its callback"),
        ({"plateau": {"wait": 0, "best": 0.5, "cooldown_counter": 0.5}}, "plateau is not the state"),
        ({"plateau": []}, "plateau is not the state of its callback"),
    ],
)
def test_each_kind_of_damaged_progress_record_is_named(changes, problem):
    from common.training import checkpoints

    found = checkpoints.progress_problem(_progress(**changes), epochs=4)
    assert found is not None and found.startswith(problem), found


def test_a_progress_record_as_a_run_writes_it_has_no_problem():
    from common.training import checkpoints

    assert checkpoints.progress_problem(_progress(), epochs=4) is None
    assert checkpoints.progress_problem(_progress(), epochs=2) is None  # done exactly at the end
    assert checkpoints.progress_problem(_progress(), epochs=None) is None
    plateau = {"wait": 1, "best": None, "cooldown_counter": 0}
    assert checkpoints.progress_problem(_progress(plateau=plateau, best=None), epochs=4) is None
    assert checkpoints.progress_problem([], epochs=4) == "holds a JSON list, not a progress record"
