"""The one place training is driven: build → compile → fit → save → evaluate, and serving.

Projects supply data, model and evaluation; everything here is shared, so all pipelines get the
same run folders, checkpoints, logs, early stopping and plots.
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from common import checkpoints, devices, distill, files, plots, runs, tracking
from common.backend import import_keras
from common.batches import ShuffledBatches
from common.config import Config, training_seed
from common.data import FileList, Splits
from common.errors import Interrupted, UserError
from common.inference import load_model_file
from common.project import Project

# Every module that needs Keras imports it after this one, so its start-up lines are filtered once.
if TYPE_CHECKING:
    import keras
else:
    keras = import_keras()

log = logging.getLogger(__name__)


def resolve_config(
    project: Project, config_file: str | None = None, overrides: list[str] | None = None
) -> Config:
    """The project's defaults, an optional variant file, then ``--set`` overrides, validated."""
    return project.load_config(config_file, overrides)


def check_keras_names(config: Config) -> None:
    """Checks that Keras knows ``train.loss`` and every ``train.metrics`` name, and that the
    optimizer takes the options set, before any data is read (the optimizer and schedule names
    are checked with the rest of the config)."""
    try:
        keras.losses.get(config.train.loss)
    except (ValueError, TypeError):
        raise UserError(
            f"config key 'train.loss': Keras knows no loss {config.train.loss!r}; use a name such as "
            "'sparse_categorical_crossentropy', 'categorical_crossentropy', 'mse' or 'huber'"
        ) from None
    for name in config.train.metrics:
        try:
            keras.metrics.get(name)
        except (ValueError, TypeError):
            raise UserError(
                f"config key 'train.metrics': Keras knows no metric {name!r}; use names such as "
                "'accuracy', 'mae' or 'mse'"
            ) from None
    optimizer_options(config)


# Optional ``[train]`` keys passed to the optimizer when set (a project's config.toml may lack
# them), each with the value that leaves them off: Keras' SGD then is plain gradient descent.
OPTIMIZER_OPTIONS = {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0}


def optimizer_options(config: Config) -> dict[str, Any]:
    """The ``train.momentum``, ``train.nesterov`` and ``train.weight_decay`` that are set (not
    off), checked against what the optimizer accepts: Adam has no momentum, for one."""
    train = config.train
    options = {
        key: train[key] for key, off in OPTIMIZER_OPTIONS.items() if key in train and train[key] != off
    }
    if not options:
        return options
    optimizer_class = type(keras.optimizers.get(train.optimizer.lower()))
    accepted = inspect.signature(optimizer_class.__init__).parameters
    for key in options:
        if key not in accepted:
            raise UserError(
                f"config key 'train.{key}': the {train.optimizer} optimizer takes no {key}; "
                f"leave it at {OPTIMIZER_OPTIONS[key]!r} or choose an optimizer that has it, such as sgd"
            )
    return options


def compile_model(model: keras.Model, config: Config, steps_per_epoch: int) -> None:
    """Compiles with the optimizer, learning rate (or schedule), loss and metrics of ``[train]``.

    The cosine schedule is a ``keras.optimizers.schedules.CosineDecay`` over every training step:
    it is saved with the optimizer, so a resumed run continues it from its step count.
    """
    train = config.train
    learning_rate: Any = train.learning_rate
    if train.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            train.learning_rate, decay_steps=max(1, train.epochs * steps_per_epoch)
        )
    optimizer = keras.optimizers.get(
        {
            "class_name": train.optimizer.lower(),
            "config": {"learning_rate": learning_rate, **optimizer_options(config)},
        }
    )
    model.compile(optimizer=optimizer, loss=train.loss, metrics=list(train.metrics))


def _callbacks(
    config: Config, run_dir: Path, resume_from: dict | None, project_name: str = ""
) -> list[keras.callbacks.Callback]:
    """Early stopping and the plateau schedule first, then the recorder that saves their state."""
    train = config.train
    early_stopping = plateau = None
    callbacks: list[keras.callbacks.Callback] = []
    if train.early_stopping_patience > 0:
        early_stopping = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=train.early_stopping_patience, restore_best_weights=True
        )
        callbacks.append(early_stopping)
    if train.lr_schedule == "plateau":
        # A config may set the factor and patience; by default the rate halves after half the
        # early-stopping patience (at least two epochs) without a better validation loss.
        factor = train.plateau_factor if "plateau_factor" in train else 0.5
        patience = train.plateau_patience if "plateau_patience" in train else 0
        plateau = keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=factor, patience=patience or max(2, train.early_stopping_patience // 2)
        )
        callbacks.append(plateau)
    callbacks.append(
        checkpoints.RunRecorder(
            run_dir, early_stopping=early_stopping, plateau=plateau, resume_from=resume_from
        )
    )
    if train.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=run_dir / "logs"))
    if tracking.enabled(config):
        callbacks.append(tracking.MLflowLogger(project_name, config, run_dir))
    return callbacks


