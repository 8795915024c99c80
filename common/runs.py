"""Run folders: one per training, atomic saves, and the ``latest`` pointer.

``models/<project>/<run-name>/`` holds ``model.keras``, the resolved ``config.toml``,
``history.csv``, ``metrics.json``, checkpoints and plots. ``models/<project>/latest`` points to the
newest *completed* run: it is moved only after everything of a run is saved, so a crash or an
interrupt leaves the previous ``latest`` and its files untouched.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.registry import ROOT

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.json"
LAST_CHECKPOINT = "checkpoint-last.keras"
BEST_CHECKPOINT = "checkpoint-best.keras"


def models_dir() -> Path:
    """Where run folders go: ``models/`` at the project root, or ``$MODELS_DIR`` if set."""
    return Path(os.environ.get("MODELS_DIR") or ROOT / "models")


def pretrained_dir(project: str) -> Path:
    """The shipped model of a project, committed to the repository."""
    return ROOT / "models" / "pretrained" / project


def new_run_dir(project: str, name: str | None = None) -> Path:
    """Creates and returns a fresh ``models/<project>/<timestamp>[-name]`` folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{name}" if name else stamp
    parent = models_dir() / project
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        candidate = parent / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise UserError(f"could not create a new run folder in {parent}")


def mark_latest(project: str, run_dir: Path) -> None:
    """Points ``models/<project>/latest`` at run_dir, atomically.

    A symlink where the system allows one; otherwise (Windows without developer mode) a small
    text file holding the run folder's name, which :func:`resolve_model` reads the same way.
    """
    parent = models_dir() / project
    latest = parent / "latest"
    temporary = parent / f".latest-{os.getpid()}"
    try:
        temporary.symlink_to(run_dir.name, target_is_directory=True)
    except OSError:
        temporary.write_text(run_dir.name + "\n")
    if latest.is_dir() and not latest.is_symlink():
        raise UserError(f"{latest} is a real folder; rename it so 'latest' can point to runs")
    os.replace(temporary, latest)


def latest_run(project: str) -> Path | None:
    """The newest completed run of a project, or ``None`` if it has none."""
    latest = models_dir() / project / "latest"
    if latest.is_symlink() or latest.is_dir():
        return latest.resolve() if latest.exists() else None
    if latest.is_file():
        run_dir = latest.parent / latest.read_text().strip()
        return run_dir if run_dir.is_dir() else None
    return None


def is_stand_in(run_dir: Path) -> bool:
    """Whether a run was trained on a stand-in for the project's dataset (an offline fallback
    sample or generated data), as its ``metrics.json`` records (``stand_in_data``)."""
    metrics = read_metrics(run_dir)
    return bool(metrics.get("stand_in_data"))


def read_metrics(run_dir: Path) -> dict:
    """A run's ``metrics.json``, or ``{}`` when it has none or it cannot be read."""
    try:
        return json.loads((run_dir / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def default_model_dir(project: str) -> Path | None:
    """The run that answers when no ``--model`` is given. The rule:

    1. the newest completed run (``latest``), unless it was trained on a stand-in for the
       project's data (the offline fallback sample, generated faces);
    2. else the shipped model in ``models/pretrained/<project>/``;
    3. else ``latest`` even if trained on a stand-in; else ``None``.

    So training on a fallback never silently replaces a better shipped model; ``--model latest``
    still reaches that run.
    """
    latest = latest_run(project)
    if latest is not None and not is_stand_in(latest):
        return latest
    shipped = pretrained_dir(project)
    if (shipped / MODEL_FILE).is_file():
        return shipped
    return latest


def resolve_model(project: str, model_arg: str | None) -> tuple[Path, Path | None]:
    """Finds the model file and its saved config for ``--model``.

    Args:
        project: the project's name.
        model_arg: a run folder, a ``.keras`` file, ``latest``, ``pretrained``, or ``None`` for
            the default model (see :func:`default_model_dir`).

    Returns:
        ``(model_file, config_file)``; the config is ``None`` when none lies beside the model.
    """
    train_command = f"`python -m common train {project}` (or `make train-{project}`)"
    if model_arg is None:
        run_dir = default_model_dir(project)
        if run_dir is None:
            raise UserError(
                f"no trained {project} model yet; run {train_command} first, or pass --model PATH"
            )
    elif model_arg == "latest":
        run_dir = latest_run(project)
        if run_dir is None:
            raise UserError(f"no completed {project} run yet; run {train_command} first")
    elif model_arg == "pretrained":
        run_dir = pretrained_dir(project)
        if not (run_dir / MODEL_FILE).is_file():
            raise UserError(
                f"the {project} project ships no pretrained model; train one with {train_command}"
            )
    else:
        path = Path(model_arg)
        if path.is_dir():
            run_dir = path
        elif path.is_file():
            if path.suffix != ".keras":
                raise UserError(f"--model expects a .keras file or a run folder; received: {path}")
            config = path.parent / CONFIG_FILE
            return path, config if config.is_file() else None
        else:
            raise UserError(f"--model {model_arg}: no such file or folder")
    model_file = run_dir / MODEL_FILE
    if not model_file.is_file():
        raise UserError(f"{run_dir} holds no {MODEL_FILE}; is it a completed run folder?")
    config = run_dir / CONFIG_FILE
    return model_file, config if config.is_file() else None


def describe_model(project: str, model_file: Path, chosen_by_default: bool = False) -> list[str]:
    """Lines saying which model answers, what it was trained on and its recorded test score;
    and, for the default model, which newer run it was preferred to and why."""
    run_dir = model_file.parent
    metrics = read_metrics(run_dir)
    kind = "shipped model" if run_dir.resolve() == pretrained_dir(project).resolve() else "model"
    facts = [f"data: {metrics['data_source']}"] if "data_source" in metrics else []
    for key in ("test_accuracy", "rmse_ratio"):
        if isinstance(metrics.get(key), (int, float)):
            facts.append(f"recorded {key} {metrics[key]:.4f}")
            break
    lines = [f"{kind}: {_short(model_file)}" + (f" ({'; '.join(facts)})" if facts else "")]
    latest = latest_run(project)
    if chosen_by_default and latest is not None and latest.resolve() != run_dir.resolve():
        lines.append(
            f"not the newest run {_short(latest)}: it was trained on a stand-in for the real data "
            "(pass --model latest to use it)"
        )
    return lines


def _short(path: Path) -> str:
    """A path relative to the current folder when it lies inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def save_model_atomically(model: Any, path: Path) -> None:
    """Saves to a temporary file first, so an interrupted save never leaves a broken model."""
    temporary = path.with_name(f".{path.stem}.partial.keras")
    model.save(temporary)
    os.replace(temporary, path)


def write_json(data: dict, path: Path) -> None:
    """Writes JSON via a temporary file and an atomic rename."""
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")
    os.replace(temporary, path)


def _jsonable(value: Any) -> Any:
    # numpy scalars and arrays reach metrics from the projects' evaluation code.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
