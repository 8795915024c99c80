"""Training, as Keras' five steps: create a model, compile it, fit it, save it, and predict with
it (the evaluation on the test split). :func:`train` reads top to bottom as those steps.

Projects supply data, model and evaluation; everything here is shared, so all pipelines get the
same run folders, checkpoints, logs, early stopping and plots. What keeps a run safe is behind
small interfaces a first reading can skip: :mod:`common.core.runs` (the run folder, its state and
lock), :mod:`common.training.checkpoints` (per-epoch commits, resume, how a failed run is left),
:mod:`common.training.devices` (precision and device placement) and :mod:`common.core.files` (atomic writes).
Distillation and MLflow tracking are imported only by a run whose config asks for them.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pandas as pd

from common import keras_setup
from common.core import files, runs
from common.core.config import Config, distilling, training_seed, uses_mlflow
from common.core.errors import UserError
from common.core.project import Project
from common.keras_setup import import_keras
from common.kit import plots
from common.kit.batches import ShuffledBatches
from common.kit.splits import FileList, Splits, take
from common.training import checkpoints, devices

# Every module that needs Keras imports it after this one, so its start-up lines are filtered once.
if TYPE_CHECKING:
    import keras
else:
    keras = import_keras()

log = logging.getLogger(__name__)


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
    # Everything that can be checked before any data is read or any folder made.
    devices.check(config)
    keras_setup.use_project_objects(project)
    check_keras_names(config, project_compile_options(project, config))
    distill, tracking = _distill_module(config), _tracking_module(config)
    if tracking is not None:
        tracking.check_available(config)
    if distill is not None:
        config = distill.pin_teacher(project, config)
    if resume_dir is not None:
        run_dir = runs.check_resumable(project.name, resume_dir)
    else:
        runs.check_run_name(run_name)
        if continue_from is not None:
            continue_from = runs.check_continuable(project.name, continue_from)
        run_dir = runs.new_run_dir(project.name, run_name)
    with runs.RunLock(run_dir), checkpoints.terminate_as_interrupt():
        if resume_dir is not None:
            runs.check_resumable(project.name, resume_dir, locked=True)
        # What a resume reads is checked before anything is written: a damaged file is one line,
        # and the run is left exactly as it was, resumable or continuable.
        progress = (
            checkpoints.check_resume_files(project, run_dir, config) if resume_dir is not None else None
        )
        try:
            if resume_dir is None:
                config.save(run_dir / runs.CONFIG_FILE)
                files.write_json(config.record(), run_dir / runs.SOURCES_FILE)
            runs.set_state(run_dir, runs.RUNNING, project=project.name, pid=os.getpid())
            with devices.placed(config) as placement:
                run = Run(
                    project, config, run_dir, placement, progress, continue_from, verbose, distill, tracking
                )
                return _train_in(run)
        except BaseException as error:
            if tracking is not None:
                tracking.abort()
            checkpoints.after_failure(project, run_dir, error, resuming=resume_dir is not None)
            raise checkpoints.as_user_error(project, run_dir, error) from None


@dataclass
class Run:
    """What every step of one training needs: the project, its settings, its run folder, where the
    devices place it, and where it starts (``progress``: the committed record of a run being
    resumed; ``continue_from``: a run whose weights a new run starts from)."""

    project: Project
    config: Config
    run_dir: Path
    placement: devices.Placement
    progress: dict | None = None
    continue_from: Path | None = None
    verbose: int | None = None
    distill: ModuleType | None = None  # common.training.distill when the config names a teacher
    tracking: ModuleType | None = None  # common.training.tracking when the config asks for MLflow

    @property
    def first_epoch(self) -> int:
        return self.progress["epochs_done"] if self.progress else 0


def _train_in(run: Run) -> Path:
    """The data, then the five steps; the run is completed and becomes ``latest``."""
    splits = load_data(run)
    batches = training_batches(run, splits)
    model = create_model(run, splits)  # 1. create (or load the checkpoint of the run resumed)
    if run.progress is None:  # 2. compile, with the project's own loss, metrics... where it has them
        compile_model(model, run.config, len(batches), project_compile_options(run.project, run.config))
    train_seconds = fit_model(run, model, batches, splits)  # 3. fit
    model = save_model(run, model, splits)  # 4. save
    evaluate_model(run, model, splits, train_seconds)  # 5. predict the test split, beside a baseline
    runs.mark_latest(run.project.name, run.run_dir)
    return run.run_dir


def load_data(run: Run) -> Splits:
    """The project's splits. The data is drawn from the top-level seed, training from
    ``train.seed``: independent networks (``train.seed`` apart) see the same split even where a
    project's loader draws from global state."""
    config = run.config
    keras.utils.set_random_seed(config.seed)
    splits: Splits = run.project.functions.load_data(config, need_training=True)
    if run.distill is not None:
        run.distill.check_split_sizes(config, splits.sizes())
    keras.utils.set_random_seed(training_seed(config))
    sizes = ", ".join(f"{k}={v}" for k, v in splits.sizes().items())
    if splits.streamed:
        sizes += "; streamed: read from disk batch by batch, never all in memory"
    log.info("data: %s (%s)", splits.source, sizes)
    if splits.train is None or splits.validation is None:
        raise UserError(f"project {run.project.name} returned no training or validation split")
    log.info("run folder: %s", run.run_dir)
    return splits


