"""How much of the project a command reads: the first-party modules it imports and their lines.

    .venv/bin/python -m bench.imports                      # train mnist (defaults) and serve
    .venv/bin/python -m bench.imports predict mnist digit.png
    .venv/bin/python -m bench.imports --write              # record in bench/results/imports.md

Each command runs in a fresh Python process exactly as ``python -m common ARGS`` would (it
trains, if it is ``train``), with runs written to a temporary MODELS_DIR so the real models/ is
untouched; ``serve`` stops once its app is built, before it listens. A module counts when its file
lies in common/ or projects/; its lines are the file's own. The modules only training needs are
named, so that a command answering requests which loads one shows it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import RESULTS_DIR, ROOT, add_write_argument, report, run
from common.core.errors import UserError

RESULTS = RESULTS_DIR / "imports.md"
FIRST_PARTY = ("common", "projects")
# What only training needs: serve, predict, evaluate and ensemble should load none of these.
TRAINING = (
    "common.training.steps",
    "common.training.checkpoints",
    "common.training.devices",
    "common.kit.batches",
)
# serve on a port the system picks, so a server already on 8000 does not stop the measurement.
DEFAULT_COMMANDS = (["train", "mnist"], ["serve", "--port", "0"])


def first_party_modules() -> dict[str, int]:
    """Each loaded first-party module with its file's line count, by name."""
    found = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file or name.split(".")[0] not in FIRST_PARTY:
            continue
        path = Path(file).resolve()
        if ROOT in path.parents:
            found[name] = len(path.read_text(encoding="utf-8").splitlines())
    return dict(sorted(found.items()))


def _measure_here(command: list[str]) -> None:
    """Runs ``python -m common COMMAND`` in this process, then prints its modules as JSON."""
    if command[0] == "serve":
        import uvicorn

        uvicorn.Server.run = lambda *_args, **_kwargs: None  # type: ignore[method-assign]
    from common.__main__ import main as common_main

    status = common_main(["-q", *command])
    print(json.dumps({"status": status, "modules": first_party_modules()}))


def measure(command: list[str]) -> dict:
    """The first-party modules ``python -m common COMMAND`` imports, from a fresh process."""
    with tempfile.TemporaryDirectory(prefix="imports-") as models_dir:
        completed = subprocess.run(
            [sys.executable, "-m", "bench.imports", "--in-process", *command],
            cwd=ROOT,
            env={**os.environ, "MODELS_DIR": models_dir},
            capture_output=True,
            text=True,
        )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"python -m common {' '.join(command)} failed: {last}")
    result = json.loads(lines[-1])
    if result["status"]:
        raise UserError(f"python -m common {' '.join(command)} exited with status {result['status']}")
    return result["modules"]


def render(measured: list[tuple[list[str], dict[str, int]]]) -> list[str]:
    lines = [
        "# What a command imports",
        "",
        "`.venv/bin/python -m bench.imports --write`: each command in a fresh process, its",
        "first-party modules (files in common/ and projects/) and their lines.",
        "",
    ]
    for command, modules in measured:
        training = [name for name in TRAINING if name in modules]
        lines += [
            f"## `python -m common {' '.join(command)}`: {len(modules)} modules, "
            f"{sum(modules.values()):,} lines",
            "",
            "| module | lines |",
            "|---|---:|",
            *(f"| {name} | {count} |" for name, count in modules.items()),
            "",
            "training modules loaded: " + (", ".join(training) if training else "none"),
            "",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.imports", description=__doc__.split("\n")[0])
    add_write_argument(parser, RESULTS)
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        help="the arguments of python -m common (default: `train mnist`, then `serve`)",
    )
    options = parser.parse_args(argv)
    if options.in_process:
        _measure_here(options.command)
        return 0
    commands = [options.command] if options.command else [list(c) for c in DEFAULT_COMMANDS]
    report(render([(command, measure(command)) for command in commands]), RESULTS, options.write)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