def train(
    project: Project,
    config: Config,
    run_name: str | None = None,
    resume_dir: Path | None = None,
    verbose: int | None = None,
    continue_from: Path | None = None,
) -> Path:
    """Trains a project's model and writes a complete run folder; returns its path.

    Args:
        project: the discovered project.
        config: the resolved settings (saved into the run folder).
        run_name: optional suffix for the run folder's name.
        resume_dir: an interrupted run folder to continue exactly where it stopped.
        verbose: passed to ``model.fit``; by default a progress bar on a terminal and one
            line per epoch in a log file.
        continue_from: a completed run whose final weights a new run starts from (with a fresh
            optimizer and schedule, as ``config`` says).

    Raises:
        UserError: one line for anything the user can fix; the run folder is then marked
            interrupted (resumable), failed, or removed when nothing of value was in it.
    """
    devices.check(config)
    check_keras_names(config)
    tracking.check_available(config)
    config = distill.pin_teacher(project, config)
    if resume_dir is not None:
        run_dir = runs.check_resumable(project.name, resume_dir)
    else:
        runs.check_run_name(run_name)
        if continue_from is not None:
            continue_from = runs.check_continuable(project.name, continue_from)
        run_dir = runs.new_run_dir(project.name, run_name)
    with runs.RunLock(run_dir), terminate_as_interrupt():
        # What a resume reads is checked before anything is written: a damaged file is one line,
        # and the run is left exactly as it was, resumable or continuable.
        progress = check_resume_files(project, run_dir, config) if resume_dir is not None else None
        try:
            if resume_dir is None:
                config.save(run_dir / runs.CONFIG_FILE)
            runs.set_state(run_dir, runs.RUNNING, project=project.name, pid=os.getpid())
            with devices.placed(config) as placement:
                return _train_in(project, config, run_dir, progress, continue_from, verbose, placement)
        except BaseException as error:
            tracking.abort()
            _after_failure(project, run_dir, error, resuming=resume_dir is not None)
            raise _as_user_error(project, run_dir, error) from None


def check_resume_files(project: Project, run_dir: Path, config: Config) -> dict | None:
    """The committed progress record of a run to resume (``None``: no epoch was committed, so it
    starts from the first), after checking everything the resume will read: ``progress.json``
    (strict JSON, its types, its epochs within the config's), ``history.csv`` (one row per epoch
    done), the last checkpoint (it loads, its seed generators are the record's) and the best
    checkpoint when early stopping restores it.

    Raises:
        UserError: one line naming the damaged file and what can be done instead.
    """
    last, best = run_dir / runs.LAST_CHECKPOINT, run_dir / runs.BEST_CHECKPOINT

    def damaged(problem: str) -> UserError:
        if any(runs.archive_problem(path) is None for path in (last, best)):
            start = runs.continuation_model(run_dir)
            advice = (
                f"start a new run from its {start.name} with `python -m common train {project.name} "
                f"--continue-from {run_dir}`, or delete the folder"
            )
        else:
            advice = f"no checkpoint in it can be loaded: delete the folder and train {project.name} anew"
        return UserError(f"--resume {run_dir}: cannot resume: {problem}; the run is left as it was; {advice}")

    try:
        progress = checkpoints.read_progress(run_dir)
    except files.UnreadableFile as error:
        raise damaged(str(error)) from None
    if progress is None:
        if last.exists():
            raise damaged(f"{run_dir / checkpoints.PROGRESS_FILE} is missing beside its {last.name}")
        return None
    problem = checkpoints.progress_problem(progress, config.train.epochs)
    if problem is not None:
        raise damaged(f"{run_dir / checkpoints.PROGRESS_FILE}: {problem}")
    history_file = run_dir / checkpoints.HISTORY_FILE
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
            f"{history_file} holds {len(epochs)} epochs, but {checkpoints.PROGRESS_FILE} records "
            f"{progress['epochs_done']} done"
        )
    try:
        model = load_model_file(last)
    except UserError as error:
        raise damaged(str(error) if str(last) in str(error) else f"{last}: {error}") from None
    shapes = [tuple(variable.shape) for variable in checkpoints.seed_variables(model)]
    saved = [np.shape(state) for state in progress.get("seed_states", [])]
    if saved != shapes:
        raise damaged(f"the seed states in {checkpoints.PROGRESS_FILE} do not fit the model in {last.name}")
    del model
    if config.train.early_stopping_patience > 0:
        try:
            load_model_file(best, compile=False)
        except UserError as error:
            raise damaged(str(error) if str(best) in str(error) else f"{best}: {error}") from None
    return progress


