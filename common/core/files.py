"""Files written so that a kill at any instant leaves the old one or the new one whole, and small
files (configs, a run's records) read without trusting them to be what their names say: a FIFO
would block the reader for ever, a device or a huge file would fill the memory, a record with NaN
in it is not JSON. Run folders, checkpoints, sweeps and exports all write through here."""

from __future__ import annotations

import json
import math
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import Any

from common.core.errors import UserError


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


def write_bytes_atomically(data: bytes, path: Path) -> None:
    """Writes a file so that a kill at any instant leaves either the old file or the new one:
    a temporary file in the same folder, flushed to disk, then renamed over the target.

    The temporary file's name is this write's own (``.<name>.<pid>-<random>.partial``): two
    processes writing one file at once (two ``promote``s) each rename their own whole file, the
    last one staying, where one shared name had each truncate and rename the other's."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
        try:
            descriptor = os.open(temporary, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Flushes a folder's entries (the renames in it) to disk, where the system allows it."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# Where a byte-range lock stands in for flock (Windows): far past any content, so the lock never
# keeps a reader from the file's own bytes.
_LOCK_OFFSET = 2**30


def try_lock(descriptor: int, shared: bool = False) -> bool:
    """Takes the operating system's lock on an open file without waiting: ``True`` when taken,
    ``False`` when another open file holds it (of any process, this one included). A shared lock
    is refused only by an exclusive one. The system drops a lock when its file is closed or its
    process ends, however it ends (a kill included): no lock is ever left behind for someone to
    judge stale, and taking one is a single step that two processes cannot both win.

    Where the system has no ``flock`` (Windows), a one-byte lock far past the file's contents
    stands in, and a shared lock is exclusive."""
    if sys.platform == "win32":
        import msvcrt

        os.lseek(descriptor, _LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(descriptor, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


# The files a run writes are kilobytes (progress.json: its history and seed states); a larger one
# was not written by a run.
MAX_SMALL_FILE_BYTES = 64 * 2**20


def read_small_file(path: Path, limit: int = MAX_SMALL_FILE_BYTES) -> bytes:
    """A run file's bytes: a :class:`UnreadableFile` naming it when it is not a regular file (a FIFO
    is never opened to wait on) or over ``limit`` bytes; a missing one: ``FileNotFoundError``."""
    return read_regular_file(path, limit)


def load_json(path: Path) -> dict:
    """A run folder's JSON object, read strictly: ``{}`` when the file is missing; a
    :class:`UnreadableFile` naming the file when it is not a regular file, too large, not UTF-8, not
    strict JSON (NaN and Infinity are not JSON, and no run writes them), nested too deep, or not
    an object."""
    try:
        data = read_small_file(path)
    except FileNotFoundError:
        return {}
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise UnreadableFile(f"{path}: not UTF-8 text") from None
    except RecursionError:
        raise UnreadableFile(f"{path}: nested too deep to be a run's JSON") from None
    except ValueError as error:
        raise UnreadableFile(f"{path}: not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise UnreadableFile(f"{path}: holds a JSON {type(value).__name__}, not an object")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def save_model_atomically(model: Any, path: Path) -> None:
    """Saves to a temporary file flushed to disk first, so a kill never leaves a broken model."""
    temporary = partial_model_path(path)
    model.save(temporary)
    fsync_file(temporary)
    os.replace(temporary, path)
    sync_folder(path.parent)


def partial_model_path(path: Path) -> Path:
    """Where a model is written before it is renamed into place (Keras needs the .keras suffix)."""
    return path.with_name(f".{path.stem}.partial.keras")


def fsync_file(path: Path) -> None:
    """Flushes a written file's contents to disk."""
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def write_json(data: dict, path: Path) -> None:
    """Writes strict JSON (no NaN) atomically: a temporary file, flushed, then renamed."""
    write_bytes_atomically((strict_json(data, indent=2, sort_keys=True) + "\n").encode(), path)


def strict_json(data: Any, **options: Any) -> str:
    """JSON that every parser reads: NaN and infinities (a diverged model's output) become null."""
    return json.dumps(_finite(json.loads(json.dumps(data, default=_jsonable))), allow_nan=False, **options)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _jsonable(value: Any) -> Any:
    # numpy scalars and arrays reach metrics from the projects' evaluation code.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
