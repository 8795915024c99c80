"""``python -m common tune <project>``: a hyperparameter search with KerasTuner, Keras' own tuner.

The search space lives in the project's config, in ``[tune.space]``: each entry names a config
key and the values to try::

    [tune]
    algorithm = "random"          # or "bayesian", "hyperband"
    trials = 10
    [tune.space]
    "train.learning_rate" = { log_uniform = [1e-4, 1e-2] }
    "model.dense_units" = [64, 128, 256]          # a list: one of these
    "model.dropout" = { uniform = [0.1, 0.5] }
    "model.conv_filters" = [[32, 64], [32, 64, 128]]

Every trial is an ordinary training through :func:`common.workflow.train`, into an ordinary run
folder (``<time>-tune-<name>-<trial>``), so ``runs`` lists it and ``--resume``-style safety holds.
The trials are scored by their best validation loss (never the test split). KerasTuner's own
state lives in ``models/<project>/tune/<name>/``: a search that is stopped and started again
runs only the trials that are left. The best trial's config keys are written as a variant file,
``models/<project>/tune/<name>/best.toml``, that ``train --config`` accepts.

Distributed: KerasTuner's chief/worker mode spreads the trials over processes or machines. Start
the same command with ``KERASTUNER_TUNER_ID=chief`` on one machine and
``KERASTUNER_TUNER_ID=tuner0``, ``tuner1``... on the others, all with ``KERASTUNER_ORACLE_IP``
and ``KERASTUNER_ORACLE_PORT`` set to the chief's address; the models folder must be shared (or
each worker keeps its own run folders, and the chief's table has every trial's score).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import tomli_w

from common import runs
from common.config import Config
from common.errors import UserError
from common.registry import Project

ALGORITHMS = ("random", "bayesian", "hyperband")
OBJECTIVE = "val_loss"


def tune_dir(project: str, name: str) -> Path:
    """Where KerasTuner keeps a search's state, its results table and its best config."""
    return runs.models_dir() / project / "tune" / name


def search_space(project: Project, config: Config) -> dict[str, Any]:
    """The ``[tune.space]`` table, each entry checked against the project's config keys."""
    if "tune" not in config or "space" not in config.tune:
        raise UserError(f"project {project.name} has no [tune.space] table in its config.toml to search")
    space = config.get("tune.space")
    if not space:
        raise UserError("config table [tune.space] is empty; name the config keys to search")
    for key, values in space.items():
        try:
            current = config.get(key)
        except (KeyError, TypeError):
            raise UserError(
                f"[tune.space] names {key!r}, which is not a config key of {project.name}"
            ) from None
        if isinstance(current, dict):
            raise UserError(f"[tune.space] names {key!r}, a table; name one of its keys")
        if isinstance(values, list):
            if not values:
                raise UserError(f"[tune.space] {key!r}: give one or more values to try")
        elif isinstance(values, dict) and len(values) == 1:
            [(kind, bounds)] = values.items()
            if kind not in ("log_uniform", "uniform", "int") or not (
                isinstance(bounds, list) and len(bounds) == 2 and bounds[0] < bounds[1]
            ):
                raise UserError(
                    f"[tune.space] {key!r}: use a list of values, or one of "
                    "{log_uniform = [low, high]}, {uniform = [low, high]}, {int = [low, high]}"
                )
            if kind == "log_uniform" and bounds[0] <= 0:
                raise UserError(f"[tune.space] {key!r}: log_uniform needs a low bound above 0")
        else:
            raise UserError(
                f"[tune.space] {key!r}: expected a list or a one-entry table; received {values!r}"
            )
    return space


def _hyperparameter(hp: Any, key: str, values: Any) -> Any:
    """Declares one search dimension in KerasTuner's terms and returns this trial's value."""
    if isinstance(values, list):
        if all(isinstance(value, (int, float, str, bool)) for value in values):
            return hp.Choice(key, values)
        # Lists of lists (e.g. filter counts) are chosen by their position.
        return values[hp.Choice(key, list(range(len(values))))]
    [(kind, (low, high))] = values.items()
    if kind == "int":
        return hp.Int(key, int(low), int(high))
    return hp.Float(key, float(low), float(high), sampling="log" if kind == "log_uniform" else "linear")


def _override(key: str, value: Any) -> str:
    """``key=value`` as ``--set`` reads it (a JSON number, string, boolean or list is TOML too)."""
    return f"{key}={json.dumps(value)}"


