"""Where things are: the repository, its projects and models folders, and paths as users read them.

Imports nothing of the template, so any module (and any project) can ask where a folder is
without loading project discovery or the run machinery.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECTS_DIR = ROOT / "projects"
DATA_DIR = ROOT / "data"


def models_dir() -> Path:
    """Where run folders go: ``models/`` at the project root, or ``$MODELS_DIR`` if set."""
    return Path(os.environ.get("MODELS_DIR") or ROOT / "models")


def pretrained_dir(project: str) -> Path:
    """The shipped model of a project, committed to the repository."""
    return ROOT / "models" / "pretrained" / project


def in_repository(path: Path) -> str:
    """A path relative to the repository when it lies inside it, else as it is: what is shown to
    a reader of any machine (``/api/health``, ``list``), never a machine's own folders."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def shown_path(path: Path) -> str:
    """A path as a web client is shown it: relative to the repository, or inside ``$MODELS_DIR``,
    else its name alone; never the server's own folders."""
    resolved = Path(path).resolve()
    if resolved.is_relative_to(ROOT):
        return in_repository(resolved)
    if resolved.is_relative_to(models_dir().resolve()):
        return f"$MODELS_DIR/{resolved.relative_to(models_dir().resolve())}"
    return resolved.name


def short_path(path: Path) -> str:
    """A path relative to the current folder when it lies inside it (for messages to the user
    who is in that folder), else as it is."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
