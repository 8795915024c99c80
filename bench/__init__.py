"""Benchmarks: ``python -m bench.<name>`` measures one thing and prints the result.

A run leaves the git tree as it was: only ``--write`` records the result under
``bench/results/`` (``make bench`` passes it). Missing data or a missing model is one
``error:`` line saying how to get it, and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from common.keras_setup import quiet_keras_import

# The benchmarks import Keras themselves; the first of their imports drops the backend's start-up
# lines on every CPU, like the CLI's.
quiet_keras_import()

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = RESULTS_DIR.parent.parent


def shown(path: Path) -> Path:
    """A path as the results files show it: relative to the repository when inside it, so they
    read the same on every machine."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def add_write_argument(parser: argparse.ArgumentParser, results_file: Path) -> None:
    """Adds ``--write``: record the result in ``results_file`` (otherwise it is only printed)."""
    root = RESULTS_DIR.parent.parent
    shown = results_file.relative_to(root) if results_file.is_relative_to(root) else results_file
    parser.add_argument(
        "--write",
        action="store_true",
        help=f"also record the result in {shown} (without it nothing is written)",
    )


def report(lines: list[str], results_file: Path, write: bool) -> None:
    """Prints a benchmark's report and, with ``--write``, records it as ``results_file``."""
    print("\n".join(lines))
    if write:
        record(lines, results_file)


def record(lines: list[str], results_file: Path) -> None:
    """Writes a benchmark's report to ``results_file`` (what ``--write`` asks for)."""
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text("\n".join(lines))
    print(f"written to {results_file.relative_to(RESULTS_DIR.parent.parent)}")


def run(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Runs a benchmark's ``main``; a :class:`~common.core.errors.UserError` becomes one line, status 2."""
    from common.core.errors import UserError

    try:
        return int(main(argv) or 0)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
