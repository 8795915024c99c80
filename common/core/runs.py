"""Run folders: one per training, their state and lock, ``latest`` and the promoted run.

``models/<project>/<run-name>/`` holds ``model.keras``, the resolved ``config.toml`` (and
``config_sources.json``: where its values came from, and the defaults of the day),
``history.csv``, ``metrics.json``, checkpoints and plots, and ``state.json``: whether the run is
``running``, ``interrupted``, ``completed`` or ``failed``. A running run's process holds the
operating system's lock on its ``.lock``; a run whose state says running but whose process is gone
(killed: the system dropped its lock) reads as interrupted. ``models/<project>/latest`` points to
the newest *completed* run: it is moved only after everything of a run is saved, so a crash or an
interrupt leaves the previous ``latest`` and its files untouched.

Which model answers ``predict``, ``evaluate``, the demos and ``serve`` when no ``--model`` is
given is the user's choice, never a side effect: the run they promoted (``python -m common promote
PROJECT RUN``, recorded in ``models/<project>/promoted.json``), else the shipped model. Training,
tuning and ensembling move ``latest`` (``--model latest``) but never what answers, unless asked
(``train --promote``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.core import commands, files
from common.core.errors import UserError
from common.core.files import (
    UnreadableFile,
    load_json,
    sync_folder,
    write_bytes_atomically,
    write_json,
)
from common.core.paths import models_dir, pretrained_dir, short_path

if TYPE_CHECKING:
    from common.core.project import Project

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.toml"
# Beside it, where each of its values came from and the project's defaults of the day
# (``Config.record``): what ``runs`` shows as the keys a run changed.
SOURCES_FILE = "config_sources.json"
METRICS_FILE = "metrics.json"
LAST_CHECKPOINT = "checkpoint-last.keras"
BEST_CHECKPOINT = "checkpoint-best.keras"
STATE_FILE = "state.json"
LOCK_FILE = ".lock"
PROMOTED_FILE = "promoted.json"
PROMOTION_LOCK = ".promote.lock"

RUNNING, INTERRUPTED, COMPLETED, FAILED = "running", "interrupted", "completed", "failed"
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_run_name(name: str | None) -> None:
    """A ``--name`` becomes part of a folder name: letters, digits, ``.``, ``_`` and ``-`` only."""
    if name is not None and not _RUN_NAME.fullmatch(name):
        raise UserError(
            f"--name {name!r}: use up to 64 letters, digits, '.', '_' or '-' (no '/', no leading '.'), "
            "e.g. --name wide-dropout"
        )


def new_run_dir(project: str, name: str | None = None) -> Path:
    """Creates and returns a fresh ``models/<project>/<timestamp>[-name]`` folder."""
    check_run_name(name)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{name}" if name else stamp
    parent = models_dir() / project
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1000):
            candidate = parent / (base if attempt == 0 else f"{base}-{attempt}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
    except OSError as error:
        raise UserError(
            f"cannot create a run folder in {parent}: {error.strerror}; "
            "free space or set MODELS_DIR to a writable folder"
        ) from None
    raise UserError(f"could not create a new run folder in {parent}")


def check_writable(folder: Path, instead: str | None = None) -> None:
    """Makes ``folder`` if it is missing and checks that a file can be written in it; otherwise
    one line naming it (``instead``: what else the user can do than set ``MODELS_DIR``)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UserError(
            f"cannot write in {folder}: {error.strerror or error}; set MODELS_DIR to a writable folder"
            + (f" or {instead}" if instead else "")
        ) from None


def run_folder_holding(path: Path) -> Path | None:
    """The run folder ``path`` is or lies inside (through links: ``latest`` is its run), or
    ``None``. A run folder holds the run's ``config.toml`` beside its model, metrics or state: every
    run's does from its first epoch, an ensemble's and the shipped models' too."""
    resolved = path.resolve()
    for folder in (resolved, *resolved.parents):
        if (folder / CONFIG_FILE).is_file() and any(
            (folder / name).is_file() for name in (METRICS_FILE, STATE_FILE, MODEL_FILE)
        ):
            return folder
    return None


def read_state(run_dir: Path) -> dict:
    """A run's ``state.json`` as written, or ``{}`` when it is missing or unreadable."""
    return read_json(run_dir / STATE_FILE)


