"""What a user needs after a few experiments: the table of a project's runs, and runs compared.

``python -m common runs mnist`` lists every run folder, newest first: its state, the data it was
trained on, the headline test score beside its baseline, epochs, time, backend, and the config
keys it changed from the project's defaults as they were when it ran (its recorded
``config_sources.json``); the promoted run (the one that answers by default) is marked. A trial of
``tune`` shows its best validation loss (what the search chose by) and never its test scores, so
no trial is picked by the test split. ``python -m common compare RUN RUN ...`` shows the keys that
differ between runs, their scores, and one plot of their validation curves. Neither imports
Keras: both read the files a run leaves (``config.toml``, ``config_sources.json``,
``metrics.json``, ``history.csv``, ``state.json``).
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable
from functools import cache, partial
from pathlib import Path
from typing import Any, TypeGuard

import pandas as pd

from common.core import files, runs
from common.core.config import changed_from, flatten, read_toml
from common.core.errors import UserError
from common.core.project import Project

# Metrics for which a smaller number is better; `--sort` puts those first, others largest first.
_SMALLER_IS_BETTER = ("loss", "rmse", "mae", "mape", "ratio", "seconds", "p_value")
# A trial of `tune`: ``<time>-tune-<search>-<KerasTuner's trial id, from 0>``.
_TRIAL_RUN = re.compile(r"\d{8}-\d{6}-tune-(?P<search>.+)-(?P<id>\d+)")
# What a trial's row keeps of its metrics: its test scores are left out, so no trial is picked
# by the test split (the search chose by validation loss; its best config is retrained and
# tested on its own).
_TRIAL_METRICS = ("epochs_run", "train_seconds", "parameters")

# What a row's changed keys were compared with: the defaults the run recorded when it started,
# or, for a run from before runs recorded them, the project's defaults as they are today.
RECORDED, TODAYS = "recorded defaults", "today's defaults"

# The state shown for a run whose files cannot be read.
UNREADABLE = "unreadable"


def run_folders(project: str) -> list[Path]:
    """Every run folder of a project (a folder with a ``config.toml``), newest first."""
    parent = runs.models_dir() / project
    if not parent.is_dir():
        return []
    folders = [
        path
        for path in parent.iterdir()
        if path.is_dir() and not path.is_symlink() and (path / runs.CONFIG_FILE).is_file()
    ]
    return sorted(folders, key=lambda path: path.name, reverse=True)


def flat_config(path: Path) -> dict[str, Any]:
    """A TOML file's keys as ``{"train.epochs": 3, ...}``."""
    return flatten(read_toml(path))


def todays_defaults(project: Project) -> dict[str, Any]:
    """The project's defaults as they are now (the shared ones and its ``config.toml``)."""
    defaults = project.load_config(check_paths=False).defaults
    return defaults if defaults is not None else {}


