"""Finds the projects in ``projects/`` by naming convention, so a new one touches only its folder.

A project is a package ``projects/<name>/`` with a ``config.toml``. Its functions (see
:class:`ProjectModule`) are looked up by name, first in its ``__init__.py``, then in the module of
the folder that by convention holds them: ``load_data`` in ``data.py``, ``build_model`` in
``model.py``, ``evaluate`` in ``evaluate.py``, ``predict`` in ``predict.py``, ``demo`` in
``demo.py``, ``validate_config`` in ``settings.py`` and ``training_batches`` in ``augment.py``.
Each module is imported only when one of its functions is first needed, so ``list``, ``--help``
and config checks never import Keras.
``common`` never imports a project by name.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from common.config import Config, did_you_mean, load_config
from common.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
PROJECTS_DIR = ROOT / "projects"


class ProjectModule(Protocol):
    """What a project exposes; the optional ones are marked so.

    ``load_data(config, need_training=True) -> common.data.Splits``
        The train / validation / test splits and where they came from. With
        ``need_training=False`` only the test split is needed (for ``evaluate``).
    ``build_model(config, splits) -> keras.Model``
        An uncompiled model, preprocessing layers inside; the workflow compiles it.
    ``evaluate(model, splits, config, out_dir) -> dict``
        The task's metrics beside its trivial baseline, with its plots written to ``out_dir``.
    ``predict(model, inputs, config, options) -> Iterable[dict]``
        Raw inputs (file paths) to one JSON-ready result each, in order. An input that cannot
        be read gives ``{"input": ..., "error": "..."}`` (see :func:`common.errors.per_input`)
        so the other inputs are still answered.
    ``format_prediction(result) -> str`` (optional)
        One human-readable line for a result; JSON is printed otherwise.
    ``format_report(metrics) -> str`` (optional)
        The task's own lines under ``evaluate``'s summary.
    ``add_predict_arguments(parser)`` (optional)
        Extra ``predict`` flags such as ``--days`` or ``--out``.
    ``validate_config(config)`` (optional, in ``settings.py``: it must not import Keras)
        Project-specific value checks; raise ``UserError`` naming the key.
    ``demo(argv)`` (optional)
        The interactive window, run by ``python -m common demo <name>``.
    ``training_batches(config, splits, first_epoch) -> common.batches.ShuffledBatches`` (optional)
        The training batches, e.g. a subclass that augments each batch in the input pipeline
        instead of in the model. Its order and randomness must depend only on the seed, the
        epoch and the batch index, so a resumed run trains on the same batches. Without it,
        ``ShuffledBatches`` of the training split.
    ``serving_model(model, config) -> keras.Model`` (optional, in ``model.py``)
        The model as ``predict`` and ``evaluate`` query it (e.g. averaged with each input's
        mirror image); ``export`` writes this one. Without it, the trained model itself.
    ``WEB_API`` (optional, a dict in ``predict.py``)
        How ``python -m common serve`` offers ``predict``: ``verb`` (the route
        ``/api/<name>/<verb>``, default ``predict``), ``upload`` (the suffix the uploaded file is
        saved with), ``upload_required`` (default true), ``options`` (query parameters with their
        defaults, passed to ``predict`` as its ``options``), ``picture_option`` (an option naming
        a picture ``predict`` writes, returned as a base64 PNG with ``?annotated=true``). A
        ``page.html`` in the project folder is served at ``/<name>``.
    """

    def load_data(self, config: Any, need_training: bool = True) -> Any: ...

    def build_model(self, config: Any, splits: Any) -> Any: ...

    def evaluate(self, model: Any, splits: Any, config: Any, out_dir: Path) -> dict: ...

    def predict(self, model: Any, inputs: list[str], config: Any, options: Any) -> Any: ...


# Where each function lives by convention when the package's __init__.py does not define it.
_CONVENTIONAL_MODULES = {
    "load_data": "data",
    "build_model": "model",
    "evaluate": "evaluate",
    "format_report": "evaluate",
    "predict": "predict",
    "format_prediction": "predict",
    "add_predict_arguments": "predict",
    "validate_config": "settings",
    "demo": "demo",
    "training_batches": "augment",
    "serving_model": "model",
    "WEB_API": "predict",
}
_REQUIRED_FUNCTIONS = ("load_data", "build_model", "evaluate", "predict")


class _ProjectFunctions:
    """Attribute access to a project's functions, importing each module on first use."""

    def __init__(self, package: str, folder: Path) -> None:
        self._package = package
        self._folder = folder

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        package = importlib.import_module(self._package)
        # A function the package itself defines wins; a submodule of the same name (the package
        # attribute `predict` once `predict.py` is imported) is not the function.
        defined = getattr(package, name, None)
        if defined is not None and not isinstance(defined, ModuleType):
            return defined
        module_name = _CONVENTIONAL_MODULES.get(name)
        if module_name is None or not (self._folder / f"{module_name}.py").is_file():
            raise AttributeError(f"project {self._package} has no function {name!r}")
        module = importlib.import_module(f"{self._package}.{module_name}")
        if not hasattr(module, name):
            raise AttributeError(f"{self._package}.{module_name} defines no function {name!r}")
        return getattr(module, name)


@dataclass(frozen=True)
class Project:
    """One discovered project: its name, folder and (imported on first use) functions."""

    name: str
    folder: Path

    @property
    def default_config(self) -> Path:
        return self.folder / "config.toml"

    @cached_property
    def module(self) -> ModuleType | _ProjectFunctions:
        """The project's functions, ``project.module.load_data(...)``; modules load lazily."""
        return _ProjectFunctions(f"projects.{self.name}", self.folder)

    def summary(self) -> str:
        """The first line of the package docstring, read without importing anything."""
        source = (self.folder / "__init__.py").read_text(encoding="utf-8")
        docstring = ast.get_docstring(ast.parse(source)) or ""
        return docstring.strip().split("\n")[0]

    def load_config(
        self,
        config_file: str | Path | None = None,
        overrides: list[str] | None = None,
        check_paths: bool = True,
    ) -> Config:
        """The project's defaults, an optional variant (or saved) config file, then ``--set``
        overrides, checked by the shared rules and the project's own ``validate_config``. Imports
        no Keras, so a bad value is reported before any data is read or folder made."""
        config = load_config(
            self.default_config,
            Path(config_file) if config_file else None,
            overrides,
            check_paths=check_paths,
        )
        validate = getattr(self.module, "validate_config", None)
        if validate is not None:
            validate(config)
        return config

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
    """Finds ``projects/<name>/`` and checks it provides the functions the workflow calls.

    Only the package's ``__init__.py`` is read (not imported) for the check: a function counts as
    provided when ``__init__.py`` defines or imports it, or its conventional module file exists.
    """
    folders = _project_folders()
    if name not in folders:
        # Project names are lowercase Python names: `train MNIST` means mnist.
        hint = did_you_mean(name.lower(), sorted(folders))
        raise UserError(f"unknown project '{name}'{hint}; available projects: {', '.join(sorted(folders))}")
    folder = folders[name]
    defined = _names_defined(folder / "__init__.py")
    missing = [
        function
        for function in _REQUIRED_FUNCTIONS
        if function not in defined and not (folder / f"{_CONVENTIONAL_MODULES[function]}.py").is_file()
    ]
    if missing:
        raise UserError(f"project '{name}' does not define: {', '.join(missing)}")
    return Project(name=name, folder=folder)


def _names_defined(init_file: Path) -> set[str]:
    """Top-level names an ``__init__.py`` defines or imports, read from its source."""
    names: set[str] = set()
    for node in ast.parse(init_file.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names