def run_state(run_dir: Path) -> str:
    """``running``, ``interrupted``, ``completed`` or ``failed``.

    A run that says it is running but whose process is gone was killed: it is interrupted. A run
    from before state files existed is completed when it has its model and metrics.
    """
    state = read_state(run_dir).get("state")
    if state == RUNNING and lock_owner(run_dir) is None:
        return INTERRUPTED
    if state in (RUNNING, INTERRUPTED, COMPLETED, FAILED):
        return state
    if (run_dir / MODEL_FILE).is_file() and (run_dir / METRICS_FILE).is_file():
        return COMPLETED
    if (run_dir / LAST_CHECKPOINT).is_file():
        return INTERRUPTED
    # Its config saved, and killed before its first state was written: nothing was trained, so
    # it resumes from the first epoch (a failure would have been recorded, with its message).
    return (
        INTERRUPTED if (run_dir / CONFIG_FILE).is_file() and not (run_dir / STATE_FILE).exists() else FAILED
    )


def set_state(run_dir: Path, state: str, **details: Any) -> None:
    """Records a run's state (and why, for failures) atomically, keeping what was recorded."""
    record = {**read_state(run_dir), "state": state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
    record.pop("message", None)
    record.update(details)
    write_bytes_atomically(
        (json.dumps(record, indent=2, sort_keys=True) + "\n").encode(), run_dir / STATE_FILE
    )


def lock_owner(run_dir: Path) -> int | None:
    """The process id of the process training a run, or ``None`` when none is.

    Whether one is, the operating system says: a trainer holds a lock on the run's ``.lock`` (see
    :class:`RunLock`) as long as it lives; the lock is tried here on a file of our own, shared, so
    that checks never exclude each other. The process id written in the file only names the holder:
    a killed trainer leaves its file behind, and whatever id it names decides nothing.
    """
    descriptor = _open_lock_file(run_dir / LOCK_FILE, os.O_RDONLY)
    if descriptor is None:
        return None
    try:
        if files.try_lock(descriptor, shared=True):
            return None
        return _written_owner(descriptor)
    finally:
        os.close(descriptor)


def _open_lock_file(path: Path, flags: int) -> int | None:
    """A descriptor of a run's ``.lock`` (never waiting on a FIFO put in its place), or ``None``
    when it is missing, cannot be opened or is not a regular file."""
    try:
        descriptor = os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0), 0o644)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        return None
    return descriptor