def describe_run(
    project: Project, run_dir: Path, defaults: Callable[[], dict[str, Any]] | None = None
) -> dict:
    """One row of the runs table for ``run_dir``; a run whose files cannot be read is a row with
    the state ``unreadable`` and ``unreadable`` saying which file and why, so one damaged folder
    never hides the others.

    Its ``changed`` keys are those whose values differ from the project's defaults as the run
    recorded them when it started; a run that recorded none (made before runs recorded them) is
    compared with today's defaults (``defaults()``, read once for the whole table), and its
    ``changed_against`` says so."""
    try:
        metrics = files.load_json(run_dir / runs.METRICS_FILE)
        config = flat_config(run_dir / runs.CONFIG_FILE)
        progress = files.load_json(run_dir / "progress.json")
        files.load_json(run_dir / runs.STATE_FILE)
        recorded = files.load_json(run_dir / runs.SOURCES_FILE).get("defaults")
    except UserError as error:
        return _unreadable_row(run_dir, str(error))
    if isinstance(recorded, dict):
        changed, against = changed_from(recorded, config), RECORDED
    else:
        changed, against = changed_from((defaults or partial(todays_defaults, project))(), config), TODAYS
    try:
        promoted = runs.promoted_name(project.name)
    except UserError:
        promoted = None  # A damaged record is named below the table (runs.default_model_summary).
    row: dict[str, Any] = {
        "name": run_dir.name,
        "path": str(run_dir),
        "state": runs.run_state(run_dir),
        "promoted": promoted is not None and run_dir.name == promoted,
        "data_source": metrics.get("data_source"),
        "metric": None,
        "value": None,
        "baseline": None,
        "epochs": metrics.get("epochs_run", progress.get("epochs_done")),
        "train_seconds": metrics.get("train_seconds", progress.get("train_seconds")),
        "backend": metrics.get("keras_backend"),
        "changed": changed,
        "changed_against": against,
        "metrics": {key: value for key, value in metrics.items() if _is_number(value)},
    }
    trial = tune_trial(run_dir)
    if trial is not None:
        search, number = trial
        val_loss = _best_val_loss(run_dir)
        row["tune"] = {"search": search, "trial": number}
        row["metrics"] = {key: value for key, value in row["metrics"].items() if key in _TRIAL_METRICS}
        if _is_number(val_loss):
            row.update(metric="val_loss", value=float(val_loss))
            row["metrics"]["val_loss"] = float(val_loss)
        return row
    headline = project.headline
    if _is_number(metrics.get(headline.metric)):
        baseline = metrics.get(headline.baseline) if headline.baseline else headline.baseline_value
        row.update(metric=headline.metric, value=metrics[headline.metric], baseline=baseline)
        row["no_better"] = bool(headline.no_better(metrics))
    for key in ("data_source", "backend"):
        if not isinstance(row[key], (str, type(None))):
            return _unreadable_row(run_dir, f"{run_dir / runs.METRICS_FILE}: {key} is not text")
    if not all(value is None or _is_number(value) for value in (row["epochs"], row["train_seconds"])):
        return _unreadable_row(run_dir, f"{run_dir / runs.METRICS_FILE}: epochs or seconds not a number")
    return row


