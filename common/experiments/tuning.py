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

Trial 1 is the config as it stands (its ``--config`` and ``--set`` applied) when each of its
values lies in the space; the others are drawn by the algorithm. Every trial is an ordinary
training through :func:`common.training.steps.train`, into an ordinary run folder
(``<time>-tune-<name>-<id>``, where ``<id>`` is KerasTuner's id, counted from 0: trial 1 is
``-0``), so ``runs`` lists it. Trials are numbered from 1 in the progress lines, the results table
and ``best.toml``. The trials are scored by their best validation loss (never the test split).
KerasTuner's own state lives in ``models/<project>/tune/<name>/``.

Ctrl-C or SIGTERM stops the whole search (exit status 2) with the command that continues it;
that command reruns the interrupted trial first, resuming its run folder where an epoch was
committed, then the trials that are left. The best trial's config is written as a variant file,
``models/<project>/tune/<name>/best.toml``: the search's ``--config`` and ``--set`` with the
trial's values, so ``train --config best.toml`` trains with exactly the best trial's config (a
Hyperband trial's epoch budget aside: it gets ``train.epochs``).

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

from common.core import commands, files, runs
from common.core.config import Config, read_toml, validate
from common.core.errors import Interrupted, UserError
from common.core.project import Project

ALGORITHMS = ("random", "bayesian", "hyperband")
OBJECTIVE = "val_loss"

# The table of a search's trials, in its folder.
RESULTS_FILE = "results.csv"
log = logging.getLogger(__name__)


def tune_dir(project: str, name: str) -> Path:
    """Where KerasTuner keeps a search's state, its results table and its best config."""
    return runs.models_dir() / project / "tune" / name


def search_space(project: Project, config: Config) -> dict[str, Any]:
    """The ``[tune.space]`` table, each entry checked against the project's config keys."""
    space = config.get("tune.space") if "tune" in config and "space" in config.tune else {}
    if not space:
        raise UserError(
            f"config table [tune.space] is empty: name the config keys of {project.name} to search, in "
            "its config.toml or a --config file (the format: common/core/defaults.toml)"
        )
    for key, values in space.items():
        try:
            current = config.get(key)
        except (KeyError, TypeError):
            raise UserError(
                f"[tune.space] names {key!r}, which is not a config key of {project.name}"
            ) from None
        if isinstance(current, dict):
            raise UserError(f"[tune.space] names {key!r}, a table; name one of its keys")
        if key == "seed":
            raise UserError(
                "[tune.space] names 'seed', which draws the splits: trials compared on different "
                "validation splits are not compared; search 'train.seed' for the initial weights instead"
            )
        if isinstance(values, list):
            if not values:
                raise UserError(f"[tune.space] {key!r}: give one or more values to try")
            for value in values:
                _check_value(project, config, key, value)
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
            for value in bounds:
                _check_value(project, config, key, value)
        else:
            raise UserError(
                f"[tune.space] {key!r}: expected a list or a one-entry table; received {values!r}"
            )
    return space


def _check_value(project: Project, config: Config, key: str, value: Any) -> None:
    """A value the space offers passes the checks a ``--set`` of it would (its type, its range,
    the project's own rules), before the first trial rather than in the middle of the search."""
    try:
        trial = config.with_overrides([_override(key, value)])
        validate(trial, check_paths=False)
        if project.functions.validate_config is not None:
            project.functions.validate_config(trial)
    except UserError as error:
        raise UserError(f"[tune.space] {key!r}: {value!r} cannot be tried: {error}") from None


def _declare(hp: Any, key: str, values: Any, current: Any) -> Any:
    """Declares one search dimension in KerasTuner's terms, with the config's own value as its
    default where that value lies in the space; returns that default (``_OUTSIDE`` if it does not).
    Lists of lists (e.g. filter counts) are chosen by their position."""
    if isinstance(values, list):
        plain = all(isinstance(value, (int, float, str, bool)) for value in values)
        options = values if plain else list(range(len(values)))
        # 1 == 1.0 == True in Python: a default matches a value of its own type only.
        matches = [
            option
            for option, value in zip(options, values)
            if type(value) is type(current) and value == current
        ]
        default = matches[0] if matches else None
        hp.Choice(key, options, default=default)
        return default if matches else _OUTSIDE
    [(kind, (low, high))] = values.items()
    number = isinstance(current, (int, float)) and not isinstance(current, bool)
    if kind == "int":
        inside = number and float(current).is_integer() and low <= current <= high
        hp.Int(key, int(low), int(high), default=int(current) if inside else None)
        return int(current) if inside else _OUTSIDE
    inside = number and low <= current <= high
    hp.Float(
        key,
        float(low),
        float(high),
        sampling="log" if kind == "log_uniform" else "linear",
        default=float(current) if inside else None,
    )
    return float(current) if inside else _OUTSIDE


_OUTSIDE = object()


def _override(key: str, value: Any) -> str:
    """``key=value`` as ``--set`` reads it (a JSON number, string, boolean or list is TOML too)."""
    return f"{key}={json.dumps(value)}"


def trial_number(trial_id: str) -> int:
    """The number a trial is shown with everywhere (progress, table, best.toml), counted from 1.
    KerasTuner's trial ids count from 0; run folders keep them (``...-tune-<name>-<id>``), as the
    searches they belong to find their trials' runs by them."""
    return int(trial_id) + 1


def continue_command(
    project: str, config_file: str | None, overrides: list[str], name: str, trials: int | None
) -> str:
    """The command that continues a search where it stopped, with the Python that runs now."""
    parts = ["--name", name]
    if trials is not None:
        parts += ["--trials", str(trials)]
    if config_file:
        parts += ["--config", config_file]
    for override in overrides:
        parts += ["--set", override]
    return commands.command_line("tune", project, parts)


def run_search(
    project: Project,
    config_file: str | None,
    overrides: list[str],
    name: str,
    trials: int | None = None,
) -> tuple[pd.DataFrame, Path]:
    """Runs (or continues) a search; returns the results table and the best trial's config file.

    Raises:
        Interrupted: on Ctrl-C or SIGTERM, with the command that continues the search; the
            interrupted trial is not counted and runs first when the search is continued.
    """
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

    import keras_tuner

    from common.training import checkpoints, steps

    hyperparameters = keras_tuner.HyperParameters()
    defaults = {key: _declare(hyperparameters, key, values, base.get(key)) for key, values in space.items()}
    # The first trial is the config as it stands, when every value of it lies in the space.
    first_values = (
        None if any(value is _OUTSIDE for value in defaults.values()) else dict(hyperparameters.values)
    )

    class FirstTheDefaults:
        """An oracle whose first trial is the config's own values, before any drawn ones."""

        # Mixed into a KerasTuner oracle below, which has both of these.
        def _random_values(self) -> dict | None:
            if first_values is not None and not self._tried_so_far:  # type: ignore[attr-defined]
                return dict(first_values)
            return super()._random_values()  # type: ignore[misc]

    directory = tune_dir(project.name, name)
    directory.parent.mkdir(parents=True, exist_ok=True)
    objective = keras_tuner.Objective(OBJECTIVE, direction="min")
    common = {"objective": objective, "seed": base.seed, "hyperparameters": hyperparameters}
    if algorithm == "random":
        oracle_class, options = keras_tuner.oracles.RandomSearchOracle, {"max_trials": max_trials}
    elif algorithm == "bayesian":
        oracle_class, options = keras_tuner.oracles.BayesianOptimizationOracle, {"max_trials": max_trials}
    else:
        oracle_class = keras_tuner.oracles.HyperbandOracle
        options = {"max_epochs": base.train.epochs, "hyperband_iterations": 1}
    oracle = type(oracle_class.__name__, (FirstTheDefaults, oracle_class), {})(**common, **options)
    planned = f" of {max_trials}" if algorithm != "hyperband" else ""
    current: dict[str, int] = {}

    class ConfigTuner(keras_tuner.Tuner):
        """Each trial trains the project with the trial's config values, as `train` would."""

        def on_search_begin(self) -> None:
            # Saved before the first trial too: a search stopped in it reloads and reruns it.
            self.save()

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict:
            hp = trial.hyperparameters
            number = current["trial"] = trial_number(trial.trial_id)
            chosen = {key: _trial_value(hp, key, values) for key, values in space.items()}
            trial_overrides = [_override(key, value) for key, value in chosen.items()]
            continue_from = None
            if "tuner/epochs" in hp.values:  # Hyperband: a budget of epochs, maybe going on.
                epochs = hp.values["tuner/epochs"] - hp.values.get("tuner/initial_epoch", 0)
                trial_overrides.append(f"train.epochs={max(1, epochs)}")
                previous = hp.values.get("tuner/trial_id")
                if previous:
                    continue_from = _trial_run(project.name, name, previous)
            config = project.load_config(config_file, [*overrides, *trial_overrides])
            what = ", ".join(f"{key}={value}" for key, value in chosen.items())
            if first_values is not None and {key: hp.values.get(key) for key in space} == first_values:
                what += " (the config's own values)"
            earlier = _trial_run(project.name, name, trial.trial_id)
            if earlier is not None and read_toml(earlier / runs.CONFIG_FILE) != config.to_dict():
                earlier = None  # Another search's run of the same name (its state was removed).
            state = runs.run_state(earlier) if earlier is not None else None
            try:
                if (
                    earlier is not None and state == runs.COMPLETED
                ):  # Stopped after its training, before it was counted.
                    log.info("trial %d%s: %s; its run %s had finished", number, planned, what, earlier)
                    run_dir = earlier
                elif earlier is not None and state == runs.INTERRUPTED:
                    log.info("trial %d%s: %s; resuming its run %s", number, planned, what, earlier)
                    run_dir = steps.train(project, config, resume_dir=earlier)
                else:
                    log.info("trial %d%s: %s", number, planned, what)
                    run_dir = steps.train(
                        project, config, run_name=f"tune-{name}-{trial.trial_id}", continue_from=continue_from
                    )
            except Interrupted:
                # Not a failed trial: KerasTuner counts any Exception as one and goes on, while
                # an interrupt escapes it and leaves the trial to be run again.
                raise KeyboardInterrupt from None
            score = _best_validation_loss(run_dir)
            log.info("trial %d%s: best %s %.6g", number, planned, OBJECTIVE, score)
            return {OBJECTIVE: score}

    tuner = ConfigTuner(
        oracle=oracle,
        directory=str(directory.parent),
        project_name=name,
        overwrite=False,
        tuner_id=os.environ.get("KERASTUNER_TUNER_ID"),
    )
    try:
        with checkpoints.terminate_as_interrupt():
            # The progress lines are this module's (numbered as the table is), not KerasTuner's.
            tuner.search(verbose=0)
    except KeyboardInterrupt:
        where = f" in trial {current['trial']}{planned}" if current else ""
        command = continue_command(project.name, config_file, overrides, name, trials)
        raise Interrupted(
            f"search {name!r} interrupted{where}; that trial runs again first. Continue with: {command}"
        ) from None
    if os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief":
        return pd.DataFrame(), directory / "best.toml"
    table = _results(tuner, name, project.name, space)
    files.write_bytes_atomically(table.to_csv(index=False).encode(), directory / RESULTS_FILE)
    best_file = directory / "best.toml"
    # KerasTuner falls back on a failed trial (no score) when none completed.
    best = [trial for trial in tuner.oracle.get_best_trials(1) if trial.status == "COMPLETED"]
    if not best:
        raise UserError(f"no trial of search {name!r} finished; see the run folders of its trials")
    chosen = {key: _trial_value(best[0].hyperparameters, key, values) for key, values in space.items()}
    # The search's own --config and --set, then the best trial's values: what that trial trained
    # with (a Hyperband trial's epoch budget aside), as the keys it changed from the defaults.
    best_config = project.load_config(
        config_file, [*overrides, *(_override(key, value) for key, value in chosen.items())]
    )
    _write_variant(
        best_file,
        best_config.changed(),
        f"# The best trial of search {name!r}: trial {trial_number(best[0].trial_id)}, "
        f"best validation loss {best[0].score:.6g}.\n"
        "# Its config: the search's --config and --set, then the trial's values.\n"
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
                "trial": trial_number(trial.trial_id),
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
    files.write_bytes_atomically((header + tomli_w.dumps(nested)).encode(), path)