def training_batches(run: Run, splits: Splits) -> Any:
    """The training split in shuffled batches (the project's own, streamed from files, or from
    arrays), in an order fixed by ``train.seed`` and the epoch, so a resumed run sees the same."""
    config, seed = run.config, training_seed(run.config)
    assert splits.train is not None
    x_train, y_train = splits.train
    batches: Any
    if run.project.functions.training_batches is not None:
        batches = run.project.functions.training_batches(config, splits, run.first_epoch)
    elif splits.streamed:
        from common.kit.streaming import StreamedBatches  # Only for data read from files each epoch.

        batches = StreamedBatches(
            x_train, y_train, config.train.batch_size, seed, run.first_epoch, splits.class_weight
        )
    else:
        batches = ShuffledBatches(
            x_train, y_train, config.train.batch_size, seed, run.first_epoch, splits.class_weight
        )
    placement = run.placement
    if placement.processes > 1:
        batches.shard(placement.process_index, placement.processes)
    elif devices.batch_multiple(placement) > 1:
        batches.whole_multiples(devices.batch_multiple(placement))
    return batches


def create_model(run: Run, splits: Splits) -> keras.Model:
    """Step 1: the project's Sequential model, built for its data; or, resuming, the run's last
    checkpoint (compiled, with its optimizer state); or the weights of the run continued from."""
    if run.progress is not None:
        log.info(
            "resuming %s after epoch %d of %d", run.run_dir.name, run.first_epoch, run.config.train.epochs
        )
        return keras.saving.load_model(run.run_dir / runs.LAST_CHECKPOINT)
    model = run.project.functions.build_model(run.config, splits)
    if run.continue_from is not None:
        start = runs.continuation_model(run.continue_from)
        _load_weights_of(start, model, splits)
        log.info("starting from the weights of %s", start)
    devices.check_output_dtype(model, run.placement.precision)
    return run.distill.wrap(model, run.config) if run.distill is not None else model


def _load_weights_of(start: Path, model: keras.Model, splits: Splits) -> None:
    """Gives ``model``, built from the new run's config, the weights of the saved model ``start``
    (a distilled run's student): a config key may change what trains (unfreeze a pretrained base
    for fine-tuning, as in Keras' transfer-learning guide) but not the weights' shapes."""
    from common.serving.loading import load_model_file
    from common.training import distill  # A continued run may start from a distilled run's checkpoint.

    saved = distill.student_of(load_model_file(start, compile=False))
    if not model.built:
        # A subclassed model makes its weights on its first call.
        assert splits.train is not None
        model(take(splits.train[0], slice(0, 1)))
    ours, theirs = model.weights, saved.weights
    mismatches = [
        f"{mine.path} {tuple(mine.shape)} against {tuple(other.shape)}"
        for mine, other in zip(ours, theirs)
        if tuple(mine.shape) != tuple(other.shape)
    ]
    if len(ours) != len(theirs):
        mismatches.append(f"{len(ours)} weight arrays against {len(theirs)}")
    if mismatches:
        raise UserError(
            f"--continue-from: the model this config builds does not fit the weights of {start} "
            f"({mismatches[0]}); continue with the [model] settings that run was trained with"
        )
    model.set_weights(saved.get_weights())


