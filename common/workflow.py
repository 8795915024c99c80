"""The one place training is driven: build → compile → fit → save → evaluate, and serving.

Projects supply data, model and evaluation; everything here is shared, so all pipelines get the
same run folders, checkpoints, logs, early stopping and plots.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from common import plots, registry, runs
from common.backend import import_keras
from common.config import Config
from common.data import Splits
from common.errors import UserError
from common.registry import Project

# Every module that needs Keras imports it after this one, so its start-up lines are filtered once.
keras = import_keras()

log = logging.getLogger(__name__)


def resolve_config(
    project: Project, config_file: str | None = None, overrides: list[str] | None = None
) -> Config:
    """The project's defaults, an optional variant file, then ``--set`` overrides, validated."""
    return project.load_config(config_file, overrides)


def check_keras_names(config: Config) -> None:
    """Checks that Keras knows ``train.loss`` and every ``train.metrics`` name, before any data is
    read (the optimizer and schedule names are checked with the rest of the config)."""
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


def compile_model(model: keras.Model, config: Config) -> None:
    """Compiles with the optimizer, learning rate, loss and metrics named in ``[train]``."""
    optimizer = keras.optimizers.get(
        {
            "class_name": config.train.optimizer.lower(),
            "config": {"learning_rate": config.train.learning_rate},
        }
    )
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
    check_keras_names(config)
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
    plots.plot_learning_curves(run_dir / "history.csv", run_dir / "learning_curves.png")
    metrics = project.module.evaluate(model, splits, config, run_dir)
    epochs_run = len(pd.read_csv(run_dir / "history.csv"))
    metrics.update(
        data_source=splits.source,
        stand_in_data=splits.stand_in,
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
    announce: bool = True,
):
    """Loads a saved model and the config it was trained with (plus ``--set`` overrides).

    ``need_data`` checks that ``data.path`` exists (evaluation reads it; prediction does not).
    ``announce`` logs which model answers (see :func:`common.runs.describe_model`).

    Returns:
        ``(model, config, model_file)``.
    """
    model_file, config_file = runs.resolve_model(project.name, model_arg)
    try:
        config = project.load_config(config_file, overrides, check_paths=need_data)
    except UserError:
        _raise_if_foreign(project, config_file, model_file)
        raise
    if announce:
        for line in runs.describe_model(project.name, model_file, chosen_by_default=model_arg is None):
            log.info("%s", line)
    try:
        model = keras.saving.load_model(model_file)
    except Exception as error:  # Keras raises several types for a corrupt or foreign file.
        raise UserError(f"could not load model {model_file}: {error}") from None
    return model, config, model_file


def _raise_if_foreign(project: Project, config_file: Path | None, model_file: Path) -> None:
    """A model whose saved config fits another project's schema is that project's model: say so
    instead of naming the first config key this project does not know."""
    if config_file is None:
        return
    for name in registry.project_names():
        if name == project.name:
            continue
        try:
            registry.get_project(name).load_config(config_file, check_paths=False)
        except UserError:
            continue
        raise UserError(
            f"{model_file} is a model of the {name} project, not of {project.name}; "
            f"use `python -m common <command> {name} --model ...`"
        )


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
    metrics.update(
        data_source=splits.source, stand_in_data=splits.stand_in, **splits.sizes(), model=str(model_file)
    )
    runs.write_json(metrics, out_dir / runs.METRICS_FILE)
    return metrics, out_dir


def predict_saved(project: Project, inputs: list[str], model_arg: str | None, options: Any) -> Iterable[dict]:
    """Runs a saved model on raw inputs through the project's own preprocessing, one result per
    input as it is ready (an unreadable input gives ``{"input", "error"}``)."""
    model, config, model_file = load_saved(project, model_arg, getattr(options, "set", None), announce=False)
    announcement = runs.describe_model(project.name, model_file, chosen_by_default=model_arg is None)
    # Said once the model has answered something: an input that could not be read gets its
    # one error line and nothing else.
    announced = False
    for result in project.module.predict(model, inputs, config, options):
        if "error" not in result and not announced:
            for line in announcement:
                log.info("%s", line)
            announced = True
        yield result
