"""The one place training is driven: build → compile → fit → save → evaluate, and serving.

Projects supply data, model and evaluation; everything here is shared, so all pipelines get the
same run folders, checkpoints, logs, early stopping and plots.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import keras
import pandas as pd

from common import plots, runs
from common.config import Config, load_config
from common.data import Splits
from common.errors import UserError
from common.registry import Project

log = logging.getLogger(__name__)


def resolve_config(
    project: Project, config_file: str | None = None, overrides: list[str] | None = None
) -> Config:
    """The project's defaults, an optional variant file, then ``--set`` overrides, validated."""
    config = load_config(project.default_config, Path(config_file) if config_file else None, overrides)
    validate = getattr(project.module, "validate_config", None)
    if validate is not None:
        validate(config)
    return config


def compile_model(model: keras.Model, config: Config) -> None:
    """Compiles with the optimizer, learning rate, loss and metrics named in ``[train]``."""
    try:
        optimizer = keras.optimizers.get(
            {"class_name": config.train.optimizer, "config": {"learning_rate": config.train.learning_rate}}
        )
    except ValueError:
        raise UserError(
            f"config key 'train.optimizer': unknown optimizer {config.train.optimizer!r}; "
            "use a Keras name such as 'adam', 'adamw', 'sgd', 'rmsprop' or 'adadelta'"
        ) from None
    model.compile(optimizer=optimizer, loss=config.train.loss, metrics=list(config.train.metrics))


def _callbacks(config: Config, run_dir: Path, resuming: bool) -> list[keras.callbacks.Callback]:
    train = config.train
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.ModelCheckpoint(
            run_dir / runs.BEST_CHECKPOINT, monitor="val_loss", save_best_only=True
        ),
        # The last epoch's state, so an interrupted run can be resumed with --resume.
        keras.callbacks.ModelCheckpoint(run_dir / runs.LAST_CHECKPOINT),
        keras.callbacks.CSVLogger(run_dir / "history.csv", append=resuming),
    ]
    if train.early_stopping_patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=train.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    if train.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=max(2, train.early_stopping_patience // 2)
            )
        )
    elif train.lr_schedule == "cosine":
        total = train.epochs
        initial = train.learning_rate
        callbacks.append(
            keras.callbacks.LearningRateScheduler(
                lambda epoch: initial * 0.5 * (1 + math.cos(math.pi * epoch / total))
            )
        )
    elif train.lr_schedule != "constant":
        raise UserError(
            f"config key 'train.lr_schedule' must be 'constant', 'plateau' or 'cosine'; "
            f"received: {train.lr_schedule!r}"
        )
    if train.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=run_dir / "logs"))
    return callbacks