def _train_in(
    project: Project,
    config: Config,
    run_dir: Path,
    progress: dict | None,
    continue_from: Path | None,
    verbose: int | None,
    placement: devices.Placement,
) -> Path:
    # The data is drawn from the top-level seed, training from train.seed: independent networks
    # (train.seed apart) see the same split even where a project's loader draws from global state.
    keras.utils.set_random_seed(config.seed)
    splits: Splits = project.functions.load_data(config, need_training=True)
    if distill.distilling(config):
        distill.check_split_sizes(config, splits.sizes())
    seed = training_seed(config)
    keras.utils.set_random_seed(seed)
    sizes = ", ".join(f"{k}={v}" for k, v in splits.sizes().items())
    if splits.streamed:
        sizes += "; streamed: read from disk batch by batch, never all in memory"
    log.info("data: %s (%s)", splits.source, sizes)
    if splits.train is None or splits.validation is None:
        raise UserError(f"project {project.name} returned no training or validation split")
    log.info("run folder: %s", run_dir)
    first_epoch = progress["epochs_done"] if progress else 0
    x_train, y_train = splits.train
    project_batches = project.functions.training_batches
    if project_batches is not None:
        batches = project_batches(config, splits, first_epoch)
    elif splits.streamed:
        from common.streaming import StreamedBatches  # Only for data read from files each epoch.

        batches = StreamedBatches(
            x_train, y_train, config.train.batch_size, seed, first_epoch, splits.class_weight
        )
    else:
        batches = ShuffledBatches(
            x_train, y_train, config.train.batch_size, seed, first_epoch, splits.class_weight
        )
    even = devices.batch_multiple(placement)
    if placement.processes > 1:
        batches.shard(placement.process_index, placement.processes)
    elif even > 1:
        batches.whole_multiples(even)
    if progress is not None:
        model = keras.saving.load_model(run_dir / runs.LAST_CHECKPOINT)
        log.info("resuming %s after epoch %d of %d", run_dir.name, first_epoch, config.train.epochs)
    else:
        if continue_from is not None:
            start = runs.continuation_model(continue_from)
            model = distill.student_of(load_model_file(start, compile=False))
            log.info("starting from the weights of %s", start)
        else:
            model = project.functions.build_model(config, splits)
            devices.check_output_dtype(model, placement.precision)
        model = distill.wrap(model, config)
        compile_model(model, config, steps_per_epoch=len(batches))

    started = time.perf_counter()
    seconds_before = progress.get("train_seconds", 0.0) if progress else 0.0
    if progress is not None and progress["finished"]:
        # Killed after its last epoch, while saving: the final weights are the best epoch's when
        # early stopping restores them, else the last epoch's, which the model already holds.
        if config.train.early_stopping_patience > 0:
            model.set_weights(
                keras.saving.load_model(run_dir / runs.BEST_CHECKPOINT, compile=False).get_weights()
            )
        recorder = None
    else:
        callbacks = [batches.ordering_callback(), *_callbacks(config, run_dir, progress, project.name)]
        recorder = next(c for c in callbacks if isinstance(c, checkpoints.RunRecorder))
        fit_input = batches.fit_input(placement.replicas) if hasattr(batches, "fit_input") else batches
        model.fit(
            fit_input,
            shuffle=False,  # The batches are shuffled by seed and epoch, so a resume sees the same.
            epochs=config.train.epochs,
            initial_epoch=first_epoch,
            validation_data=_validation_data(splits, even),
            callbacks=callbacks,
            verbose=verbose if verbose is not None else _fit_verbosity(),
        )
    if recorder is not None and recorder.diverged_epoch is not None:
        raise _Diverged(recorder.diverged_epoch)
    train_seconds = seconds_before + time.perf_counter() - started

    model = distill.student_of(model)  # A distilled run keeps its student alone.
    files.save_model_atomically(model, run_dir / runs.MODEL_FILE)
    plots.plot_learning_curves(
        run_dir / checkpoints.HISTORY_FILE,
        run_dir / "learning_curves.png",
        title=f"{splits.source}; n_train = {len(y_train):,}, n_validation = {len(splits.validation[1]):,}",
    )
    if even > 1:
        # JAX spreads the model's arrays over the devices (on a cluster, over other processes' too),
        # and splits only batches of a multiple of them: the evaluation uses a local copy.
        model = devices.local_model(run_dir / runs.MODEL_FILE)
    metrics = project.functions.evaluate(model, splits, config, run_dir)
    epochs_run = len(pd.read_csv(run_dir / checkpoints.HISTORY_FILE))
    metrics.update(
        data_source=splits.source,
        stand_in_data=splits.stand_in,
        data_streamed=splits.streamed,
        **splits.sizes(),
        epochs_run=epochs_run,
        train_seconds=round(train_seconds, 1),
        parameters=model.count_params(),
        keras_backend=keras.backend.backend(),
        device=placement.device,
        replicas=placement.replicas,
        processes=placement.processes,
        precision=placement.precision,
    )
    if continue_from is not None:
        metrics["continued_from"] = str(continue_from)
    if distill.distilling(config):
        metrics["distilled_from"] = config.distill.teacher
    files.write_json(metrics, run_dir / runs.METRICS_FILE)
    runs.set_state(run_dir, runs.COMPLETED)
    tracking.finish(config, run_dir, metrics)
    runs.mark_latest(project.name, run_dir)
    return run_dir


