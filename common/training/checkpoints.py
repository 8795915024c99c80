"""Per-epoch checkpoints that a kill at any instant leaves resumable, and the state a resumed
run needs to go on exactly as the uninterrupted run would have.

At the end of every epoch :class:`RunRecorder` writes, as one commit:

- ``checkpoint-last.keras``: weights and optimizer state (its step count, moments and learning
  rate, which a ``CosineDecay`` schedule is computed from);
- ``checkpoint-best.keras`` when validation loss improved;
- ``progress.json``: the epoch, the history so far, the best value and wait counts of early
  stopping, of the best checkpoint and of the plateau schedule, and the state of every random
  seed generator in the model (dropout, augmentation), which ``.keras`` files do not keep;
- ``history.csv``, rebuilt from ``progress.json``, so each epoch appears exactly once.

The commit is a small write-ahead protocol: every new file is first written as a ``.partial``
file and flushed to disk; ``.progress.json.partial`` is written last, naming them; then they are
renamed into place and ``progress.json`` last. :func:`recover` finishes a commit whose progress
record was complete when the process died, and discards one whose record was not. So the files
on disk always belong to one epoch.

:func:`safe_run_folder` is the one seam training goes through: the run folder's lock, a resume's
checks and how a failure leaves the folder, around the five steps. Before a resume reads any of
it, :func:`check_resume_files` checks it all, so a damaged file is
one line and the run is left as it was. When training stops early, :func:`after_failure` leaves
the folder truthful (interrupted and resumable, failed when the loss diverged, or removed when
nothing was committed) and :func:`as_user_error` says so in one line.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import keras
import numpy as np
import pandas as pd

from common.core import commands, files, runs
from common.core.config import Config
from common.core.errors import Interrupted, UserError

if TYPE_CHECKING:
    from common.core.project import Project

PROGRESS_FILE = "progress.json"
HISTORY_FILE = "history.csv"
_PARTIAL_PROGRESS = f".{PROGRESS_FILE}.partial"
_STAGED_HISTORY = f".{HISTORY_FILE}.partial"


def read_progress(run_dir: Path) -> dict | None:
    """The last committed epoch's record, after finishing or discarding a cut-off commit; ``None``
    when no epoch was committed.

    Raises:
        files.UnreadableFile: ``progress.json`` cannot be read, is not strict JSON or not a record
            a run writes (see :func:`progress_problem`).
    """
    recover(run_dir)
    path = run_dir / PROGRESS_FILE
    if not path.exists() and not path.is_symlink():
        return None
    record = files.load_json(path)
    problem = progress_problem(record)
    if problem is not None:
        raise files.UnreadableFile(f"{path}: {problem}")
    return record


def recover(run_dir: Path) -> None:
    """Completes the commit that a kill cut short, or discards it if its record was not complete."""
    partial = run_dir / _PARTIAL_PROGRESS
    try:
        record = files.load_json(partial) or None
    except files.UnreadableFile:
        record = None
    if record is not None and (
        progress_problem(record) is not None
        or not isinstance(record.get("files"), list)
        or not set(record["files"]) <= {runs.LAST_CHECKPOINT, runs.BEST_CHECKPOINT}
    ):
        record = None  # Not a whole record of a commit: discarded as a torn one.
    if record is not None:
        # The history table is staged before the record is applied, so that once progress.json
        # is in place a whole history for it is on disk too, even if a kill stops the rename.
        history = _stage_history(run_dir, record["history"])
        for name in record["files"]:
            staged = files.partial_model_path(run_dir / name)
            if staged.exists():
                os.replace(staged, run_dir / name)
        os.replace(partial, run_dir / PROGRESS_FILE)
        files.sync_folder(run_dir)
        if history is not None:
            os.replace(history, run_dir / HISTORY_FILE)
            files.sync_folder(run_dir)
        return
    if partial.is_file() or partial.is_symlink():
        partial.unlink()
    _finish_history(run_dir)
    for name in (runs.LAST_CHECKPOINT, runs.BEST_CHECKPOINT):
        staged = files.partial_model_path(run_dir / name)
        if staged.is_file() or staged.is_symlink():
            staged.unlink()


# An epoch count no training reaches; a larger one in progress.json is damage, not progress.
MAX_EPOCHS = 10**7


def progress_problem(record: Any, epochs: int | None = None) -> str | None:
    """What is wrong with a ``progress.json`` record, or ``None`` when it is one a run writes:
    its types, the epoch counts within ``1..epochs`` (the run's ``train.epochs``, when given),
    the history one row per epoch done, numbers finite."""

    def number(value: Any, none: bool = True) -> bool:
        if value is None:
            return none
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    def count(value: Any) -> TypeGuard[int]:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_EPOCHS

    if not isinstance(record, dict):
        return f"holds a JSON {type(record).__name__}, not a progress record"
    done = record.get("epochs_done")
    if not count(done) or done < 1:
        return f"epochs_done is {done!r}, not a count of epochs"
    if epochs is not None and done > epochs:
        return f"epochs_done is {done}, more than the run's {epochs} epochs (train.epochs)"
    if record.get("epoch", done - 1) != done - 1:
        return f"epoch is {record.get('epoch')!r} but epochs_done is {done}"
    history = record.get("history")
    if not isinstance(history, list) or len(history) != done:
        rows = len(history) if isinstance(history, list) else type(history).__name__
        return f"its history has {rows} rows for {done} epochs done"
    for index, row in enumerate(history):
        if not isinstance(row, dict) or row.get("epoch") != index:
            return f"row {index} of its history is not epoch {index}'s"
        if not all(isinstance(key, str) and number(value, none=False) for key, value in row.items()):
            return f"row {index} of its history holds a value that is not a finite number"
    if not isinstance(record.get("finished", False), bool):
        return f"finished is {record.get('finished')!r}, not true or false"
    if not number(record.get("best")) or not number(record.get("train_seconds", 0.0), none=False):
        return "best or train_seconds is not a finite number"
    if record.get("train_seconds", 0.0) < 0:
        return "train_seconds is negative"
    seeds = record.get("seed_states", [])
    if not isinstance(seeds, list) or not all(isinstance(seed, list) for seed in seeds):
        return "seed_states is not a list of seed states"
    counts = {"early_stopping": ("wait", "best_epoch"), "plateau": ("wait", "cooldown_counter")}
    for key, fields in counts.items():
        saved = record.get(key)
        if saved is None:
            continue
        if (
            not isinstance(saved, dict)
            or not number(saved.get("best"))
            or not all(count(saved.get(field)) for field in fields)
        ):
            return f"{key} is not the state of its callback"
    return None


def seed_variables(model: keras.Model) -> list:
    """The state variables of the model's random seed generators (dropout, augmentation)."""
    return [variable for variable in model.variables if "seed_generator_state" in variable.path]


class RunRecorder(keras.callbacks.Callback):
    """Commits a resumable checkpoint at the end of every epoch and restores one at the start.

    Args:
        run_dir: the run folder.
        monitor: the value whose minimum makes the best checkpoint (``val_loss``).
        early_stopping: the run's ``EarlyStopping`` callback, if any, listed *before* this one so
            its state is saved after it has seen the epoch.
        plateau: the run's ``ReduceLROnPlateau`` callback, if any, listed before this one too.
        resume_from: a committed ``progress.json`` record to continue from, or ``None``.
    """

    def __init__(
        self,
        run_dir: Path,
        monitor: str = "val_loss",
        early_stopping: keras.callbacks.EarlyStopping | None = None,
        plateau: keras.callbacks.ReduceLROnPlateau | None = None,
        resume_from: dict | None = None,
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.monitor = monitor
        self.early_stopping = early_stopping
        self.plateau = plateau
        self.resume_from = resume_from
        self.history: list[dict] = list(resume_from["history"]) if resume_from else []
        best = resume_from.get("best") if resume_from else None
        self.best = best if best is not None else math.inf
        self.diverged_epoch: int | None = None
        self.seconds_before = resume_from.get("train_seconds", 0.0) if resume_from else 0.0
        self.started = time.perf_counter()

    def on_train_begin(self, logs: dict | None = None) -> None:
        # Runs after the callbacks listed before it have reset themselves for a new fit.
        self.started = time.perf_counter()
        record = self.resume_from
        if record is None:
            return
        for variable, value in zip(seed_variables(self.model), record["seed_states"]):
            variable.assign(np.asarray(value, dtype=variable.dtype))
        if self.early_stopping is not None and record.get("early_stopping"):
            saved = record["early_stopping"]
            stopping = self.early_stopping
            stopping.wait, stopping.best, stopping.best_epoch = (
                saved["wait"],
                saved["best"],
                saved["best_epoch"],
            )
            if stopping.restore_best_weights and (self.run_dir / runs.BEST_CHECKPOINT).is_file():
                best = keras.saving.load_model(self.run_dir / runs.BEST_CHECKPOINT, compile=False)
                stopping.best_weights = best.get_weights()
        if self.plateau is not None and record.get("plateau"):
            saved = record["plateau"]
            self.plateau.best, self.plateau.wait = saved["best"], saved["wait"]
            self.plateau.cooldown_counter = saved["cooldown_counter"]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        if not all(math.isfinite(float(value)) for value in logs.values()):
            # The loss turned NaN or infinite: keep the last good commit; the run fails.
            self.diverged_epoch = epoch
            self.model.stop_training = True
            return
        row = {"epoch": epoch, **{key: float(value) for key, value in logs.items()}}
        history = [*self.history, row]
        saved = [runs.LAST_CHECKPOINT]
        current = logs.get(self.monitor)
        improved = current is not None and current < self.best
        last = files.partial_model_path(self.run_dir / runs.LAST_CHECKPOINT)
        self.model.save(last)
        if improved:
            # The same bytes: a second name for the file rather than a second save (a save is most of
            # a commit's cost). Later commits replace checkpoint-last by renaming a new file onto the
            # name, so the best checkpoint's file is never written again.
            saved.append(runs.BEST_CHECKPOINT)
            _same_file(last, files.partial_model_path(self.run_dir / runs.BEST_CHECKPOINT))
        for name in saved:
            files.fsync_file(files.partial_model_path(self.run_dir / name))
        best = current if improved else self.best
        record = {
            "epoch": epoch,
            "epochs_done": epoch + 1,
            "finished": bool(self.model.stop_training) or epoch + 1 >= self.params.get("epochs", 0),
            "best": best if best is not None and math.isfinite(best) else None,
            "history": history,
            "train_seconds": round(self.seconds_before + time.perf_counter() - self.started, 1),
            "files": saved,
            "seed_states": [np.asarray(v.numpy()).tolist() for v in seed_variables(self.model)],
            "early_stopping": _early_stopping_state(self.early_stopping),
            "plateau": _plateau_state(self.plateau),
        }
        partial = self.run_dir / _PARTIAL_PROGRESS
        with open(partial, "w") as file:
            json.dump(record, file, allow_nan=False)
            file.flush()
            os.fsync(file.fileno())
        files.sync_folder(self.run_dir)
        self.history, self.best = history, best
        recover(self.run_dir)


def _same_file(source: Path, target: Path) -> None:
    """``target`` becomes a hard link to ``source``, or a copy where links are not supported."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _early_stopping_state(callback: Any) -> dict | None:
    if callback is None:
        return None
    return {"wait": callback.wait, "best": _number(callback.best), "best_epoch": callback.best_epoch}


def _plateau_state(callback: Any) -> dict | None:
    if callback is None:
        return None
    return {
        "best": _number(callback.best),
        "wait": callback.wait,
        "cooldown_counter": callback.cooldown_counter,
    }


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _history_table(history: list[dict]) -> bytes:
    """``history.csv``'s bytes: one row per epoch, as ``progress.json`` records them."""
    return pd.DataFrame(history).to_csv(index=False).encode()


def _write_history(run_dir: Path, history: list[dict]) -> None:
    if history:
        files.write_bytes_atomically(_history_table(history), run_dir / HISTORY_FILE)


def _stage_history(run_dir: Path, history: list[dict]) -> Path | None:
    """The history table of a commit, written and flushed beside ``history.csv`` under
    ``_STAGED_HISTORY``, ready to be renamed into place; ``None`` for an empty history."""
    if not history:
        return None
    staged = run_dir / _STAGED_HISTORY
    with open(staged, "wb") as file:
        file.write(_history_table(history))
        file.flush()
        os.fsync(file.fileno())
    return staged


def _finish_history(run_dir: Path) -> None:
    """After a kill between a commit's progress.json and its history table: the table is
    written again from progress.json, whose history it is, and the staged copy removed."""
    staged = run_dir / _STAGED_HISTORY
    if not staged.is_file():
        return
    try:
        record = files.load_json(run_dir / PROGRESS_FILE)
    except (files.UnreadableFile, FileNotFoundError):
        record = None
    if isinstance(record, dict) and progress_problem(record) is None:
        _write_history(run_dir, record["history"])
    staged.unlink(missing_ok=True)


# What a resume reads, checked before it reads it; how a run that stops early is left.


def check_resume_files(project: Project, run_dir: Path, config: Config) -> dict | None:
    """The committed progress record of a run to resume (``None``: no epoch was committed, so it
    starts from the first), after checking everything the resume will read: ``progress.json``
    (strict JSON, its types, its epochs within the config's), ``history.csv`` (one row per epoch
    done), the last checkpoint (it loads, its seed generators are the record's) and the best
    checkpoint when early stopping restores it.

    Raises:
        UserError: one line naming the damaged file and what can be done instead.
    """
    from common.serving.loading import load_model_file  # Keras' loader with its safety checks.

    last, best = run_dir / runs.LAST_CHECKPOINT, run_dir / runs.BEST_CHECKPOINT

    def damaged(problem: str) -> UserError:
        if any(runs.archive_problem(path) is None for path in (last, best)):
            start = runs.continuation_model(run_dir, announce=False)
            advice = (
                f"start a new run from its {start.name} with `python -m common train {project.name} "
                f"--continue-from {run_dir}`, or delete the folder"
            )
        else:
            advice = f"no checkpoint in it can be loaded: delete the folder and train {project.name} anew"
        return UserError(f"--resume {run_dir}: cannot resume: {problem}; the run is left as it was; {advice}")

    try:
        progress = read_progress(run_dir)
    except files.UnreadableFile as error:
        raise damaged(str(error)) from None
    if progress is None:
        if last.exists():
            raise damaged(f"{run_dir / PROGRESS_FILE} is missing beside its {last.name}")
        return None
    problem = progress_problem(progress, config.train.epochs)
    if problem is not None:
        raise damaged(f"{run_dir / PROGRESS_FILE}: {problem}")
    history_file = run_dir / HISTORY_FILE
    try:
        history = pd.read_csv(io.BytesIO(files.read_small_file(history_file)))
        epochs = [int(epoch) for epoch in history["epoch"]]
    except FileNotFoundError:
        raise damaged(f"{history_file} is missing") from None
    except files.UnreadableFile as error:
        raise damaged(str(error)) from None
    except (ValueError, KeyError, TypeError, pd.errors.ParserError) as error:
        raise damaged(f"{history_file}: not a history table ({' '.join(str(error).split())[:200]})") from None
    if epochs != list(range(progress["epochs_done"])):
        raise damaged(
            f"{history_file} holds {len(epochs)} epochs, but {PROGRESS_FILE} records "
            f"{progress['epochs_done']} done"
        )
    try:
        model = load_model_file(last)
    except UserError as error:
        raise damaged(str(error) if str(last) in str(error) else f"{last}: {error}") from None
    shapes = [tuple(variable.shape) for variable in seed_variables(model)]
    saved = [np.shape(state) for state in progress.get("seed_states", [])]
    if saved != shapes:
        raise damaged(f"the seed states in {PROGRESS_FILE} do not fit the model in {last.name}")
    del model
    if config.train.early_stopping_patience > 0:
        try:
            load_model_file(best, compile=False)
        except UserError as error:
            raise damaged(str(error) if str(best) in str(error) else f"{best}: {error}") from None
    return progress


class Diverged(Exception):
    """The loss became NaN or infinite."""

    def __init__(self, epoch: int) -> None:
        super().__init__(epoch)
        self.epoch = epoch


def after_failure(project: Project, run_dir: Path, error: BaseException, resuming: bool) -> None:
    """Leaves the run folder truthful: failed when its loss diverged (resuming would only diverge
    again); otherwise resumable once an epoch is committed (an interrupt, a write error, a bug
    fixed later: its committed files are still whole); removed when a new run has nothing of
    value in it."""
    committed = (run_dir / PROGRESS_FILE).is_file()
    if not committed and not resuming:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    try:
        if isinstance(error, Diverged):
            runs.set_state(run_dir, runs.FAILED, message=_reason(error))
        else:
            runs.set_state(run_dir, runs.INTERRUPTED, message=_reason(error))
    except OSError:
        pass  # A full disk may refuse even this; the dead lock then reads as interrupted.


def _reason(error: BaseException) -> str:
    if isinstance(error, Diverged):
        return f"loss became NaN or infinite in epoch {error.epoch + 1}"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return str(error) or type(error).__name__


def as_user_error(project: Project, run_dir: Path, error: BaseException) -> BaseException:
    """The one line a failure is reported with (bugs keep their traceback)."""
    # As the user can run it: `make train-NAME ARGS=...` when make started the training.
    resume = commands.command_line("train", project.name, ["--resume", str(run_dir)])
    if isinstance(error, KeyboardInterrupt):
        if (run_dir / PROGRESS_FILE).is_file():
            return Interrupted(f"training interrupted; 'latest' is unchanged. Continue with: {resume}")
        return Interrupted("training interrupted before its first epoch ended; nothing was kept")
    if isinstance(error, Diverged):
        return UserError(
            f"training diverged: the loss became NaN or infinite in epoch {error.epoch + 1}; the run is "
            "marked failed and 'latest' is unchanged. Lower train.learning_rate and train again"
        )
    if isinstance(error, OSError):
        where = error.filename or run_dir
        kept = f"; once fixed, continue with: {resume}" if (run_dir / PROGRESS_FILE).is_file() else ""
        return UserError(f"could not write {where}: {error.strerror or error}{kept}")
    return error


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """``kill PID`` (SIGTERM) stops training like Ctrl-C: the run is left resumable."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class SafeRun:
    """A run folder held by this process: where the training writes, and where it starts."""

    run_dir: Path
    progress: dict | None  # The committed record of a run being resumed; None for a new run.
    continue_from: Path | None  # A completed run whose weights a new run starts from.


@contextmanager
def safe_run_folder(
    project: Project,
    config: Config,
    run_name: str | None = None,
    resume_dir: Path | None = None,
    continue_from: Path | None = None,
    on_failure: Callable[[], None] | None = None,
) -> Iterator[SafeRun]:
    """Everything that keeps a training's run folder truthful, around the training, in one place.

    Before the block: the folder to resume is checked, or a new one made (its name checked
    first), and its lock taken, so no second trainer writes into it; what a resume will read is
    checked before anything is written; a new run's config is saved and the state says running.
    During it: ``kill PID`` stops the training as Ctrl-C does. After a failure: the folder is left
    interrupted (resumable), failed, or removed when nothing of value was in it, and the failure
    is raised again as the one line :func:`as_user_error` words.
    """
    if resume_dir is not None:
        run_dir = runs.check_resumable(project.name, resume_dir)
    else:
        runs.check_run_name(run_name)
        if continue_from is not None:
            continue_from = runs.check_continuable(project.name, continue_from)
        run_dir = runs.new_run_dir(project.name, run_name)
    with runs.RunLock(run_dir), terminate_as_interrupt():
        if resume_dir is not None:
            runs.check_resumable(project.name, resume_dir, locked=True)
        # What a resume reads is checked before anything is written: a damaged file is one line,
        # and the run is left exactly as it was, resumable or continuable.
        progress = check_resume_files(project, run_dir, config) if resume_dir is not None else None
        try:
            if resume_dir is None:
                config.save(run_dir / runs.CONFIG_FILE)
                files.write_json(config.record(), run_dir / runs.SOURCES_FILE)
            runs.set_state(run_dir, runs.RUNNING, project=project.name, pid=os.getpid())
            yield SafeRun(run_dir, progress, continue_from)
        except BaseException as error:
            if on_failure is not None:
                on_failure()
            after_failure(project, run_dir, error, resuming=resume_dir is not None)
            raise as_user_error(project, run_dir, error) from None
