"""Runs ``python -m common train ...`` and kills itself with SIGKILL at a chosen instant.

Usage: python -m tests.crash_training WHERE N [TRUNCATE] -- train PROJECT ARGS...

WHERE is ``fsync`` (the N-th file flushed to disk: a checkpoint or progress record being
written) or ``replace`` (the N-th rename: a commit being applied, or the final save). With
TRUNCATE, the file being flushed is cut to half its size first, as a torn write would leave it.
Used by the crash tests to stop training at instants a signal could not aim at.
"""

from __future__ import annotations

import os
import signal
import sys

from common import runs
from common.__main__ import main


def _arm(where: str, count: int, truncate: bool) -> None:
    calls = 0

    def should_die() -> bool:
        nonlocal calls
        calls += 1
        return calls == count

    if where == "fsync":
        original_fsync = runs.fsync_file

        def fsync_then_maybe_die(path):
            if should_die():
                if truncate:
                    os.truncate(path, os.path.getsize(path) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            original_fsync(path)

        runs.fsync_file = fsync_then_maybe_die
    elif where == "replace":
        original_replace = os.replace

        def replace_or_die(source, target):
            if should_die():
                os.kill(os.getpid(), signal.SIGKILL)
            original_replace(source, target)

        os.replace = replace_or_die
    else:
        raise SystemExit(f"unknown kill point {where!r}")


if __name__ == "__main__":
    separator = sys.argv.index("--")
    where, count, *flags = sys.argv[1:separator]
    _arm(where, int(count), "truncate" in flags)
    sys.exit(main(sys.argv[separator + 1 :]))