def train(
    project: Project,
    config: Config,
    run_name: str | None = None,
    resume_dir: Path | None = None,
    verbose: int | None = None,
) -> Path:
    """Trains a project's model and writes a complete run folder; returns its path.

    Args:
        project: the discovered project.
        config: the resolved settings (saved into the run folder).
        run_name: optional suffix for the run folder's name.
        resume_dir: an interrupted run folder to continue from its last checkpoint.
        verbose: passed to ``model.fit``; by default a progress bar on a terminal and one
            line per epoch in a log file.
    """
    keras.utils.set_random_seed(config.seed)
    splits: Splits = project.module.load_data(config, need_training=True)
    log.info("data: %s (%s)", splits.source, ", ".join(f"{k}={v}" for k, v in splits.sizes().items()))
    if splits.train is None or splits.validation is None:
        raise UserError(f"project {project.name} returned no training or validation split")

    initial_epoch = 0
    if resume_dir is not None:
        run_dir = resume_dir
        checkpoint = run_dir / runs.LAST_CHECKPOINT
        if not checkpoint.is_file():
            raise UserError(f"cannot resume: {checkpoint} does not exist")
        model = keras.saving.load_model(checkpoint)
        history_file = run_dir / "history.csv"
        initial_epoch = len(pd.read_csv(history_file)) if history_file.is_file() else 0
        log.info("resuming %s from epoch %d", run_dir, initial_epoch)
    else:
        run_dir = runs.new_run_dir(project.name, run_name)
        model = project.module.build_model(config, splits)
        compile_model(model, config)
    config.save(run_dir / runs.CONFIG_FILE)
    log.info("run folder: %s", run_dir)

    started = time.perf_counter()
    try:
        x_train, y_train = splits.train
        model.fit(
            x_train,
            y_train,
            batch_size=config.train.batch_size,
            epochs=config.train.epochs,
            initial_epoch=initial_epoch,
            validation_data=splits.validation,
            class_weight=splits.class_weight,
            callbacks=_callbacks(config, run_dir, resuming=resume_dir is not None),
            verbose=verbose if verbose is not None else _fit_verbosity(),
        )
    except KeyboardInterrupt:
        raise UserError(
            f"training interrupted; 'latest' is unchanged. Continue with: "
            f"python -m common train {project.name} --resume {run_dir}"
        ) from None
    train_seconds = time.perf_counter() - started

    runs.save_model_atomically(model, run_dir / runs.MODEL_FILE)
    plots.plot_learning_curves(
        run_dir / "history.csv",
        run_dir / "learning_curves.png",
        title=f"{splits.source}; n_train = {len(y_train):,}, n_validation = {len(splits.validation[1]):,}",
    )
    metrics = project.module.evaluate(model, splits, config, run_dir)
    epochs_run = len(pd.read_csv(run_dir / "history.csv"))
    metrics.update(
        data_source=splits.source,
        **splits.sizes(),
        epochs_run=epochs_run,
        train_seconds=round(train_seconds, 1),
        parameters=model.count_params(),
        keras_backend=keras.backend.backend(),
    )
    runs.write_json(metrics, run_dir / runs.METRICS_FILE)
    runs.mark_latest(project.name, run_dir)
    return run_dir


def _fit_verbosity() -> int:
    """Silent under ``-q``; a progress bar on a terminal; one line per epoch in a log file."""
    if not log.isEnabledFor(logging.INFO):
        return 0
    return 1 if sys.stdout.isatty() else 2


def load_saved(
    project: Project,
    model_arg: str | None,
    overrides: list[str] | None = None,
    need_data: bool = False,
):
    """Loads a saved model and the config it was trained with (plus ``--set`` overrides).

    ``need_data`` checks that ``data.path`` exists (evaluation reads it; prediction does not).

    Returns:
        ``(model, config, model_file)``.
    """
    model_file, config_file = runs.resolve_model(project.name, model_arg)
    config = load_config(project.default_config, config_file, overrides, check_paths=need_data)
    validate = getattr(project.module, "validate_config", None)
    if validate is not None:
        validate(config)
    log.info("model: %s", model_file)
    try:
        model = keras.saving.load_model(model_file)
    except Exception as error:  # Keras raises several types for a corrupt or foreign file.
        raise UserError(f"could not load model {model_file}: {error}") from None
    return model, config, model_file


def evaluate_saved(
    project: Project,
    model_arg: str | None,
    overrides: list[str] | None = None,
    out_dir: Path | None = None,
) -> tuple[dict, Path]:
    """Scores a saved model on the test split of the configured data.

    Results go to a new folder, ``models/<project>/evaluations/<timestamp>/`` by default, so
    evaluating never overwrites the metrics a run was saved with.
    """
    model, config, model_file = load_saved(project, model_arg, overrides, need_data=True)
    splits: Splits = project.module.load_data(config, need_training=False)
    log.info("data: %s (n_test=%d)", splits.source, len(splits.test[1]))
    if out_dir is None:
        out_dir = runs.new_run_dir(f"{project.name}/evaluations")
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = project.module.evaluate(model, splits, config, out_dir)
    metrics.update(data_source=splits.source, **splits.sizes(), model=str(model_file))
    runs.write_json(metrics, out_dir / runs.METRICS_FILE)
    return metrics, out_dir


def predict_saved(project: Project, inputs: list[str], model_arg: str | None, options: Any) -> list[dict]:
    """Runs a saved model on raw inputs through the project's own preprocessing."""
    model, config, _ = load_saved(project, model_arg, getattr(options, "set", None))
    return project.module.predict(model, inputs, config, options)
