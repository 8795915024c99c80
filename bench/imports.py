"""How much of the project a command reads: the first-party modules it imports and their lines.

    python bench/imports.py train mnist            # what `make train-mnist` imports (it trains)
    python bench/imports.py serve                  # the server: which modules, and no training one
    python bench/imports.py predict mnist digit.png

The command runs in this process exactly as ``python -m common ARGS`` would (``serve`` stops
before it listens), with runs written to a temporary MODELS_DIR, so the real models/ is untouched.
A module counts when its file lies in common/ or projects/; lines are the file's own lines.
The modules that only training needs are named, so that a ``serve`` that loads one shows it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("common", "projects")
# What only training needs: a command that answers requests should load none of these.
TRAINING = ("common.workflow", "common.checkpoints", "common.devices", "common.batches")


def first_party_modules() -> dict[str, int]:
    """Each loaded first-party module with its file's line count."""
    found = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file or name.split(".")[0] not in FIRST_PARTY:
            continue
        path = Path(file).resolve()
        if ROOT in path.parents:
            found[name] = len(path.read_text(encoding="utf-8").splitlines())
    return dict(sorted(found.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the arguments of python -m common")
    args = parser.parse_args(argv)
    if not args.command:
        parser.error("name a command, e.g. `train mnist` or `serve`")
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("MODELS_DIR", tempfile.mkdtemp(prefix="imports-"))
    if args.command[0] == "serve":
        import uvicorn  # noqa: PLC0415 - patched so that serve returns once its app is built

        uvicorn.Server.run = lambda *_args, **_kwargs: None  # type: ignore[method-assign]
    from common.__main__ import main as common_main  # noqa: PLC0415

    try:
        status = common_main(args.command)
    except SystemExit as exit_:
        status = exit_.code
    modules = first_party_modules()
    print(f"\n`python -m common {' '.join(args.command)}` (exit {status or 0}) imported:")
    for name, lines in modules.items():
        print(f"  {name:32} {lines:5} lines")
    print(f"{len(modules)} first-party modules, {sum(modules.values())} lines")
    training = [name for name in TRAINING if name in modules]
    print("training modules loaded: " + (", ".join(training) if training else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
