"""Commands as the user can type them again, such as the ``--resume`` one printed after Ctrl-C.

A command printed for the user to run next must run as printed. Training started with ``make
train-mnist`` runs ``.venv/bin/python -m common train mnist`` without the virtual environment
being active, so ``python -m common ...`` would find a Python without the project's packages; the
Makefile therefore tells the command line which target started it (:data:`MAKE_TARGET`), and
the command is given back in the same form: ``make train-mnist ARGS="--resume RUN"``. Started
without make, the command names the Python that runs now, as the user can type it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

# Set by the Makefile's targets to the target being made (``train-mnist``), for this process only.
MAKE_TARGET = "COMMON_MAKE_TARGET"
# What ARGS="..." may hold as it is: no character the shell reads inside double quotes.
_PLAIN_IN_DOUBLE_QUOTES = re.compile(r'[^"$`\\!]*')


def python_command() -> str:
    """How to name the Python that runs now: ``python`` where that name finds this very
    interpreter (an active virtual environment), else its path, relative to the current folder
    when inside it (``.venv/bin/python``). Symlinks are not followed: a virtual environment's
    ``python`` links to the system's, which lacks the project's packages."""
    executable = Path(sys.executable).absolute()
    found = shutil.which("python")
    if found is not None and Path(found).absolute() == executable:
        return "python"
    if executable.is_relative_to(Path.cwd()):
        return str(executable.relative_to(Path.cwd()))
    return str(executable)


def command_line(verb: str, project: str, args: list[str]) -> str:
    """``python -m common VERB PROJECT ARGS...`` as the user can run it again: through the same
    make target when one started this process (``make train-mnist ARGS="..."``), else with the
    Python that runs now (:func:`python_command`)."""
    target = f"{verb}-{project}"
    if os.environ.get(MAKE_TARGET) == target:
        if not args:
            return f"make {target}"
        joined = shlex.join(args)
        quoted = f'"{joined}"' if _PLAIN_IN_DOUBLE_QUOTES.fullmatch(joined) else shlex.quote(joined)
        return f"make {target} ARGS={quoted}"
    return shlex.join([python_command(), "-m", "common", verb, project, *args])
