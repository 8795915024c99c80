"""The fingerprint of what the lock files are made from.

That is pyproject.toml's requires-python, dependencies and optional dependencies, and the
requirement lines of the inputs beside this file (*.in), comments and layout left out, so that
editing a comment or the tool settings in pyproject.toml does not call for a new lock.
`make lock` writes it to lock.sha256; `make install` and tests/test_lock.py compare it with the
current files, so a dependency edited without `make lock` is noticed.

    python requirements/fingerprint.py           # print it
    python requirements/fingerprint.py --check   # exit 1, with one line saying what to do, if stale

Standard library only: it runs before .venv exists.
"""

import hashlib
import json
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RECORDED = HERE / "lock.sha256"


def _requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def fingerprint(root: Path = ROOT) -> str:
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    inputs = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "inputs": {p.name: _requirement_lines(p) for p in sorted((root / "requirements").glob("*.in"))},
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def main(argv: list[str]) -> int:
    current = fingerprint()
    if argv[1:] == ["--check"]:
        recorded = RECORDED.read_text(encoding="utf-8").strip() if RECORDED.exists() else ""
        if recorded != current:
            print(
                "warning: pyproject.toml's dependencies (or requirements/*.in) changed since the lock "
                "files were made; run `make lock` and commit requirements/.",
                file=sys.stderr,
            )
            return 1
        return 0
    print(current)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
