"""Finds the projects in ``projects/`` by naming convention, so a new one touches only its folder.

A project is a package ``projects/<name>/`` with a ``config.toml`` and an ``__init__.py`` that
exposes plain functions (see :class:`ProjectModule`). ``common`` never imports a project by name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from common.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
PROJECTS_DIR = ROOT / "projects"


class ProjectModule(Protocol):
    """What ``projects/<name>/__init__.py`` exposes; the optional ones are marked so.

    ``load_data(config, need_training=True) -> common.data.Splits``
        The train / validation / test splits and where they came from. With
        ``need_training=False`` only the test split is needed (for ``evaluate``).
    ``build_model(config, splits) -> keras.Model``
        An uncompiled model, preprocessing layers inside; the workflow compiles it.
    ``evaluate(model, splits, config, out_dir) -> dict``
        The task's metrics beside its trivial baseline, with its plots written to ``out_dir``.
    ``predict(model, inputs, config, options) -> list[dict]``
        Raw inputs (file paths) to one JSON-ready result each.
    ``format_prediction(result) -> str`` (optional)
        One human-readable line for a result; JSON is printed otherwise.
    ``add_predict_arguments(parser)`` (optional)
        Extra ``predict`` flags such as ``--days`` or ``--out``.
    ``validate_config(config)`` (optional)
        Project-specific value checks; raise ``UserError`` naming the key.
    ``demo(argv)`` (optional)
        The interactive window, run by ``python -m common demo <name>``.
    """

    def load_data(self, config: Any, need_training: bool = True) -> Any: ...

    def build_model(self, config: Any, splits: Any) -> Any: ...

    def evaluate(self, model: Any, splits: Any, config: Any, out_dir: Path) -> dict: ...

    def predict(self, model: Any, inputs: list[str], config: Any, options: Any) -> list[dict]: ...


_REQUIRED_FUNCTIONS = ("load_data", "build_model", "evaluate", "predict")


@dataclass(frozen=True)
class Project:
    """One discovered project: its name, folder and imported module."""

    name: str
    folder: Path
    module: ModuleType

    @property
    def default_config(self) -> Path:
        return self.folder / "config.toml"

    def config_variants(self) -> list[Path]:
        """Every TOML file in the project folder: the defaults first, then the variants."""
        return [self.default_config] + sorted(
            path for path in self.folder.glob("*.toml") if path.name != "config.toml"
        )


def _project_folders() -> dict[str, Path]:
    """Every folder of the ``projects`` package that has an ``__init__.py`` and a ``config.toml``."""
    import projects

    folders = {}
    for base in map(Path, projects.__path__):
        for folder in sorted(base.iterdir()):
            if (folder / "__init__.py").is_file() and (folder / "config.toml").is_file():
                folders.setdefault(folder.name, folder)
    return folders


def project_names() -> list[str]:
    """Names of the project folders, sorted."""
    return sorted(_project_folders())


def get_project(name: str) -> Project:
    """Imports ``projects.<name>`` and checks it exposes the functions the workflow calls."""
    folders = _project_folders()
    if name not in folders:
        raise UserError(f"unknown project '{name}'; available projects: {', '.join(sorted(folders))}")
    module = importlib.import_module(f"projects.{name}")
    missing = [function for function in _REQUIRED_FUNCTIONS if not hasattr(module, function)]
    if missing:
        raise UserError(f"project '{name}' does not define: {', '.join(missing)}")
    return Project(name=name, folder=folders[name], module=module)
