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


def resolve_model(project: str, model_arg: str | None) -> tuple[Path, Path | None]:
    """Finds the model file and its saved config for ``--model``.

    Args:
        project: the project's name.
        model_arg: a run folder, a ``.keras`` file, ``latest``, ``pretrained``, or ``None`` for
            the newest completed run, falling back to the shipped pretrained model.

    Returns:
        ``(model_file, config_file)``; the config is ``None`` when none lies beside the model.
    """
    if model_arg in (None, "latest"):
        run_dir = latest_run(project)
        if run_dir is None and model_arg is None:
            run_dir = pretrained_dir(project)
        if run_dir is None or not (run_dir / MODEL_FILE).is_file():
            raise UserError(
                f"no trained {project} model yet; run `python -m common train {project}` "
                "(or `make train-{project}`) first, or pass --model PATH"
            )
    elif model_arg == "pretrained":
        run_dir = pretrained_dir(project)
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