def _written_owner(descriptor: int, wait: float = 1.0) -> int:
    """The process id a lock's holder wrote into its file. The holder writes it right after it took
    the lock: an empty file is waited on for up to ``wait`` seconds (0 when still none is written)."""
    deadline = time.monotonic() + wait
    while True:
        os.lseek(descriptor, 0, os.SEEK_SET)
        try:
            pid = int(os.read(descriptor, 64).split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        if pid > 0 or time.monotonic() > deadline:
            return max(pid, 0)
        time.sleep(0.005)


class RunLock:
    """Held while a process trains into a run folder, so two processes never train one run.

    The operating system holds it: an exclusive lock on the run's ``.lock`` (see
    :func:`common.core.files.try_lock`), taken without waiting, dropped when the process ends however it
    ends. Taking it is one step that exactly one of several processes (or threads) starting together
    wins; a process never decides that another's lock is stale and deletes it. Once taken, the file
    gets the holder's process id, for messages (:func:`lock_owner`); on exit the holder removes the
    file while it still holds the lock, and a taker that locked a file removed meanwhile tries again.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self.descriptor: int | None = None

    def __enter__(self) -> RunLock:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            descriptor = _open_lock_file(self.path, os.O_RDWR | os.O_CREAT)
            if descriptor is None:
                raise UserError(f"cannot lock {self.path.parent}: cannot create {self.path.name} in it")
            if files.try_lock(descriptor):
                if self._names_this_file(descriptor):
                    os.ftruncate(descriptor, 0)
                    os.write(descriptor, f"{os.getpid()}\n".encode())
                    self.descriptor = descriptor
                    return self
                os.close(descriptor)  # Its last holder removed it after we opened it: lock the new one.
                continue
            # Refused: a trainer holds it, or only checks of it do (lock_owner's shared locks, for an
            # instant). A shared lock tells them apart.
            trained = not files.try_lock(descriptor, shared=True)
            owner = _written_owner(descriptor) if trained else 0
            os.close(descriptor)
            if trained:
                raise UserError(
                    f"{self.path.parent} is being trained by process {owner or '(unknown)'}; "
                    "wait for it or stop it first"
                )
            time.sleep(0.005)
        raise UserError(f"could not lock {self.path.parent}; other processes keep checking it")

    def _names_this_file(self, descriptor: int) -> bool:
        try:
            named, held = self.path.stat(), os.fstat(descriptor)
        except FileNotFoundError:
            return False
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def __exit__(self, *exc_info: object) -> None:
        if self.descriptor is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # While still held: no one is locking a file gone.
        finally:
            os.close(self.descriptor)
            self.descriptor = None


def check_resumable(project: str, run_arg: Path, locked: bool = False) -> Path:
    """The run folder ``--resume`` may continue: an interrupted run of this project, in its
    models folder, that no other process is training; anything else is a one-line error.
    ``locked``: checked again once this process holds the run's lock, since another resume may
    have completed the run between the first check and the lock."""
    parent = (models_dir() / project).resolve()
    if run_arg.name == "latest" or run_arg.is_symlink():
        raise UserError(
            f"--resume {run_arg}: name the interrupted run's own folder, not a link; `latest` is always a "
            "completed run (to train more from it: --continue-from)"
        )
    if not run_arg.is_dir():
        raise UserError(f"--resume {run_arg}: no such run folder")
    run_dir = run_arg.resolve()
    if run_dir.parent != parent:
        raise UserError(f"--resume {run_arg}: not a run folder of {project} (those are in {parent})")
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"--resume {run_arg}: not a run folder (no {CONFIG_FILE})")
    owner = None if locked else lock_owner(run_dir)
    if owner is not None:
        raise UserError(f"--resume {run_arg}: process {owner} is training this run right now")
    state = run_state(run_dir)
    if state == COMPLETED:
        raise UserError(
            f"--resume {run_arg}: this run is completed; to train it further into a new run use "
            f"`python -m common train {project} --continue-from {run_arg} --set train.epochs=N`"
        )
    if state == FAILED:
        reason = read_state(run_dir).get("message", "see its logs")
        raise UserError(f"--resume {run_arg}: this run failed ({reason}); start a new run instead")
    return run_dir


def check_continuable(project: str, run_arg: Path) -> Path:
    """The run that ``--continue-from`` starts from: a completed run, the shipped model folder, or
    an interrupted run (from its last checkpoint, to go on with other settings, e.g. a new
    schedule, while the interrupted run itself stays resumable)."""
    if not run_arg.is_dir():
        raise UserError(f"--continue-from {run_arg}: no such run folder")
    run_dir = run_arg.resolve()
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"--continue-from {run_arg}: not a run folder (no {CONFIG_FILE})")
    if run_dir != pretrained_dir(project).resolve():
        state = run_state(run_dir)
        if state == RUNNING:
            raise UserError(
                f"--continue-from {run_arg}: process {lock_owner(run_dir)} is training this run right now; "
                "stop it first (its last epoch is kept), or wait until it completes"
            )
        if state == FAILED:
            raise UserError(f"--continue-from {run_arg}: this run failed and kept no weights to start from")
    if not continuation_model(run_dir).is_file():
        raise UserError(f"--continue-from {run_arg}: needs its {MODEL_FILE} (or {LAST_CHECKPOINT})")
    return run_dir


def continuation_model(run_dir: Path, announce: bool = True) -> Path:
    """The weights ``--continue-from`` starts from: the completed run's model, or the last
    checkpoint of an interrupted one; its best checkpoint when the last one is damaged (said
    when ``announce``: not when the name is only given as advice)."""
    if run_state(run_dir) == INTERRUPTED:
        last, best = run_dir / LAST_CHECKPOINT, run_dir / BEST_CHECKPOINT
        if archive_problem(last) is not None and archive_problem(best) is None:
            if announce:
                log.warning(
                    "%s is damaged (%s); starting from %s", last.name, archive_problem(last), best.name
                )
            return best
        return last
    return run_dir / MODEL_FILE


def archive_problem(model_file: Path) -> str | None:
    """Why a ``.keras`` file is not a whole model archive (missing, not a regular file, truncated,
    not a zip, a member's checksum wrong, no config or weights), or ``None`` when it is one."""
    import zipfile

    try:
        if not stat.S_ISREG(model_file.stat().st_mode):
            return "not a regular file"
        with zipfile.ZipFile(model_file) as archive:
            names = set(archive.namelist())
            if not {"config.json", "model.weights.h5"} <= names:
                return "not a Keras model archive"
            broken = archive.testzip()
    except FileNotFoundError:
        return "missing"
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, RuntimeError) as error:
        return f"not a whole model archive ({error})"
    return f"its {broken} is corrupt" if broken is not None else None


def mark_latest(project: str, run_dir: Path) -> None:
    """Points ``models/<project>/latest`` at run_dir, atomically.

    A symlink where the system allows one; otherwise (Windows without developer mode) a small
    text file holding the run folder's name, which :func:`resolve_model` reads the same way.
    """
    parent = models_dir() / project
    if run_dir.resolve().parent != parent.resolve() or run_state(run_dir) != COMPLETED:
        raise UserError(f"'latest' may only point to a completed run folder in {parent}; not {run_dir}")
    latest = parent / "latest"
    temporary = parent / f".latest-{os.getpid()}"
    try:
        temporary.symlink_to(run_dir.name, target_is_directory=True)
    except OSError:
        temporary.write_text(run_dir.name + "\n")
    if latest.is_dir() and not latest.is_symlink():
        raise UserError(f"{latest} is a real folder; rename it so 'latest' can point to runs")
    os.replace(temporary, latest)


def latest_run(project: str) -> Path | None:
    """The newest completed run of a project, or ``None`` if it has none."""
    latest = models_dir() / project / "latest"
    if latest.is_symlink() or latest.is_dir():
        return latest.resolve() if latest.exists() else None
    if latest.is_file():
        run_dir = latest.parent / latest.read_text().strip()
        return run_dir if run_dir.is_dir() else None
    return None


def is_stand_in(run_dir: Path) -> bool:
    """Whether a run was trained on a stand-in for the project's dataset (an offline fallback
    sample or generated data), as its ``metrics.json`` records (``stand_in_data``)."""
    metrics = read_metrics(run_dir)
    return bool(metrics.get("stand_in_data"))


def read_metrics(run_dir: Path) -> dict:
    """A run's ``metrics.json``, or ``{}`` when it has none or it cannot be read."""
    return read_json(run_dir / METRICS_FILE)


def read_json(path: Path) -> dict:
    """A run folder's JSON file (metrics, progress, state), or ``{}`` when it is missing or
    unreadable (see :func:`load_json` for why it could not be read)."""
    try:
        return load_json(path)
    except UnreadableFile:
        return {}


def promoted_name(project: str) -> str | None:
    """The name of the run recorded as promoted in ``models/<project>/promoted.json``, as written
    (it may have been deleted since), or ``None`` when none is (no record).

    Raises:
        UserError: the record is damaged (not a whole JSON object, no run name in it), naming it:
            read as "none promoted", it would hand answering back to the shipped model unsaid.
    """
    record = models_dir() / project / PROMOTED_FILE
    advice = (
        f"promote a run again (`python -m common promote {project} RUN`) or go back to the shipped "
        f"model (`python -m common promote {project} --clear`)"
    )
    try:
        if not os.path.lexists(record):
            return None
        name = load_json(record).get("run")
    except UnreadableFile as error:
        raise UserError(f"{error}; {advice}") from None
    if not isinstance(name, str) or not _RUN_NAME.fullmatch(name):
        raise UserError(f'{record}: names no run (its "run" is {json.dumps(name)}); {advice}')
    return name


def promoted_run(project: str) -> Path | None:
    """The run the user promoted, or ``None`` when none is.

    Raises:
        UserError: the promoted run is gone or no longer a completed run: answering with another
            model instead would be the silent switch promotion exists to prevent.
    """
    name = promoted_name(project)
    if name is None:
        return None
    run_dir = models_dir() / project / name
    if run_state(run_dir) != COMPLETED or not (run_dir / MODEL_FILE).is_file():
        raise UserError(
            f"the promoted {project} run {name!r} is no longer a completed run in {run_dir.parent}; "
            f"promote another (`python -m common promote {project} RUN`), go back to the shipped model "
            f"(`python -m common promote {project} --clear`), or pass --model"
        )
    return run_dir.resolve()


def check_promotable(project: str, run_arg: str) -> Path:
    """The run folder ``promote`` may record: a completed run of this project, named by its
    folder, its name in ``models/<project>/`` or ``latest``; anything else is a one-line error."""
    parent = models_dir() / project
    if run_arg == "latest":
        run_dir = latest_run(project)
        if run_dir is None:
            raise UserError(f"promote latest: no completed {project} run yet")
    elif "/" not in run_arg and (parent / run_arg).is_dir():
        run_dir = parent / run_arg
    else:
        run_dir = Path(run_arg)
    if not run_dir.is_dir():
        raise UserError(
            f"promote {run_arg}: no such run of {project} (see `python -m common runs {project}`)"
        )
    run_dir = run_dir.resolve()
    if run_dir == pretrained_dir(project).resolve():
        raise UserError(
            f"promote {run_arg}: the shipped model answers whenever no run is promoted; "
            f"`python -m common promote {project} --clear` goes back to it"
        )
    if run_dir.parent != parent.resolve() or not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"promote {run_arg}: not a run folder of {project} (those are in {parent})")
    state = run_state(run_dir)
    if state != COMPLETED or not (run_dir / MODEL_FILE).is_file():
        advice = (
            f"finish it with `{commands.command_line('train', project, ['--resume', str(run_dir)])}` first"
            if state == INTERRUPTED
            else "only a completed run can answer"
        )
        raise UserError(f"promote {run_arg}: this run is {state}, not completed; {advice}")
    for name in (MODEL_FILE, METRICS_FILE, CONFIG_FILE):
        if (run_dir / name).is_symlink():
            # Its score and config would describe a model that is another run's.
            raise UserError(
                f"promote {run_arg}: its {name} is a link to {os.readlink(run_dir / name)}, not this run's "
                "own; promote the run that made it"
            )
    return run_dir


