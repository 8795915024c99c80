"""Finds the projects in ``projects/``, so a new one touches only its folder.

A project is a package ``projects/<name>/`` with a ``config.toml`` whose ``__init__.py``
declares ``PROJECT = Project(...)`` (see :mod:`common.core.project`). Importing that ``__init__.py``
imports no Keras, so ``list``, ``--help`` and config checks stay quick; each function's module is
imported only when the function is first needed. ``common`` never imports a project by name.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

from common.core.config import did_you_mean
from common.core.errors import UserError
from common.core.project import Project


def _project_folders() -> dict[str, Path]:
    """Every folder of the ``projects`` package that has an ``__init__.py`` and a ``config.toml``."""
    import projects

    folders: dict[str, Path] = {}
    for base in map(Path, projects.__path__):
        for folder in sorted(base.iterdir()):
            if (folder / "__init__.py").is_file() and (folder / "config.toml").is_file():
                folders.setdefault(folder.name, folder)
    return folders


def project_names() -> list[str]:
    """Names of the project folders, sorted."""
    return sorted(_project_folders())


def get_project(name: str) -> Project:
    """Finds ``projects/<name>/`` and returns its declared ``PROJECT``, with its name and folder.

    Raises:
        UserError: no such project, its ``__init__.py`` cannot be imported or declares no
            ``PROJECT``, or a declared ``"module:function"`` names a missing module file.
    """
    folders = _project_folders()
    if name not in folders:
        # Project names are lowercase Python names: `train MNIST` means mnist.
        hint = did_you_mean(name.lower(), sorted(folders))
        raise UserError(f"unknown project '{name}'{hint}; available projects: {', '.join(sorted(folders))}")
    folder = folders[name]
    try:
        package = importlib.import_module(f"projects.{name}")
    except Exception as error:  # noqa: BLE001 - a user's broken package is one line, not a traceback
        raise UserError(
            f"project '{name}': projects/{name}/__init__.py cannot be imported "
            f"({type(error).__name__}: {error}); fix it and try again"
        ) from None
    declared = getattr(package, "PROJECT", None)
    if not isinstance(declared, Project):
        raise UserError(
            f"project '{name}': projects/{name}/__init__.py declares no `PROJECT = Project(...)` "
            "(see common/core/project.py, or create one with `python -m common new`)"
        )
    project = dataclasses.replace(declared, name=name, folder=folder)
    project.check()
    return project
