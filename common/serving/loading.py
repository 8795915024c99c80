"""Answering with a saved model: load it safely, score it on the test split, predict raw inputs.

The inference half of the workflow (``evaluate``, ``predict``, ``serve``, ``ensemble``,
``export`` and the demos): it imports none of the training machinery (checkpoints, devices,
batches), so answering a request reads only this module beside the project's own code.
"""

from __future__ import annotations

import logging
import os
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras

from common import keras_setup
from common.core import files, registry, runs
from common.core.errors import UserError
from common.core.project import Project
from common.kit import images
from common.kit.splits import Splits

log = logging.getLogger(__name__)


def load_saved(
    project: Project,
    model_arg: str | None,
    overrides: list[str] | None = None,
    need_data: bool = False,
    announce: bool = True,
):
    """Loads a saved model and the config it was trained with (plus ``--set`` overrides).

    ``need_data`` checks that ``data.path`` exists (evaluation reads it; prediction does not).
    ``announce`` logs which model answers (see :func:`common.core.runs.describe_model`).

    Returns:
        ``(model, config, model_file)``.
    """
    model_file, config_file = runs.resolve_model(project.name, model_arg)
    keras_setup.use_project_objects(project)
    try:
        config = project.load_config(config_file, overrides, check_paths=need_data)
    except UserError:
        _raise_if_foreign(project, config_file, model_file)
        raise
    if announce:
        for line in runs.describe_model(project, model_file, chosen_by_default=model_arg is None):
            log.info("%s", line)
    # Without the optimizer, loss and metrics: answering needs none of them, and a compile config
    # saved under another backend may import that backend (PyTorch's, when a model trained under it
    # is loaded under TensorFlow, crashed the process).
    model = load_model_file(model_file, compile=False)
    # Where it came from, for a project that keeps more of the run than the model (stock's
    # interval calibration beside it).
    model.source_file = model_file
    return model, config, model_file


# A .keras file is a zip archive: its config.json and metadata.json describe the layers (a few
# hundred kilobytes for large models), its weights file holds the numbers. Sizes are checked from
# the archive's directory before anything is unpacked, so a crafted file cannot fill the memory.
MAX_MODEL_JSON_BYTES = 64 * 2**20
MAX_MODEL_BYTES = 16 * 2**30


def load_model_file(model_file: Path, compile: bool = True) -> keras.Model:
    """Loads a ``.keras`` file in Keras' safe mode, after checking its unpacked sizes; any
    refusal or corruption is one line."""
    try:
        with zipfile.ZipFile(model_file) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise UserError(f"{model_file}: not a Keras model file ({error})") from None
    for entry in entries:
        if entry.filename.endswith(".json") and entry.file_size > MAX_MODEL_JSON_BYTES:
            raise UserError(
                f"{model_file}: its {entry.filename} unpacks to {entry.file_size / 2**20:,.0f} MB "
                f"(a model's is well under {MAX_MODEL_JSON_BYTES // 2**20} MB); refused"
            )
    if sum(entry.file_size for entry in entries) > MAX_MODEL_BYTES:
        raise UserError(f"{model_file}: unpacks to over {MAX_MODEL_BYTES // 2**30} GB; refused")
    try:
        model = keras.saving.load_model(model_file, compile=compile, safe_mode=True)
    except Exception as error:  # Keras raises several types for a corrupt or foreign file.
        message = " ".join(str(error).split())
        if "safe_mode" in message or "unsafe" in message.lower():
            raise UserError(
                f"{model_file}: refused: it stores Python code (e.g. a Lambda layer) that loading "
                "would run; rebuild the model without it, or load it yourself if you trust its source"
            ) from None
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"could not load model {model_file}: {first[:300]}") from None
    if getattr(model, "compiled", False) and keras.backend.backend() == "torch":
        # A model compiled under JAX saves jit_compile=True (JAX's default). Under PyTorch that means
        # torch.compile, which recompiles for every new input shape; PyTorch's own default is eager.
        model.jit_compile = False
    return model


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
    *,
    scoring_new_run: bool = False,
) -> tuple[dict, Path]:
    """Scores a saved model on the test split of the configured data.

    Results go to a new folder, ``models/<project>/evaluations/<timestamp>/`` by default, or to
    ``out_dir``, which may not be a run folder or lie inside one: a run's ``metrics.json`` is the
    record of its training, and evaluating never rewrites it. ``scoring_new_run``: ``out_dir`` is
    the folder of a run being made whose first scores these are (an ensemble's, by
    :mod:`common.experiments.ensemble`).
    """
    if out_dir is not None and not scoring_new_run:
        run_dir = runs.run_folder_holding(out_dir)
        if run_dir is not None:
            raise UserError(
                f"--out {out_dir}: {'that is' if run_dir == out_dir.resolve() else 'inside'} the run folder "
                f"{run_dir}, whose {runs.METRICS_FILE} records its training and is never rewritten; give "
                f"another folder, or leave --out out for models/{project.name}/evaluations/"
            )
    model, config, model_file = load_saved(project, model_arg, overrides, need_data=True)
    splits: Splits = project.functions.load_data(config, need_training=False)
    trained_on = runs.read_metrics(model_file.parent)
    if splits.stand_in and trained_on.get("data_source") and not trained_on.get("stand_in_data"):
        # A stand-in (an offline sample of the real dataset's own training examples, generated
        # data) says nothing of a model trained on the real data: its score is no test score.
        raise UserError(
            f"{runs.short_path(model_file)} was trained on {trained_on['data_source']}; scoring it on the "
            f"stand-in {splits.source} would not measure it on unseen data. Give the real data with --set "
            f"data.path=..., or score a run trained on the stand-in with --model latest"
        )
    log.info("data: %s (n_test=%d)", splits.source, splits.sizes()["n_test"])
    if out_dir is None:
        out_dir = runs.new_run_dir(f"{project.name}/evaluations")
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = project.functions.evaluate(model, splits, config, out_dir)
    metrics.update(
        data_source=splits.source, stand_in_data=splits.stand_in, **splits.sizes(), model=str(model_file)
    )
    files.write_json(metrics, out_dir / runs.METRICS_FILE)
    return metrics, out_dir


def predict_saved(
    project: Project,
    inputs: list[str],
    model_arg: str | None,
    overrides: list[str] | None = None,
    **options: Any,
) -> Iterable[dict]:
    """Runs a saved model on raw inputs through the project's own preprocessing, one result per
    input as it is ready (an unreadable input gives ``{"input", "error"}``). ``overrides`` are
    ``--set`` changes to the model's saved config; ``options`` go to the project's ``predict``."""
    inputs = images.expand_folders(inputs)
    for item in inputs:
        # A FIFO or a device would be waited on forever (or read without end) by any reader.
        if os.path.exists(item) and not os.path.isdir(item) and not stat.S_ISREG(os.stat(item).st_mode):
            raise UserError(f"{item}: not a regular file (a pipe or a device); pass files")
    model, config, model_file = load_saved(project, model_arg, overrides, announce=False)
    announcement = runs.describe_model(project, model_file, chosen_by_default=model_arg is None)
    # Said once the model has answered something: an input that could not be read gets its
    # one error line and nothing else.
    announced = False
    for result in project.functions.predict(model, inputs, config, **options):
        if "error" not in result and not announced:
            for line in announcement:
                log.info("%s", line)
            announced = True
        yield result