# The batches ``fit`` evaluates validation arrays in (Keras' default when ``fit`` is given a
# PyDataset): streamed validation uses the same, so its val_loss is the in-memory run's to the bit.
VALIDATION_BATCH_SIZE = 32


def _validation_data(splits: Splits, even: int = 1):
    """The validation split as ``fit`` takes it: arrays, or streamed batches of its files; under
    JAX's data-parallel (``even`` devices) batches of a multiple of ``even`` (the last loses at
    most ``even - 1`` examples)."""
    assert splits.validation is not None, "training needs a validation split"
    x_val, y_val = splits.validation
    size = -(-VALIDATION_BATCH_SIZE // even) * even
    if isinstance(x_val, FileList):
        from common.streaming import validation_batches

        batches = validation_batches(x_val, y_val, size)
    elif even > 1:
        batches = ShuffledBatches(x_val, y_val, size, seed=0, shuffle=False)
    else:
        return splits.validation
    if even > 1:
        batches.whole_multiples(even)
    return batches


class _Diverged(Exception):
    """The loss became NaN or infinite."""

    def __init__(self, epoch: int) -> None:
        super().__init__(epoch)
        self.epoch = epoch


def _after_failure(project: Project, run_dir: Path, error: BaseException, resuming: bool) -> None:
    """Leaves the run folder truthful: failed when its loss diverged (resuming would only diverge
    again); otherwise resumable once an epoch is committed (an interrupt, a write error, a bug
    fixed later: its committed files are still whole); removed when a new run has nothing of
    value in it."""
    committed = (run_dir / checkpoints.PROGRESS_FILE).is_file()
    if not committed and not resuming:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    try:
        if isinstance(error, _Diverged):
            runs.set_state(run_dir, runs.FAILED, message=_reason(error))
        else:
            runs.set_state(run_dir, runs.INTERRUPTED, message=_reason(error))
    except OSError:
        pass  # A full disk may refuse even this; the dead lock then reads as interrupted.


def _reason(error: BaseException) -> str:
    if isinstance(error, _Diverged):
        return f"loss became NaN or infinite in epoch {error.epoch + 1}"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return str(error) or type(error).__name__


def _as_user_error(project: Project, run_dir: Path, error: BaseException) -> BaseException:
    """The one line a failure is reported with (bugs keep their traceback)."""
    resume = f"python -m common train {project.name} --resume {run_dir}"
    if isinstance(error, KeyboardInterrupt):
        if (run_dir / checkpoints.PROGRESS_FILE).is_file():
            return Interrupted(f"training interrupted; 'latest' is unchanged. Continue with: {resume}")
        return Interrupted("training interrupted before its first epoch ended; nothing was kept")
    if isinstance(error, _Diverged):
        return UserError(
            f"training diverged: the loss became NaN or infinite in epoch {error.epoch + 1}; the run is "
            "marked failed and 'latest' is unchanged. Lower train.learning_rate and train again"
        )
    if isinstance(error, OSError):
        where = error.filename or run_dir
        kept = (
            f"; once fixed, continue with: {resume}"
            if (run_dir / checkpoints.PROGRESS_FILE).is_file()
            else ""
        )
        return UserError(f"could not write {where}: {error.strerror or error}{kept}")
    return error


@contextmanager
def terminate_as_interrupt():
    """``kill PID`` (SIGTERM) stops training like Ctrl-C: the run is left resumable."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fit_verbosity() -> int:
    """Silent under ``-q``; a progress bar on a terminal; one line per epoch in a log file."""
    if not log.isEnabledFor(logging.INFO):
        return 0
    return 1 if sys.stdout.isatty() else 2