def fit_model(run: Run, model: keras.Model, batches: Any, splits: Splits) -> float:
    """Step 3: ``model.fit`` from the run's first (or resumed) epoch, with early stopping, the
    learning-rate schedule and a checkpoint committed every epoch. Returns the seconds spent
    training, over every resume of the run."""
    config, progress = run.config, run.progress or {}
    started = time.perf_counter()
    if progress.get("finished"):
        # Killed after its last epoch, while saving: the final weights are the best epoch's when
        # early stopping restores them, else the last epoch's, which the model already holds.
        if config.train.early_stopping_patience > 0:
            best = keras.saving.load_model(run.run_dir / runs.BEST_CHECKPOINT, compile=False)
            model.set_weights(best.get_weights())
    else:
        callbacks = [
            batches.ordering_callback(),
            *_callbacks(config, run.run_dir, run.progress, run.project.name, _project_callbacks(run)),
        ]
        recorder = next(c for c in callbacks if isinstance(c, checkpoints.RunRecorder))
        fit_input = batches.fit_input(run.placement.replicas) if hasattr(batches, "fit_input") else batches
        model.fit(
            fit_input,
            shuffle=False,  # The batches are shuffled by seed and epoch, so a resume sees the same.
            epochs=config.train.epochs,
            initial_epoch=run.first_epoch,
            validation_data=_validation_data(splits, devices.batch_multiple(run.placement)),
            callbacks=callbacks,
            verbose=run.verbose if run.verbose is not None else _fit_verbosity(),
        )
        if recorder.diverged_epoch is not None:
            raise checkpoints.Diverged(recorder.diverged_epoch)
    return progress.get("train_seconds", 0.0) + time.perf_counter() - started


def save_model(run: Run, model: keras.Model, splits: Splits) -> keras.Model:
    """Step 4: ``model.keras`` (a distilled run keeps its student alone), written atomically, and
    the learning curves; returns the model to evaluate."""
    if run.distill is not None:
        model = run.distill.student_of(model)
    model_file = run.run_dir / runs.MODEL_FILE
    files.save_model_atomically(model, model_file)
    assert splits.train is not None and splits.validation is not None
    plots.plot_learning_curves(
        run.run_dir / checkpoints.HISTORY_FILE,
        run.run_dir / "learning_curves.png",
        title=(
            f"{splits.source}; n_train = {splits.sizes()['n_train']:,}, "
            f"n_validation = {splits.sizes()['n_validation']:,}"
        ),
    )
    if devices.batch_multiple(run.placement) > 1:
        # JAX spreads the model's arrays over the devices (on a cluster, over other processes' too),
        # and splits only batches of a multiple of them: the evaluation uses a local copy.
        model = devices.local_model(model_file)
    return model


def evaluate_model(run: Run, model: keras.Model, splits: Splits, train_seconds: float) -> dict:
    """Step 5: the project's evaluation (predictions on the test split, scored beside a trivial
    baseline), with how the run was made, written to ``metrics.json``; the run is completed."""
    config, placement = run.config, run.placement
    metrics = run.project.functions.evaluate(model, splits, config, run.run_dir)
    metrics.update(
        data_source=splits.source,
        stand_in_data=splits.stand_in,
        data_streamed=splits.streamed,
        **splits.sizes(),
        epochs_run=len(pd.read_csv(run.run_dir / checkpoints.HISTORY_FILE)),
        train_seconds=round(train_seconds, 1),
        parameters=model.count_params(),
        keras_backend=keras.backend.backend(),
        device=placement.device,
        replicas=placement.replicas,
        processes=placement.processes,
        precision=placement.precision,
    )
    if run.continue_from is not None:
        metrics["continued_from"] = str(run.continue_from)
    if run.distill is not None:
        metrics["distilled_from"] = config.distill.teacher
    files.write_json(metrics, run.run_dir / runs.METRICS_FILE)
    runs.set_state(run.run_dir, runs.COMPLETED)
    if run.tracking is not None:
        run.tracking.finish(config, run.run_dir, metrics)
    return metrics