def _best_val_loss(run_dir: Path) -> float | None:
    """A run's lowest validation loss from its ``history.csv``; ``None`` when it cannot be read."""
    try:
        history = pd.read_csv(io.BytesIO(files.read_small_file(run_dir / "history.csv")))
        return history["val_loss"].min()
    except (files.UnreadableFile, OSError, KeyError, ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return None


def tune_trial(run_dir: Path) -> tuple[str, int] | None:
    """``(search name, trial number from 1)`` for a trial of ``tune`` (a run named as one, of a
    search whose state is in ``models/<project>/tune/``); ``None`` for any other run."""
    match = _TRIAL_RUN.fullmatch(run_dir.name)
    if match is None or not (run_dir.parent / "tune" / match["search"]).is_dir():
        return None
    return match["search"], int(match["id"]) + 1


def _unreadable_row(run_dir: Path, problem: str) -> dict:
    """The row of a run whose files cannot be read: which file (named within the folder) and why."""
    problem = problem.replace(f"{run_dir}{os.sep}", "").removeprefix("config file ")
    return {
        "name": run_dir.name,
        "path": str(run_dir),
        "state": UNREADABLE,
        "promoted": False,
        "unreadable": problem,
        "data_source": None,
        "metric": None,
        "value": None,
        "baseline": None,
        "epochs": None,
        "train_seconds": None,
        "backend": None,
        "changed": {},
        "changed_against": None,
        "metrics": {},
    }


def list_runs(project: Project, sort: str | None = None) -> list[dict]:
    """The rows of a project's runs, newest first, or by a metric (``--sort``)."""
    defaults = cache(partial(todays_defaults, project))  # Read only if a run recorded none.
    rows = [describe_run(project, path, defaults) for path in run_folders(project.name)]
    if sort:
        known = sorted({key for row in rows for key in row["metrics"]})
        if rows and sort not in known:
            raise UserError(f"--sort {sort}: no run recorded it; recorded metrics: {', '.join(known)}")
        smaller_first = any(word in sort for word in _SMALLER_IS_BETTER)
        with_value = [row for row in rows if sort in row["metrics"]]
        without = [row for row in rows if sort not in row["metrics"]]
        with_value.sort(key=lambda row: row["metrics"][sort], reverse=not smaller_first)
        rows = with_value + without
    return rows


def format_runs(rows: list[dict]) -> str:
    """The runs as an aligned text table."""
    if not rows:
        return "no runs yet"
    columns = {
        "run": [row["name"] + (" (promoted)" if row.get("promoted") else "") for row in rows],
        "state": [row["state"] for row in rows],
        "score": [_score(row) for row in rows],
        "epochs": [str(row["epochs"]) if row["epochs"] is not None else "" for row in rows],
        "time": [_duration(row["train_seconds"]) for row in rows],
        "backend": [row["backend"] or "" for row in rows],
        "data": [_short(row["data_source"] or "", 100) for row in rows],
        "changed from defaults": [
            ", ".join(f"{key}={value}" for key, value in row["changed"].items())
            + (" *" if row.get("changed_against") == TODAYS else "")
            for row in rows
        ],
    }
    columns = {name: [printable(cell) for cell in cells] for name, cells in columns.items()}
    widths = {name: max(len(name), *(len(cell) for cell in cells)) for name, cells in columns.items()}
    lines = ["  ".join(name.ljust(widths[name]) for name in columns).rstrip()]
    for index in range(len(rows)):
        lines.append("  ".join(cells[index].ljust(widths[name]) for name, cells in columns.items()).rstrip())
    if any(row.get("changed_against") == TODAYS for row in rows):
        lines.append(
            "* recorded no defaults (a run from before runs recorded them): changes from today's defaults"
        )
    return "\n".join(lines + _unreadable_lines(rows))


def _unreadable_lines(rows: list[dict]) -> list[str]:
    return [
        printable(f"{row['name']}: unreadable: {row['unreadable']}") for row in rows if row.get("unreadable")
    ]


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with its control characters (a terminal's escape sequences, line breaks) written
    out as ``\\x1b``: what a run's files hold is shown, never obeyed by the terminal."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


# What ``compare --out`` may name: the formats matplotlib writes that a browser or viewer shows.
PICTURE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def compare(project: Project, run_dirs: list[Path], out_path: Path) -> str:
    """Configs (differing keys only) and scores of several runs side by side as text, and their
    validation curves in one PNG at ``out_path``; a run whose files cannot be read is left out
    and named, with the file and why."""
    if out_path.suffix.lower() not in PICTURE_SUFFIXES:
        raise UserError(
            f"--out {out_path}: the validation curves are a picture; "
            f"name a {', '.join(PICTURE_SUFFIXES)} file"
        )
    described = [describe_run(project, run_dir) for run_dir in run_dirs]
    readable = [(row, run_dir) for row, run_dir in zip(described, run_dirs) if not row.get("unreadable")]
    rows = [row for row, _ in readable]
    configs = [flat_config(run_dir / runs.CONFIG_FILE) for _, run_dir in readable]
    keys = sorted({key for config in configs for key in config})
    differing = [key for key in keys if len({repr(config.get(key)) for config in configs}) > 1]
    names = [row["name"] for row in rows]
    lines = []
    if differing:
        frame = pd.DataFrame(
            {name: [_cell(config.get(key, "")) for key in differing] for name, config in zip(names, configs)}
        )
        frame.index = differing
        lines += ["config keys that differ:", frame.to_string()]
    elif len(rows) > 1:
        lines.append("the runs have the same config")
    metric_names = sorted({key for row in rows for key in row["metrics"]})
    if metric_names:
        frame = pd.DataFrame(
            {row["name"]: [_cell(row["metrics"].get(key, "")) for key in metric_names] for row in rows}
        )
        frame.index = metric_names
        lines += ["metrics:", frame.to_string()]
    lines += _unreadable_lines(described)
    unplotted = _plot_validation_curves([run_dir for _, run_dir in readable], names, out_path)
    lines += [f"{name}: no curve: {problem}" for name, problem in unplotted.items()]
    lines.append(f"validation curves: {out_path}")
    return "\n".join(printable(line) for text in lines for line in text.split("\n"))


def resolve_runs(project: Project, names: list[str]) -> list[Path]:
    """Run folders from paths or from names inside ``models/<project>/``; a run of another project
    is refused (its config keys and scores are not this project's)."""
    if len(names) < 2:
        raise UserError("compare needs two or more runs: python -m common compare mnist RUN RUN ...")
    folders = []
    for name in names:
        path = Path(name)
        if not path.is_dir():
            path = runs.models_dir() / project.name / name
        if not (path / runs.CONFIG_FILE).is_file():
            raise UserError(
                f"{name}: not a run folder of {project.name} (see `python -m common runs {project.name}`)"
            )
        other = _project_of(path)
        if other is not None and other != project.name:
            raise UserError(
                f"{name}: a run of the {other} project, not of {project.name}; compare runs of one "
                f"project: python -m common compare {other} RUN RUN ..."
            )
        folders.append(path)
    return folders


def _project_of(run_dir: Path) -> str | None:
    """The project a run folder belongs to, as its state records it or as the folder it lies in
    (``models/<project>/``) says; ``None`` when neither tells."""
    from common.core import registry

    recorded = runs.read_state(run_dir).get("project")
    if isinstance(recorded, str):
        return recorded
    parent = run_dir.resolve().parent.name
    return parent if parent in registry.project_names() else None


def default_comparison_path(project: str) -> Path:
    """``models/<project>/comparisons/<timestamp>.png``."""
    return runs.models_dir() / project / "comparisons" / f"{time.strftime('%Y%m%d-%H%M%S')}.png"


def _plot_validation_curves(run_dirs: list[Path], names: list[str], out_path: Path) -> dict[str, str]:
    """Plots the runs' validation curves; returns the runs whose ``history.csv`` could not be read,
    with why."""
    from common.kit import plots

    histories, unreadable = {}, {}
    for name, run_dir in zip(names, run_dirs):
        history_file = run_dir / "history.csv"
        try:
            history = pd.read_csv(io.BytesIO(files.read_small_file(history_file)))
            if "epoch" not in history:
                raise ValueError("no epoch column")
            histories[name] = history
        except FileNotFoundError:
            continue
        except files.UnreadableFile as error:
            unreadable[name] = str(error).replace(f"{run_dir}{os.sep}", "")
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as error:
            unreadable[name] = f"history.csv: not a table ({' '.join(str(error).split())[:200]})"
    runs.check_writable(out_path.parent, "--out PATH elsewhere")
    try:
        plots.plot_validation_curves(histories, out_path)
    except OSError as error:
        raise UserError(
            f"cannot write {out_path}: {error.strerror or error}; pass --out PATH elsewhere"
        ) from None
    return unreadable


def _cell(value: Any) -> str:
    """A table cell: whole numbers as they are, fractions to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _score(row: dict) -> str:
    if row["value"] is None:
        return ""
    if "tune" in row:
        trial = row["tune"]
        return f"{row['metric']} {row['value']:.4f} (tune trial {trial['trial']} of '{trial['search']}')"
    baseline = f" (baseline {row['baseline']:.4f})" if _is_number(row["baseline"]) else ""
    no_better = ", no better than it" if row.get("no_better") else ""
    return f"{row['metric']} {row['value']:.4f}{baseline}{no_better}"


def _duration(seconds: Any) -> str:
    if not _is_number(seconds):
        return ""
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
