"""Where things are: the repository, its projects and models folders, and paths as users read them.

Imports nothing of the template, so any module (and any project) can ask where a folder is
without loading project discovery or the run machinery.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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


# An absolute path inside a sentence: ``/`` (or ``C:\\``) not after a word, a dot or ``:`` (so
# ``https://`` and ``and/or`` are left alone), its folders, and the last part, kept.
_ABSOLUTE_IN_TEXT = re.compile(r"(?<![\w.:/\\$])(?:/|[A-Za-z]:[\\/])(?:[^\s/\\'\"`,;()\[\]]+[/\\])+")


def shown_text(text: str) -> str:
    """A message or description (an error, a run's ``data_source``) as a web client is shown it:
    a path inside the repository made relative to it, one inside ``$MODELS_DIR`` named from there,
    and any other absolute path cut to its last part. What the server's folders are called is
    nobody else's business, and one named in an error is a hint to whoever probes it."""
    for folder, shown in ((ROOT, ""), (models_dir(), "$MODELS_DIR/")):
        for form in {str(folder.resolve()), str(folder)}:
            text = text.replace(form.rstrip("/\\") + os.sep, shown)
    return _ABSOLUTE_IN_TEXT.sub("", text)


def short_path(path: Path) -> str:
    """A path relative to the current folder when it lies inside it (for messages to the user
    who is in that folder), else as it is."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