# Step 2, compile: the names Keras must know, checked before any data is read, then the optimizer.


def check_keras_names(config: Config, supplied: dict | None = None) -> None:
    """Checks that Keras knows ``train.loss`` and every ``train.metrics`` name (a name, or a table
    of them per output), and that the optimizer takes the options set, before any data is read.
    What the project's ``compile_options`` supplies (``supplied``) replaces the config's key, which
    is then not checked (the optimizer and schedule names are checked with the rest of the
    config)."""
    supplied = supplied or {}
    if "loss" not in supplied:
        for output, name in _per_output(config.get("train.loss")):
            try:
                keras.losses.get(name)
            except (ValueError, TypeError):
                raise UserError(
                    f"config key 'train.loss{output}': Keras knows no loss {name!r}; use a name such as "
                    "'sparse_categorical_crossentropy', 'categorical_crossentropy', 'mse' or 'huber', or "
                    "give the project's own loss from its compile_options (docs/adding-a-pipeline.md)"
                ) from None
    if "metrics" not in supplied:
        for output, names in _per_output(config.get("train.metrics")):
            for name in [names] if isinstance(names, str) else names:
                try:
                    keras.metrics.get(name)
                except (ValueError, TypeError):
                    raise UserError(
                        f"config key 'train.metrics{output}': Keras knows no metric {name!r}; use names "
                        "such as 'accuracy', 'mae' or 'mse', or give metric objects from the project's "
                        "compile_options"
                    ) from None
    if "optimizer" not in supplied:
        optimizer_options(config)


def _per_output(value: Any) -> list[tuple[str, Any]]:
    """``[("", value)]``, or for a table of one value per output (a model with several
    outputs), ``[(".price", "mse"), (".label", ...)]``."""
    if isinstance(value, dict):
        return [(f".{output}", item) for output, item in value.items()]
    return [("", value)]


# The arguments of ``model.compile`` a project's ``compile_options`` may give.
COMPILE_OPTIONS = (
    "optimizer", "loss", "loss_weights", "metrics", "weighted_metrics", "run_eagerly",
    "steps_per_execution", "jit_compile", "auto_scale_loss",
)  # fmt: skip


def project_compile_options(project: Project, config: Config) -> dict[str, Any]:
    """What the project's ``compile_options(config)`` gives ``model.compile`` (empty without the
    hook), checked to be a dict of ``compile``'s own arguments."""
    hook = project.functions.compile_options
    if hook is None:
        return {}
    options = hook(config)
    if not isinstance(options, dict):
        raise UserError(
            f"project '{project.name}': compile_options returned {type(options).__name__}, not a dict of "
            f"model.compile's arguments ({', '.join(COMPILE_OPTIONS)})"
        )
    unknown = [key for key in options if key not in COMPILE_OPTIONS]
    if unknown:
        from common.core.config import did_you_mean

        raise UserError(
            f"project '{project.name}': compile_options gives {unknown[0]!r}, which model.compile does "
            f"not take{did_you_mean(unknown[0], COMPILE_OPTIONS)}; it takes {', '.join(COMPILE_OPTIONS)}"
        )
    for key in ("loss", "metrics", "weighted_metrics"):
        for item in keras.tree.flatten(options.get(key)):
            _make_loadable(item)
    return options


def _make_loadable(item: Any) -> None:
    """Adds a project's own loss or metric (a function, or an object of its own class) to Keras'
    custom objects under the name its checkpoints record, as registering it would: the compiled
    checkpoints ``--resume`` loads name it, and Keras finds only registered names."""
    own = item if inspect.isfunction(item) else type(item)
    if item is None or isinstance(item, str) or own.__module__.split(".")[0] == "keras":
        return
    name = keras.saving.get_registered_name(own)
    keras.saving.get_custom_objects().setdefault(name, own)


