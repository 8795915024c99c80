"""The shared spine of the template: Keras' five steps, once, for every project in ``projects/``.

Read it by layers, each a folder that may import only the layers above it in this list:

- ``core/``: the contract a project declares (``PROJECT = Project(...)``, ``core/project.py``),
  its config, the registry that finds projects, run folders, atomic files, paths and errors.
  No Keras, no NumPy: the CLI lists projects and runs without starting a backend.
- ``kit/``: what a project imports to load and show its data: ``Splits``, batches, images,
  plots, the classifier report, the Tk window. May import ``core``.
- ``training/``: ``steps.py`` is the five steps (create, compile, fit, save, predict) in file
  order; the machinery that keeps a run safe (checkpoints, devices, distillation, tracking) sits
  beside it. May import ``core`` and ``kit``.
- ``serving/``: a saved model loaded safely, evaluated and asked (``loading.py``), the web app
  and its request batching, and exports. May import ``core`` and ``kit``; never ``training``.
- ``experiments/``: the runs table, compare, tune and ensembles. May import every layer above.
- ``scaffold/``: ``new``, the project generator, with its templates.

At the top: ``__main__.py``, the command line (a table of verbs), and ``keras_setup.py``, which
makes a project's own Keras objects known (every layer may use it) and makes the first import of
Keras quiet once an entry point (the command line, the tests, the benchmarks) asks it to; the
modules themselves ``import keras`` plainly.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

# Where each module of the earlier flat layout lives now (``experiments`` is now the folder of
# ``runs_table``, ``tuning`` and ``ensemble``). A project written against the old names
# (``from common.config import Config``) keeps working, with one warning naming the new import.
MOVED = {
    **{
        name: f"common.core.{name}"
        for name in ("config", "project", "registry", "errors", "paths", "files", "runs")
    },
    "data": "common.kit.splits",
    **{name: f"common.kit.{name}" for name in ("batches", "streaming", "images", "plots", "classification")},
    "windows": "common.kit.tk_window",
    "workflow": "common.training.steps",
    **{
        name: f"common.training.{name}"
        for name in ("checkpoints", "devices", "parallel", "distill", "tracking")
    },
    "inference": "common.serving.loading",
    "serve": "common.serving.app",
    "batching": "common.serving.batching",
    "export": "common.serving.export",
    "tuning": "common.experiments.tuning",
    "ensemble": "common.experiments.ensemble",
    "backend": "common.keras_setup",
}


class _MovedModule(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an import of an old flat name (``common.config``) with the module it moved to."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, name = fullname.partition(".")
        if prefix != "common" or name not in MOVED or fullname == MOVED[name]:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec) -> ModuleType:
        new_name = MOVED[spec.name.partition(".")[2]]
        warnings.warn(f"{spec.name} is now {new_name}: import it from there", FutureWarning, stacklevel=2)
        return importlib.import_module(new_name)

    def exec_module(self, module: ModuleType) -> None:
        """The moved module is already executed."""


if not any(isinstance(finder, _MovedModule) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModule())
