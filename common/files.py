"""Reading the small files a project keeps (configs, a run's records) without trusting them to be
what their names say: a FIFO would block the reader for ever, a device or a huge file would fill
the memory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from common.errors import UserError


class UnreadableFile(UserError):
    """A file that cannot be read or is not what belongs there; the message names it and why."""


def read_regular_file(path: Path, limit: int) -> bytes:
    """A regular file's bytes; anything else (a FIFO, a device, a folder) or a file over
    ``limit`` bytes is an :class:`UnreadableFile` naming it. A missing file: ``FileNotFoundError``."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        # Opened without blocking, then checked: a FIFO is never waited on, and a file swapped for
        # one between a check and the open is still caught.
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise UnreadableFile(f"{path}: cannot be read ({error.strerror or error})") from None
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise UnreadableFile(f"{path}: not a regular file")
        try:
            data = file.read(limit + 1)
        except OSError as error:
            raise UnreadableFile(f"{path}: cannot be read ({error.strerror or error})") from None
    if len(data) > limit:
        raise UnreadableFile(f"{path}: over {limit / 2**20:g} MB, far larger than such a file is")
    return data
