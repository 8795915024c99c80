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
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common import runs
from common.backend import import_keras

keras = import_keras()

PROGRESS_FILE = "progress.json"
HISTORY_FILE = "history.csv"
_PARTIAL_PROGRESS = f".{PROGRESS_FILE}.partial"


def read_progress(run_dir: Path) -> dict | None:
    """The last committed epoch's record, after finishing or discarding a cut-off commit."""
    recover(run_dir)
    try:
        return json.loads((run_dir / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None


def recover(run_dir: Path) -> None:
    """Completes the commit that a kill cut short, or discards it if its record was not complete."""
    partial = run_dir / _PARTIAL_PROGRESS
    try:
        record = json.loads(partial.read_text())
        files = record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        record = None
    if record is not None:
        for name in files:
            staged = runs.partial_model_path(run_dir / name)
            if staged.exists():
                os.replace(staged, run_dir / name)
        os.replace(partial, run_dir / PROGRESS_FILE)
        runs.sync_folder(run_dir)
        _write_history(run_dir, record["history"])
        return
    partial.unlink(missing_ok=True)
    for name in (runs.LAST_CHECKPOINT, runs.BEST_CHECKPOINT):
        runs.partial_model_path(run_dir / name).unlink(missing_ok=True)


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
        self.best = resume_from["best"] if resume_from else math.inf
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
        files = [runs.LAST_CHECKPOINT]
        current = logs.get(self.monitor)
        improved = current is not None and current < self.best
        last = runs.partial_model_path(self.run_dir / runs.LAST_CHECKPOINT)
        self.model.save(last)
        if improved:
            # The same bytes: a second name for the file rather than a second save (a save is most of
            # a commit's cost). Later commits replace checkpoint-last by renaming a new file onto the
            # name, so the best checkpoint's file is never written again.
            files.append(runs.BEST_CHECKPOINT)
            _same_file(last, runs.partial_model_path(self.run_dir / runs.BEST_CHECKPOINT))
        for name in files:
            runs.fsync_file(runs.partial_model_path(self.run_dir / name))
        best = current if improved else self.best
        record = {
            "epoch": epoch,
            "epochs_done": epoch + 1,
            "finished": bool(self.model.stop_training) or epoch + 1 >= self.params.get("epochs", 0),
            "best": best if math.isfinite(best) else None,
            "history": history,
            "train_seconds": round(self.seconds_before + time.perf_counter() - self.started, 1),
            "files": files,
            "seed_states": [np.asarray(v.numpy()).tolist() for v in seed_variables(self.model)],
            "early_stopping": _early_stopping_state(self.early_stopping),
            "plateau": _plateau_state(self.plateau),
        }
        partial = self.run_dir / _PARTIAL_PROGRESS
        with open(partial, "w") as file:
            json.dump(record, file, allow_nan=False)
            file.flush()
            os.fsync(file.fileno())
        runs.sync_folder(self.run_dir)
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


def _write_history(run_dir: Path, history: list[dict]) -> None:
    if history:
        runs.write_bytes_atomically(
            pd.DataFrame(history).to_csv(index=False).encode(), run_dir / HISTORY_FILE
        )
