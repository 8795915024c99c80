"""Ensembles: several trained models of one project averaged inside one saved model.

``python -m common ensemble <project> RUN RUN [...]`` loads the members' final models, builds one
Keras model whose output is the mean of theirs (each member a sub-model, its weights unchanged),
saves it in a new run folder with the first member's config (plus ``--set``) and scores it on the
test split, as a training run does. Prediction, evaluation, the web app and the benchmarks then
take it like any model: one ``.keras`` file, one forward pass over every member.

The members must have been trained on the same split (same ``seed`` and split settings, the same
number of training, validation and test examples): a member trained on another split would have
seen some of the ensemble's test examples, and its score would be a lie. The same holds for the
ensemble's own config, the one it is scored with: a ``--set`` that changes the split is refused.

Making an ensemble never changes which model answers by default; ``--promote`` makes it answer.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import keras

from common import keras_setup
from common.core import files, runs
from common.core.config import Config, split_settings
from common.core.errors import UserError
from common.core.project import Project

log = logging.getLogger(__name__)

# Keys that say where the data lies or how it is read, not which examples fall in which split.
_SPLIT_SIZES = ("n_train", "n_validation", "n_test")


def average(models: list[keras.Model], name: str = "ensemble") -> keras.Model:
    """One model whose output is the mean of ``models``' outputs (same input and output shapes);
    each member is a sub-model named ``member_<i>``, its weights shared, not copied."""
    shapes = {(tuple(model.input_shape), tuple(model.output_shape)) for model in models}
    if len(shapes) > 1:
        raise UserError(
            "the models take or give different shapes ("
            + "; ".join(f"{inputs} -> {outputs}" for inputs, outputs in sorted(shapes, key=str))
            + "); an ensemble averages models of one task"
        )
    for index, model in enumerate(models, start=1):
        model.name = f"member_{index}"
    inputs = keras.Input(shape=models[0].input_shape[1:], name="inputs")
    outputs = keras.layers.Average(name="average")([model(inputs) for model in models])
    return keras.Model(inputs, outputs, name=name)


def members(model: keras.Model) -> list[keras.Model]:
    """The member models of an ensemble made by :func:`average`; ``[model]`` for any other model."""
    if any(isinstance(layer, keras.layers.Average) for layer in model.layers):
        found = [layer for layer in model.layers if isinstance(layer, keras.Model)]
        if found:
            return found
    return [model]


def build(project: Project, model_args: list[str], name: str | None, overrides: list[str]) -> Path:
    """Averages the models of ``model_args`` (run folders, ``.keras`` files beside their config,
    ``pretrained``, ``latest``), saves the ensemble in a new run folder, scores it on the test
    split and returns the folder."""
    from common.serving import loading  # Imports Keras: only when an ensemble is made.

    if len(model_args) < 2:
        raise UserError("an ensemble needs at least two models (run folders or .keras files)")
    runs.check_run_name(name)
    found = []
    for model_arg in model_args:
        model_file, config_file = runs.resolve_model(project.name, model_arg)
        if config_file is None:
            raise UserError(
                f"{model_file}: no config.toml beside it, so nothing says which split it was trained on; "
                "pass its run folder"
            )
        found.append((model_file, config_file))
    if len({model_file.resolve() for model_file, _ in found}) < len(found):
        raise UserError("the same model is named twice; an ensemble averages different models")
    configs = [project.load_config(config_file, check_paths=False) for _, config_file in found]
    _check_same_split([model_file for model_file, _ in found], configs)
    config = project.load_config(found[0][1], overrides, check_paths=True)
    _check_overrides_keep_the_split(found[0][0], configs[0], config, overrides)

    keras_setup.use_project_objects(project)  # The members may be of the project's own classes.
    models = [loading.load_model_file(model_file, compile=False) for model_file, _ in found]
    model = average(models, name=f"{project.name}_ensemble")

    run_dir = runs.new_run_dir(project.name, name or "ensemble")
    log.info("run folder: %s", run_dir)
    try:
        config.save(run_dir / runs.CONFIG_FILE)
        files.write_json(config.record(), run_dir / runs.SOURCES_FILE)
        files.save_model_atomically(model, run_dir / runs.MODEL_FILE)
        # Scored as `evaluate` scores any saved model, into the run folder.
        metrics, _ = loading.evaluate_saved(project, str(run_dir), out_dir=run_dir, scoring_new_run=True)
        metrics.pop("model")
        recorded = runs.read_metrics(found[0][0].parent).get("n_test")
        if recorded is not None and metrics.get("n_test") != recorded:
            # The data read (another data.path) holds another test split than the members'.
            raise UserError(
                f"the ensemble's data gives {metrics.get('n_test')} test examples, its members were tested "
                f"on {recorded}; score it on the data they were trained on"
            )
        metrics.update(
            parameters=model.count_params(),
            keras_backend=keras.backend.backend(),
            ensemble_of=[str(model_file.resolve()) for model_file, _ in found],
        )
        files.write_json(metrics, run_dir / runs.METRICS_FILE)
        runs.set_state(run_dir, runs.COMPLETED)
    except BaseException:
        # A new folder that nothing else points to: an ensemble half made is no run at all.
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    runs.mark_latest(project.name, run_dir)
    return run_dir


def _check_same_split(model_files: list[Path], configs: list[Config]) -> None:
    """Every member's split settings and split sizes are the first member's."""
    first = _split_of(model_files[0], configs[0])
    for model_file, config in zip(model_files[1:], configs[1:]):
        other = _split_of(model_file, config)
        # A size one member's metrics do not record (a shipped model scored by `evaluate` only) is
        # left to the settings, which every run records.
        differ = sorted(key for key in first.keys() & other.keys() if first[key] != other[key])
        if differ:
            key = differ[0]
            raise UserError(
                f"{model_file} was trained on another split than {model_files[0]} ({key}: "
                f"{other.get(key)!r} against {first.get(key)!r}); average only models trained on the same "
                "split, or one of them has seen the others' test examples"
            )


def _check_overrides_keep_the_split(
    first_file: Path, first: Config, final: Config, overrides: list[str]
) -> None:
    """The config the ensemble is scored with (the first member's plus ``--set``) splits the data
    as the members' did: with another split, its test examples would be ones they trained on."""
    members_split, final_split = split_settings(first), split_settings(final)
    differ = sorted(
        key
        for key in members_split.keys() | final_split.keys()
        if members_split.get(key) != final_split.get(key)
    )
    if differ:
        key = differ[0]
        raise UserError(
            f"--set {' '.join(overrides)} changes the split the members were trained on ({key}: "
            f"{final_split.get(key)!r} against {members_split.get(key)!r} in "
            f"{first_file.parent / runs.CONFIG_FILE}); "
            "the ensemble would be scored on examples they trained on. Leave the split keys as they are"
        )


def _split_of(model_file: Path, config: Config) -> dict:
    """What decides which examples a model trained, validated and was tested on: its settings and
    the split sizes its metrics recorded."""
    split = split_settings(config)
    metrics = runs.read_metrics(model_file.parent)
    split.update({key: metrics[key] for key in _SPLIT_SIZES if key in metrics})
    return split
