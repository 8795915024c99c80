"""Runs ``python -m common train ...`` and kills itself with SIGKILL at a chosen instant.

Usage: python -m tests.crash_training WHERE N [TRUNCATE] -- train PROJECT ARGS...

WHERE is ``fsync`` (the N-th checkpoint file flushed to disk, while it is being written) or
``replace`` (the N-th rename: a commit being applied); for ``replace``, N may instead be a file
name, to die at the first rename onto that file (``model.keras``: the final save). With
TRUNCATE, the file being flushed is cut to half its size first, as a torn write would leave it.
Used by the crash tests to stop training at instants a signal could not aim at.
"""

from __future__ import annotations

import os
import signal
import sys

from common.__main__ import main
from common.core import files


def _arm(where: str, when: str, truncate: bool) -> None:
    calls = 0

    def should_die(target: object = None) -> bool:
        nonlocal calls
        if not when.isdigit():
            return os.path.basename(str(target)) == when
        calls += 1
        return calls == int(when)

    if where == "fsync":
        original_fsync = files.fsync_file

        def fsync_then_maybe_die(path):
            if should_die():
                if truncate:
                    os.truncate(path, os.path.getsize(path) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            original_fsync(path)

        files.fsync_file = fsync_then_maybe_die
    elif where == "replace":
        original_replace = os.replace

        def replace_or_die(source, target):
            if should_die(target):
                os.kill(os.getpid(), signal.SIGKILL)
            original_replace(source, target)

        os.replace = replace_or_die
    else:
        raise SystemExit(f"unknown kill point {where!r}")


if __name__ == "__main__":
    separator = sys.argv.index("--")
    where, count, *flags = sys.argv[1:separator]
    _arm(where, count, "truncate" in flags)
    sys.exit(main(sys.argv[separator + 1 :]))