def promote(project: str, run_dir: Path | None) -> None:
    """Records ``run_dir`` (checked by :func:`check_promotable`) as the model that answers by
    default, atomically; ``None`` clears it, so the shipped model answers again. Promotions made
    at the same time take their turns (the last one stays); a damaged record is named, then
    replaced."""
    record = models_dir() / project / PROMOTED_FILE
    with promotion_lock(record.parent):
        try:
            promoted_name(project)
        except UserError as error:
            log.warning("replacing the damaged record %s", error)
        if run_dir is None:
            record.unlink(missing_ok=True)
            sync_folder(record.parent)
            return
        write_json({"run": run_dir.name, "promoted": time.strftime("%Y-%m-%dT%H:%M:%S")}, record)


@contextmanager
def promotion_lock(folder: Path) -> Iterator[None]:
    """Held while a project's ``promoted.json`` is read and rewritten, so promotions made at once
    take their turns: the operating system's lock on ``models/<project>/.promote.lock``, waited
    for, dropped when its process ends however it ends. The file stays (removing it would let
    a waiter lock a file no one else sees)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder / PROMOTION_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise UserError(
            f"cannot write in {folder}: {error.strerror or error}; set MODELS_DIR to a writable folder"
        ) from None
    try:
        deadline = time.monotonic() + 60
        while not files.try_lock(descriptor):
            if time.monotonic() > deadline:
                raise UserError(f"another promote of {folder.name} has held {PROMOTION_LOCK} for a minute")
            time.sleep(0.01)
        yield
    finally:
        os.close(descriptor)


def default_model_dir(project: str) -> Path | None:
    """The run that answers when no ``--model`` is given. The rule, and the whole of it:

    1. the run the user promoted (:func:`promote`);
    2. else the shipped model in ``models/pretrained/<project>/``;
    3. else ``None`` (a new project that ships none, until a run is promoted).

    Training, tuning and ensembling never change it; ``--model latest`` reaches the newest run.
    """
    promoted = promoted_run(project)
    if promoted is not None:
        return promoted
    shipped = pretrained_dir(project)
    if (shipped / MODEL_FILE).is_file():
        return shipped
    return None


def default_model_summary(project: str) -> str:
    """What answers by default, in a few words, for the messages of commands that do not answer:
    ``the promoted run NAME``, ``the shipped model`` or ``no model``."""
    try:
        name = promoted_name(project)
    except UserError as error:
        return f"no model until its promoted record is repaired ({error})"
    try:
        run_dir = default_model_dir(project)
    except UserError:
        return f"no model (the promoted run {name!r} is gone)"
    if run_dir is None:
        return "no model (none promoted, none shipped)"
    if run_dir.resolve() == pretrained_dir(project).resolve():
        return "the shipped model"
    return f"the promoted run {run_dir.name}"


def resolve_model(project: str, model_arg: str | None) -> tuple[Path, Path | None]:
    """Finds the model file and its saved config for ``--model``.

    Args:
        project: the project's name.
        model_arg: a run folder, a run's name in ``models/<project>/``, a ``.keras`` file, ``latest``,
            ``pretrained``, or ``None`` for the default model (see :func:`default_model_dir`).

    Returns:
        ``(model_file, config_file)``; the config is ``None`` when none lies beside the model.
    """
    train_command = f"`python -m common train {project}` (or `make train-{project}`)"
    if model_arg is None:
        run_dir = default_model_dir(project)
        if run_dir is None:
            latest = latest_run(project)
            if latest is None:
                raise UserError(
                    f"no trained {project} model yet; run `python -m common train {project} --promote` "
                    "first, or pass --model PATH"
                )
            raise UserError(
                f"no {project} model is promoted and the project ships none; promote a run "
                f"(`python -m common promote {project} {latest.name}`, the newest), or pass --model latest"
            )
    elif model_arg == "latest":
        run_dir = latest_run(project)
        if run_dir is None:
            raise UserError(f"no completed {project} run yet; run {train_command} first")
    elif model_arg == "pretrained":
        run_dir = pretrained_dir(project)
        if not (run_dir / MODEL_FILE).is_file():
            raise UserError(
                f"the {project} project ships no pretrained model; train one with {train_command}"
            )
    else:
        path = Path(model_arg)
        named = models_dir() / project / model_arg
        if not path.exists() and Path(model_arg).name == model_arg and named.is_dir():
            path = named  # A run's name, as `runs` lists it.
        if path.is_dir():
            run_dir = path
        elif path.is_file():
            if path.suffix != ".keras":
                raise UserError(f"--model expects a .keras file or a run folder; received: {path}")
            config = path.parent / CONFIG_FILE
            return path, config if config.is_file() else None
        else:
            raise UserError(f"--model {model_arg}: no such file or folder")
    model_file = run_dir / MODEL_FILE
    if not model_file.is_file():
        raise UserError(f"{run_dir} holds no {MODEL_FILE}; is it a completed run folder?")
    config = run_dir / CONFIG_FILE
    return model_file, config if config.is_file() else None


def describe_model(
    project: Project,
    model_file: Path,
    chosen_by_default: bool = False,
    show_path: Callable[[Path], str] = short_path,
) -> list[str]:
    """Lines saying which model answers (the promoted run, the shipped model, or the one
    ``--model`` named), what it was trained on and its recorded test score; and, for the default
    model, how to reach a newer run that does not answer. ``show_path`` writes the model's path
    (by default relative to the current folder)."""
    run_dir = model_file.parent.resolve()
    metrics = read_metrics(run_dir)
    try:
        promoted = promoted_name(project.name)
    except UserError:
        promoted = None  # Said where it decides something: when the default model is asked for.
    if run_dir == pretrained_dir(project.name).resolve():
        kind = "shipped model" + (" (no run promoted)" if chosen_by_default else "")
    elif promoted is not None and run_dir == (models_dir() / project.name / promoted).resolve():
        kind = "promoted model"
    else:
        kind = "model"
    facts = [f"data: {metrics['data_source']}"] if "data_source" in metrics else []
    key = project.headline.metric
    if isinstance(metrics.get(key), (int, float)):
        facts.append(f"recorded {key} {metrics[key]:.4f}")
    lines = [f"{kind}: {show_path(model_file)}" + (f" ({'; '.join(facts)})" if facts else "")]
    no_better = project.headline.no_better(metrics)
    if no_better:
        lines.append(f"warning: {no_better}")
    latest = latest_run(project.name)
    if chosen_by_default and latest is not None and latest.resolve() != run_dir:
        lines.append(
            f"the newest run {latest.name} answers only when promoted "
            f"(`python -m common promote {project.name} {latest.name}`) or named (--model latest)"
        )
    return lines
