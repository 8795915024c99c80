"""The tutorials of ``docs/tutorials/``: Python files in jupytext's percent format, each run as a
notebook.

One place runs them for the site (``docs/tools/hooks.py``, at ``make docs``) and for the test
suite (``tests/test_tutorials.py``), so what the tests execute is what the site shows. The
notebooks are made from the Python files at every run and never stored: the ``.py`` file is the
one source a reviewer reads and edits.
"""

from __future__ import annotations

import os
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS_DIR = ROOT / "docs" / "tutorials"

# The environment variable each tutorial reads for its size: "small" trains for seconds (the test
# suite, CI and a quick site build), "full" for minutes, with figures worth reading.
SIZE_VARIABLE = "TUTORIAL_SIZE"
SIZES = ("small", "full")

# Figures drawn inline, whatever backend the calling shell names: a figure the kernel does not
# send back as an output would be missing from the page.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def tutorial_files() -> list[Path]:
    """The tutorials, in reading order (their names start with their number)."""
    return sorted(TUTORIALS_DIR.glob("[0-9]*.py"))


def as_notebook(path: Path) -> nbformat.NotebookNode:
    """The tutorial as a notebook without outputs, as ``jupytext --to ipynb`` makes it."""
    return jupytext.read(path)


def execute(
    notebook: nbformat.NotebookNode, size: str, models_dir: Path, timeout: int = 900
) -> nbformat.NotebookNode:
    """Runs every cell of ``notebook`` in a fresh Python kernel, started in the repository so
    ``common`` and ``projects`` import, and returns it with its outputs.

    Args:
        notebook: the tutorial (``as_notebook``); filled in place.
        size: ``"small"`` or ``"full"``, given to the tutorial as ``TUTORIAL_SIZE``.
        models_dir: where run folders go (``MODELS_DIR``), never the repository's ``models/``.
        timeout: seconds one cell may take.

    Raises:
        ValueError: ``size`` is not one of ``SIZES``.
        nbclient.exceptions.CellExecutionError: a cell raised; its message holds the traceback.
    """
    if size not in SIZES:
        raise ValueError(f"{SIZE_VARIABLE} is {size!r}; use one of {', '.join(SIZES)}")
    environment = {
        **os.environ,
        SIZE_VARIABLE: size,
        "MODELS_DIR": str(models_dir),
        "MPLBACKEND": INLINE_BACKEND,
    }
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute(env=environment)
    return notebook


def images(notebook: nbformat.NotebookNode) -> int:
    """How many pictures (PNG or SVG outputs) the notebook's cells drew."""
    return sum(
        1
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if {"image/png", "image/svg+xml"} & set(output.get("data", {}))
    )
