"""The layers of ``common/`` hold: each folder says what it is, and imports only what it may.

Read from the source (``ast``), so an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

COMMON = ROOT / "common"
# What each layer may import of common/, besides itself (common/__init__.py says why).
MAY_IMPORT = {
    "core": set(),
    "kit": {"core", "keras_setup"},
    "training": {"core", "kit", "keras_setup", "serving.loading"},
    "serving": {"core", "kit", "keras_setup"},
    "experiments": {"core", "kit", "keras_setup", "training", "serving", "scaffold"},
    "scaffold": {"core"},
}
# Third-party libraries the core must not start: it answers `list`, `runs` and config errors at once.
HEAVY = {"keras", "tensorflow", "numpy", "pandas", "jax", "torch", "sklearn"}


def _imports(path: Path) -> list[str]:
    """Every module a file imports, absolute, in the order written."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "common":
                names += [f"common.{alias.name}" for alias in node.names]
            else:
                names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return names


def _layer_of(module: str) -> str | None:
    """``common.serving.loading`` -> ``serving.loading`` when that is a named exception, else the
    layer (``serving``); None for anything outside common/."""
    parts = module.split(".")
    if parts[0] != "common" or len(parts) < 2:
        return None
    if ".".join(parts[1:3]) in {"serving.loading"}:
        return "serving.loading"
    return parts[1]


def test_common_keeps_at_most_six_modules_at_its_top_and_every_folder_opens_with_a_docstring():
    top = sorted(path.name for path in COMMON.glob("*.py"))
    assert len(top) <= 6, top
    folders = sorted(path.parent.name for path in COMMON.glob("*/__init__.py"))
    assert folders == sorted(MAY_IMPORT)
    for name in folders:
        docstring = ast.get_docstring(ast.parse((COMMON / name / "__init__.py").read_text()))
        assert docstring and "import" in docstring, f"common/{name}/__init__.py must say what it may import"


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_each_layer_imports_only_the_layers_it_may(layer):
    allowed = MAY_IMPORT[layer] | {layer}
    crossings = []
    for path in sorted((COMMON / layer).rglob("*.py")):
        for module in _imports(path):
            used = _layer_of(module)
            if used is None:
                if layer == "core" and module.split(".")[0] in HEAVY:
                    crossings.append(f"{path.relative_to(ROOT)} imports {module}")
                continue
            if used not in allowed and used.split(".")[0] not in allowed:
                crossings.append(f"{path.relative_to(ROOT)} imports {module}")
    assert crossings == []


def test_the_check_sees_a_crossing(tmp_path):
    # The scan itself: an import in a function body is found, and so is `from common import x`.
    source = tmp_path / "sample.py"
    source.write_text("def f():\n    from common import keras_setup\n    import common.training.steps\n")
    assert [_layer_of(name) for name in _imports(source)] == ["keras_setup", "training"]


def test_an_old_flat_name_still_imports_the_module_it_moved_to_with_a_warning():
    import importlib
    import sys

    import common.core.config

    sys.modules.pop("common.config", None)
    with pytest.warns(FutureWarning, match="common.config is now common.core.config"):
        moved = importlib.import_module("common.config")
    assert moved is common.core.config
    sys.modules.pop("common.config", None)