def run_search(
    project: Project,
    config_file: str | None,
    overrides: list[str],
    name: str,
    trials: int | None = None,
) -> tuple[pd.DataFrame, Path]:
    """Runs (or continues) a search; returns the results table and the best trial's config file."""
    base = project.load_config(config_file, overrides)
    space = search_space(project, base)
    algorithm = base.tune.algorithm
    if algorithm not in ALGORITHMS:
        raise UserError(
            f"config key 'tune.algorithm' must be one of {', '.join(ALGORITHMS)}; received {algorithm!r}"
        )
    max_trials = trials if trials is not None else base.tune.trials
    if max_trials < 1:
        raise UserError(f"--trials must be 1 or more; received {max_trials}")
    runs.check_run_name(name)
    runs.check_writable(tune_dir(project.name, name).parent)

    from common.backend import import_keras

    import_keras()
    import keras_tuner

    from common import workflow

    directory = tune_dir(project.name, name)
    directory.parent.mkdir(parents=True, exist_ok=True)
    objective = keras_tuner.Objective(OBJECTIVE, direction="min")
    if algorithm == "random":
        oracle = keras_tuner.oracles.RandomSearchOracle(
            objective=objective, max_trials=max_trials, seed=base.seed
        )
    elif algorithm == "bayesian":
        oracle = keras_tuner.oracles.BayesianOptimizationOracle(
            objective=objective, max_trials=max_trials, seed=base.seed
        )
    else:
        oracle = keras_tuner.oracles.HyperbandOracle(
            objective=objective, max_epochs=base.train.epochs, seed=base.seed, hyperband_iterations=1
        )

    class ConfigTuner(keras_tuner.Tuner):
        """Each trial trains the project with the trial's config values, as `train` would."""

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict:
            hp = trial.hyperparameters
            chosen = {key: _hyperparameter(hp, key, values) for key, values in space.items()}
            trial_overrides = [_override(key, value) for key, value in chosen.items()]
            continue_from = None
            if "tuner/epochs" in hp.values:  # Hyperband: a budget of epochs, maybe going on.
                epochs = hp.values["tuner/epochs"] - hp.values.get("tuner/initial_epoch", 0)
                trial_overrides.append(f"train.epochs={max(1, epochs)}")
                previous = hp.values.get("tuner/trial_id")
                if previous:
                    continue_from = _trial_run(project.name, name, previous)
            config = project.load_config(config_file, [*overrides, *trial_overrides])
            run_dir = workflow.train(
                project, config, run_name=f"tune-{name}-{trial.trial_id}", continue_from=continue_from
            )
            return {OBJECTIVE: _best_validation_loss(run_dir)}

    tuner = ConfigTuner(
        oracle=oracle,
        directory=str(directory.parent),
        project_name=name,
        overwrite=False,
        tuner_id=os.environ.get("KERASTUNER_TUNER_ID"),
    )
    tuner.search(verbose=1 if logging.getLogger("common").isEnabledFor(logging.INFO) else 0)
    if os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief":
        return pd.DataFrame(), directory / "best.toml"
    table = _results(tuner, name, project.name, space)
    runs.write_bytes_atomically(table.to_csv(index=False).encode(), directory / "results.csv")
    best_file = directory / "best.toml"
    best = tuner.oracle.get_best_trials(1)
    if not best:
        raise UserError(f"no trial of search {name!r} finished; see the run folders of its trials")
    chosen = {key: _trial_value(best[0].hyperparameters, key, values) for key, values in space.items()}
    _write_variant(
        best_file,
        chosen,
        f"# The best trial of search {name!r}: trial {best[0].trial_id}, "
        f"best validation loss {best[0].score:.6g}.\n"
        f"# Train with it: python -m common train {project.name} --config {best_file}\n",
    )
    return table, best_file


def _trial_value(hp: Any, key: str, values: Any) -> Any:
    value = hp.get(key)
    if isinstance(values, list) and not all(isinstance(item, (int, float, str, bool)) for item in values):
        return values[value]
    return value


def _trial_run(project: str, name: str, trial_id: str) -> Path | None:
    matches = sorted((runs.models_dir() / project).glob(f"*-tune-{name}-{trial_id}"))
    return matches[-1] if matches else None


def _best_validation_loss(run_dir: Path) -> float:
    history = pd.read_csv(run_dir / "history.csv")
    value = float(history[OBJECTIVE].min())
    return value if math.isfinite(value) else float("inf")


def _results(tuner: Any, name: str, project: str, space: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for trial in tuner.oracle.trials.values():
        run_dir = _trial_run(project, name, trial.trial_id)
        values = {key: _trial_value(trial.hyperparameters, key, choices) for key, choices in space.items()}
        rows.append(
            {
                "trial": trial.trial_id,
                "status": str(trial.status).lower(),
                OBJECTIVE: trial.score,
                **{
                    key: json.dumps(value) if isinstance(value, list) else value
                    for key, value in values.items()
                },
                "run": run_dir.name if run_dir else "",
            }
        )
    table = pd.DataFrame(rows)
    return table.sort_values(OBJECTIVE, na_position="last") if not table.empty else table


def _write_variant(path: Path, chosen: dict[str, Any], header: str) -> None:
    """The chosen values as a variant TOML file holding only those keys."""
    nested: dict[str, Any] = {}
    for key, value in chosen.items():
        *tables, last = key.split(".")
        target = nested
        for table in tables:
            target = target.setdefault(table, {})
        target[last] = value
    runs.write_bytes_atomically((header + tomli_w.dumps(nested)).encode(), path)