# The ``[train]`` keys passed to the optimizer when set (a config from an older run folder may lack
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


def compile_model(
    model: keras.Model, config: Config, steps_per_epoch: int, project_options: dict | None = None
) -> None:
    """Compiles with the optimizer, learning rate (or schedule), loss and metrics of ``[train]``,
    each replaced by what the project's ``compile_options`` gives (``project_options``), and the
    per-output ``train.loss_weights`` where a config has them.

    The cosine schedule is a ``keras.optimizers.schedules.CosineDecay`` over every training step:
    it is saved with the optimizer, so a resumed run continues it from its step count.
    """
    train = config.train
    options: dict[str, Any] = {
        "loss": config.get("train.loss"),
        "metrics": _metrics_of(config.get("train.metrics")),
    }
    if "loss_weights" in train:
        options["loss_weights"] = config.get("train.loss_weights")
    options.update(project_options or {})
    if "optimizer" not in options:
        learning_rate: Any = train.learning_rate
        if train.lr_schedule == "cosine":
            learning_rate = keras.optimizers.schedules.CosineDecay(
                train.learning_rate, decay_steps=max(1, train.epochs * steps_per_epoch)
            )
        options["optimizer"] = keras.optimizers.get(
            {
                "class_name": train.optimizer.lower(),
                "config": {"learning_rate": learning_rate, **optimizer_options(config)},
            }
        )
    model.compile(**options)


def _metrics_of(value: Any) -> Any:
    """The config's metrics as ``compile`` takes them: a list, or a dict of lists per output."""
    if isinstance(value, dict):
        return {output: [names] if isinstance(names, str) else list(names) for output, names in value.items()}
    return list(value)


def _project_callbacks(run: Run) -> list[keras.callbacks.Callback]:
    """The project's own callbacks for this run (none without the ``callbacks`` hook)."""
    hook = run.project.functions.callbacks
    if hook is None:
        return []
    made = list(hook(run.config, run.run_dir))
    for callback in made:
        if not isinstance(callback, keras.callbacks.Callback):
            raise UserError(
                f"project '{run.project.name}': callbacks returned {callback!r}, which is not a "
                "keras.callbacks.Callback"
            )
    return made


def _callbacks(
    config: Config,
    run_dir: Path,
    resume_from: dict | None,
    project_name: str = "",
    project_callbacks: list[keras.callbacks.Callback] | None = None,
) -> list[keras.callbacks.Callback]:
    """Early stopping and the plateau schedule first, then the project's own callbacks, then the
    recorder that commits the epoch (the model, the optimizer and their callbacks' state)."""
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
    callbacks.extend(project_callbacks or [])
    callbacks.append(
        checkpoints.RunRecorder(
            run_dir, early_stopping=early_stopping, plateau=plateau, resume_from=resume_from
        )
    )
    if train.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=run_dir / "logs"))
    tracking = _tracking_module(config)
    if tracking is not None:
        callbacks.append(tracking.MLflowLogger(project_name, config, run_dir))
    return callbacks


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
        from common.kit.streaming import validation_batches

        batches = validation_batches(x_val, y_val, size)
    elif even > 1:
        batches = ShuffledBatches(x_val, y_val, size, seed=0, shuffle=False)
    else:
        return splits.validation
    if even > 1:
        batches.whole_multiples(even)
    return batches


def _fit_verbosity() -> int:
    """Silent under ``-q``; a progress bar on a terminal; one line per epoch in a log file."""
    if not log.isEnabledFor(logging.INFO):
        return 0
    return 1 if sys.stdout.isatty() else 2


def _distill_module(config: Config) -> ModuleType | None:
    """:mod:`common.training.distill` when the config trains with a teacher, else ``None``."""
    if not distilling(config):
        return None
    from common.training import distill

    return distill


def _tracking_module(config: Config) -> ModuleType | None:
    """:mod:`common.training.tracking` when the config asks for MLflow (``train.mlflow = true``),
    else ``None``."""
    if not uses_mlflow(config):
        return None
    from common.training import tracking

    return tracking
