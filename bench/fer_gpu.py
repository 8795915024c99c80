"""FER2013 on a GPU in one call: wide members, their ensemble, and a student distilled from it.

Every step is one of the template's own commands, each in a fresh process, in order:

1. members: ``python -m common train emojify --config projects/emojify/wide.toml --name member-K
   --set train.seed=K`` for K = 1, 2, ... (the same split, different weights, batches and
   augmentation);
2. ``python -m common ensemble emojify MEMBER MEMBER ... --name ensemble``: their average;
3. ``python -m common distill emojify --teacher ENSEMBLE --config projects/emojify/wide.toml
   --name student``: one network of the members' size taught by the ensemble.

Each scores itself on the test split as it ends (``metrics.json``): FER2013's own test split
when the data holds one (a ``test/`` folder, or the CSV's PublicTest and PrivateTest rows),
otherwise a stratified part of ``train/`` held out with the same seed by every step, beside the
majority-class baseline. Nothing is chosen on the test split: early choices (the best epoch)
use the validation split, carved from train.

The whole recipe fits a time budget (``--budget``): the first member is timed, and from its cost
the rest is planned, as many members as fit (at least two for an ensemble) and a student of as
many epochs as fit beside them (:func:`plan_rest`); a step still running when the budget ends is
stopped and reported as such. The results table goes to ``bench/results/fer-gpu.md`` (``--write``)
and to ``$OUT/fer-gpu.md`` with a log of every step (only ``$OUT`` comes back from a remote GPU
machine), rewritten after each step, so a run cut short still reports what it finished.

The data: ``.device-data/fer2013.tar.gz``, which ``bash bench/device_prepare.sh --fer2013`` packs
(``--pack`` here) from the JPEG files as they are, unpacked into the work folder; or ``--data``,
an archive, a folder in Kaggle's layout or ``fer2013.csv``; else ``$SHARED_DATA/fer2013``.

``--tiny`` runs the same steps on this CPU in about a minute (a tiny network, 20 faces of each
emotion, one epoch), to check the script; its table goes to ``bench/out/fer-gpu-tiny.md``.

Run: bash bench/fer_gpu.sh [--budget 480] [--members 3] [--epochs 40] [--student-epochs 40] [--tiny]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from bench import RESULTS_DIR, ROOT, add_write_argument, record, run, shown
from bench.device import escape, nvidia_gpus, software_versions
from common.core.errors import UserError
from common.core.paths import models_dir

RESULTS = RESULTS_DIR / "fer-gpu.md"
# A tiny run's numbers say nothing about FER2013: they go to the ignored scratch folder.
TINY_RESULTS = ROOT / "bench" / "out" / "fer-gpu-tiny.md"
LOG_NAME = "fer-gpu.log"
DEFAULT_WORK = ROOT / "bench" / "out" / "fer-gpu"
ARCHIVE = ROOT / ".device-data" / "fer2013.tar.gz"
VARIANT = "projects/emojify/wide.toml"
PROJECT = "emojify"
# --tiny: a network a CPU trains in seconds, on a few faces of each emotion of the data, for one epoch.
TINY_SETTINGS = ["model.blocks=[[4], [8]]", "model.dense_units=8", "train.batch_size=32"]
TINY_PER_CLASS = 20
# A forward pass costs about a third of a training step (forward and backward), so each member
# of the teacher adds about a third of a step to every step of the student.
TEACHER_SHARE = 1 / 3
# Seconds kept back from the budget for writing the report after the last step.
MARGIN_SECONDS = 10
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


# --- The data: packed here, unpacked there ------------------------------------------------------


def pack(source: Path, archive: Path) -> int:
    """Packs the FER2013 that ``source`` holds (what ``projects/emojify/data.py`` reads: train/
    and test/ folders, or ``fer2013.csv``) into a gzip-compressed tar of the files as they are,
    under ``fer2013/``; returns its size in bytes.

    The JPEG files themselves, not decoded pixels: measured on FER2013's train split (28,709
    faces), this archive is 37.0 MB against 63.3 MB for the decoded faces in a compressed .npz,
    and the faces decode there exactly as here.
    """
    from projects.emojify.data import CSV_NAME, locate_fer2013

    csv_path, folders, _ = locate_fer2013(Path(source))
    # Each source under the name data.py reads it by: fer2013/train/<emotion>/..., or fer2013/fer2013.csv.
    sources = {CSV_NAME: csv_path} if csv_path is not None else folders
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f".{archive.name}.{os.getpid()}.partial")
    with tarfile.open(partial, "w:gz", compresslevel=9) as packed:
        for name, path in sources.items():
            files = [path] if path.is_file() else sorted(path.rglob("*"))
            for file in files:
                if file.is_file() and not file.name.startswith("."):
                    inside = Path(name) / file.relative_to(path) if path.is_dir() else Path(name)
                    packed.add(file, arcname=str(Path("fer2013") / inside))
    os.replace(partial, archive)
    return archive.stat().st_size


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def unpack(archive: Path, folder: Path) -> Path:
    """Unpacks ``archive`` into ``folder`` (again only if the archive changed since) and returns
    its ``fer2013/``."""
    stamp = folder / ".unpacked-from"
    source = archive.resolve()
    signature = f"{source}\t{source.stat().st_size}\t{source.stat().st_mtime_ns}"
    target = folder / "fer2013"
    if stamp.is_file() and stamp.read_text() == signature and target.is_dir():
        return target
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        with tarfile.open(archive) as packed:
            # No path outside folder and no link out of it, where Python knows the filter (3.11.4 on).
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            packed.extractall(folder, **extra)
    except (tarfile.TarError, EOFError, zlib.error):
        # tarfile's message lists every compression it tried, over several lines: one says it all.
        raise UserError(f"{archive}: not a readable (gzipped) tar archive; pack it again") from None
    except OSError as error:
        raise UserError(f"could not unpack {archive} into {folder}: {error.strerror or error}") from None
    if not target.is_dir():
        raise UserError(f"{archive}: holds no fer2013/ folder; pack it with `python -m bench.fer_gpu --pack`")
    stamp.write_text(signature)
    return target


def tiny_copy(source: Path, folder: Path, per_class: int = TINY_PER_CLASS) -> Path:
    """The first ``per_class`` faces (in name order) of each emotion of ``source``'s train/ and
    test/ folders, copied into ``folder``, which is returned."""
    from projects.emojify.data import locate_fer2013

    csv_path, folders, _ = locate_fer2013(source)
    if csv_path is not None:
        raise UserError(f"--tiny takes FER2013's image folders or an archive of them; {csv_path} is its CSV")
    shutil.rmtree(folder, ignore_errors=True)
    for split, split_folder in folders.items():
        for emotion in sorted(path for path in split_folder.iterdir() if path.is_dir()):
            faces = sorted(
                path for path in emotion.iterdir() if path.is_file() and not path.name.startswith(".")
            )
            (folder / split / emotion.name).mkdir(parents=True)
            for face in faces[:per_class]:
                shutil.copy2(face, folder / split / emotion.name / face.name)
    return folder


def find_data(given: Path | None, work: Path, tiny: bool) -> Path:
    """The ``data.path`` of every step: ``given`` (an archive unpacked into the work folder, or a
    folder or CSV as it is), else the packed archive, else ``$SHARED_DATA/fer2013``; a few faces
    of each emotion of it with ``tiny``."""
    if given is None:
        shared = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data")) / "fer2013"
        given = ARCHIVE if ARCHIVE.is_file() else shared
        if not given.exists():
            raise UserError(
                f"no FER2013 at {shown(ARCHIVE)} or {shared}: run `bash bench/device_prepare.sh --fer2013` "
                "where the data is (it packs it), or pass --data with an archive, a folder or fer2013.csv"
            )
    if not given.exists():
        raise UserError(f"--data {given}: no such file or folder")
    data = unpack(given, work / "data") if is_archive(given) else given
    if tiny:
        data = tiny_copy(data, work / "tiny" / "fer2013")
    return data


# --- The plan: what fits in the budget ----------------------------------------------------------


@dataclass(frozen=True)
class Costs:
    """What one member cost, from which the rest of the recipe is planned."""

    overhead: float  # Seconds of a process beyond its training: start-up, data, evaluation.
    epoch: float  # Seconds of one training epoch of one member.

    def member(self, epochs: int) -> float:
        return self.overhead + epochs * self.epoch

    def student(self, epochs: int, members: int) -> float:
        # Twice a member's overhead: the student's process also loads the teacher and compiles
        # a training step that runs every member of it.
        return 2 * self.overhead + epochs * self.epoch * (1 + members * TEACHER_SHARE)


def measured_costs(process_seconds: float, metrics: dict) -> Costs:
    """A member's costs from its run: its training seconds per epoch (the first epoch's
    compilation included, so the estimate errs long) and the rest of its process's time."""
    train = float(metrics["train_seconds"])
    epochs = max(1, int(metrics["epochs_run"]))
    return Costs(overhead=max(0.0, process_seconds - train), epoch=train / epochs)


def plan_rest(costs: Costs, left: float, members: int, epochs: int, student_epochs: int) -> tuple[int, int]:
    """After the first member: how many members in all and how many student epochs fit in
    ``left`` seconds, as ``(members, student_epochs)``.

    The most members (up to ``members``) that leave room for the ensemble (one process's
    overhead) and a student of at least half of ``student_epochs``, the student getting what is
    left up to ``student_epochs``; failing that, the most members whose ensemble fits without a
    student (``student_epochs`` 0); failing that, the first member alone ``(1, 0)``.
    """
    floor = max(1, student_epochs // 2)
    for count in range(members, 1, -1):
        spare = left - (count - 1) * costs.member(epochs) - costs.overhead
        per_epoch = costs.epoch * (1 + count * TEACHER_SHARE)
        fixed = costs.student(0, count)
        fitting = math.floor((spare - fixed) / per_epoch) if per_epoch > 0 else student_epochs
        if student_epochs and min(fitting, student_epochs) >= floor:
            return count, min(fitting, student_epochs)
    for count in range(members, 1, -1):
        if (count - 1) * costs.member(epochs) + costs.overhead <= left:
            return count, 0
    return 1, 0


# --- Running the steps ----------------------------------------------------------------------------


def train_arguments(
    name: str, settings: list[str], seed: int | None = None, teacher: Path | None = None
) -> list[str]:
    """The arguments of ``python -m common`` for one member (``seed``) or the student (``teacher``)."""
    if teacher is None:
        arguments = ["train", PROJECT, "--config", VARIANT, "--name", name, "--set", f"train.seed={seed}"]
    else:
        arguments = [
            "distill",
            PROJECT,
            "--teacher",
            str(shown(teacher)),
            "--config",
            VARIANT,
            "--name",
            name,
        ]
    for setting in settings:
        arguments += ["--set", setting]
    return arguments


def shown_command(arguments: list[str]) -> str:
    backend = os.environ.get("KERAS_BACKEND")
    prefix = f"KERAS_BACKEND={backend} " if backend else ""
    return f"{prefix}python -m common {shlex.join(arguments)}"


def run_step(label: str, arguments: list[str], deadline: float, log_lines: list[str]) -> dict:
    """Runs one command of the template in a fresh process, stopped at ``deadline``; returns its
    row: the label, the command, the run folder it made and its ``metrics.json``, or the error."""
    runs_folder = models_dir() / PROJECT
    before = set(runs_folder.iterdir()) if runs_folder.is_dir() else set()
    command = [sys.executable, "-m", "common", *arguments]
    row: dict = {"label": label, "command": shown_command(arguments)}
    started = time.monotonic()
    left = deadline - started
    if left < 1:  # A step stopped at the end of the budget spent it: the next would start only to stop.
        return not_run(label, "the budget was spent")
    try:
        completed = subprocess.run(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            capture_output=True,
            text=True,
            timeout=max(1.0, left),
        )
    except subprocess.TimeoutExpired as expired:
        output = expired.stderr or ""
        code, stdout, stderr = (
            "stopped",
            "",
            output.decode(errors="replace") if isinstance(output, bytes) else output,
        )
        row.update(error=f"stopped after {left:.0f} s, at the end of the budget", stopped=True)
    else:
        code, stdout, stderr = completed.returncode, completed.stdout, completed.stderr
        made = sorted(set(runs_folder.iterdir()) - before) if runs_folder.is_dir() else []
        made = [folder for folder in made if folder.is_dir() and not folder.is_symlink()]
        metrics_file = made[-1] / "metrics.json" if made else None
        if code == 0 and metrics_file is not None and metrics_file.is_file():
            row.update(run_dir=made[-1], metrics=json.loads(metrics_file.read_text()))
        else:
            said = [line for line in stderr.splitlines() if line.strip()]
            errors = [line for line in said if line.startswith("error:")]
            row["error"] = (errors[:1] or said[-1:] or [f"exit status {code}"])[0][:300]
    row["process_seconds"] = round(time.monotonic() - started, 1)
    log_lines += [
        f"== {label}: exit {code}, {row['process_seconds']} s",
        row["command"],
        *stdout.splitlines()[-20:],
        *stderr.splitlines()[-60:],
        "",
    ]
    return row


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def not_run(label: str, why: str) -> dict:
    return {"label": label, "error": why, "stopped": True}


def jax_gpus() -> list[str]:
    """The GPUs JAX sees, asked in a separate process (so that this one, which only starts the
    steps, holds none of their memory); empty without JAX or a GPU. For a machine without
    nvidia-smi."""
    if importlib.util.find_spec("jax") is None:
        return []
    probe = "import jax; print('\\n'.join(d.device_kind for d in jax.devices() if d.platform == 'gpu'))"
    try:
        listed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return []
    names = (
        [line.strip() for line in listed.stdout.splitlines() if line.strip()]
        if listed.returncode == 0
        else []
    )
    return [f"{name} (seen by JAX; nvidia-smi lists none)" for name in names]


# --- The report -----------------------------------------------------------------------------------

HEADER = (
    "| model | test accuracy | majority-class baseline | macro F1 | epochs | training (s) "
    "| process (s) | weights |"
)


def _cell(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def render(rows: list[dict], meta: dict) -> list[str]:
    """The markdown report: how and on what the recipe ran, then one row per step, then the commands."""
    title = "# FER2013 on a GPU: wide members, their ensemble and a distilled student"
    if meta["tiny"]:
        title += " (TINY on CPU: a tiny network on a few faces, the numbers say nothing)"
    done = [row["metrics"] for row in rows if "metrics" in row]
    first = done[0] if done else {}
    lines = [title, "", f"Command: `{meta['command']}` (from the repository root)", ""]
    lines += [
        f"- Date: {meta['date']}",
        f"- GPU (nvidia-smi): {'; '.join(meta['gpus']) or 'none'}",
        f"- Computed by: {first.get('keras_backend', '?')} on {first.get('device', '?')}; {meta['versions']}"
        if first
        else f"- Software: {meta['versions']}",
        f"- Budget: {meta['budget']:.0f} s for every step; {meta['plan']}",
    ]
    if first:
        lines += [
            f"- Data: {first['data_source']}; {first['n_train']:,} faces to train, "
            f"{first['n_validation']:,} to validate (the best epoch), {first['n_test']:,} to test",
            f"- The majority-class baseline always answers {first['baseline_class']!r} (the most frequent "
            f"emotion in training): {first['baseline_accuracy']:.4f} of the test split",
        ]
    lines += [f"- {note}" for note in meta["notes"]]
    lines += ["", HEADER, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if "metrics" not in row:
            if "command" not in row:
                outcome = "not run"
            else:
                outcome = "not finished" if row.get("stopped") else "failed"
            lines.append(f"| {row['label']} | {outcome}: {escape(row['error'])} | | | | | | |")
            continue
        metrics = row["metrics"]
        lines.append(
            f"| {row['label']} | **{metrics['test_accuracy']:.4f}** | {metrics['baseline_accuracy']:.4f} "
            f"| {_cell(metrics.get('macro_f1'), 4)} | {metrics.get('epochs_run', '')} "
            f"| {_cell(metrics.get('train_seconds'), 1)} | {_cell(row['process_seconds'], 1)} "
            f"| {metrics['parameters']:,} |"
        )
    commands = [row["command"] for row in rows if "command" in row]
    lines += ["", "The steps, as commands (each in a fresh process, in this order):", ""]
    lines += [f"- `{command}`" for command in commands]
    return lines


def _write(lines: list[str], destinations: list[Path]) -> None:
    for destination in destinations:
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text("\n".join(lines) + "\n")


# --- The recipe -------------------------------------------------------------------------------------


def recipe(options: argparse.Namespace, meta: dict, report) -> list[dict]:
    """Trains the members, their ensemble and the student within the budget; ``report(rows)`` is
    called after each step. Returns the rows."""
    deadline = time.monotonic() + options.budget - MARGIN_SECONDS
    settings = [f"data.path={shown(options.data)}", f"data.cache_dir={shown(options.work / 'cache')}"]
    epochs, student_epochs = options.epochs, options.student_epochs
    if options.tiny:
        settings += TINY_SETTINGS
    member_settings = [*settings, f"train.epochs={epochs}"]
    log_lines: list[str] = meta["log"]
    rows: list[dict] = []

    first = run_step(
        "member 1 (seed 1)", train_arguments("member-1", member_settings, seed=1), deadline, log_lines
    )
    rows.append(first)
    report(rows)
    if "metrics" not in first:
        meta["plan"] = "the first member did not finish, so nothing else was run"
        return rows
    costs = measured_costs(first["process_seconds"], first["metrics"])
    count, student_epochs = plan_rest(
        costs, deadline - time.monotonic(), options.members, epochs, student_epochs
    )
    student = f" and a student of {plural(student_epochs, 'epoch')}" if student_epochs else ", no student,"
    meta["plan"] = (
        f"the first member took {first['process_seconds']:.0f} s ({costs.epoch:.1f} s an epoch), so "
        f"{plural(count, 'member')} of {plural(epochs, 'epoch')}{student} were planned"
    )
    for index in range(2, options.members + 1):
        label = f"member {index} (seed {index})"
        if index > count:
            rows.append(not_run(label, "the budget left no room for it"))
            continue
        arguments = train_arguments(f"member-{index}", member_settings, seed=index)
        rows.append(run_step(label, arguments, deadline, log_lines))
        report(rows)
    members = [row["run_dir"] for row in rows if "run_dir" in row]
    label = f"ensemble of {len(members)} members"
    if len(members) < 2:
        rows.append(not_run("ensemble", "fewer than two members finished"))
        report(rows)
        return rows
    arguments = ["ensemble", PROJECT, *[str(shown(member)) for member in members], "--name", "ensemble"]
    ensemble = run_step(label, arguments, deadline, log_lines)
    rows.append(ensemble)
    report(rows)
    label = f"student of {len(members)} members (distilled from the ensemble)"
    if "run_dir" not in ensemble:
        rows.append(not_run(label, "the ensemble did not finish"))
    elif student_epochs == 0:
        rows.append(not_run(label, "the budget left no room for it"))
    else:
        student_settings = [*settings, f"train.epochs={student_epochs}"]
        arguments = train_arguments("student", student_settings, teacher=ensemble["run_dir"])
        rows.append(run_step(label, arguments, deadline, log_lines))
    report(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fer_gpu", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds for every step (default 480; with --tiny 900)"
    )
    parser.add_argument(
        "--members", type=int, default=None, help="members at most (default 3; with --tiny 2)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs of each member (default 40; --tiny 1)"
    )
    parser.add_argument(
        "--student-epochs",
        type=int,
        default=None,
        help="epochs of the student at most (default 40; --tiny 1)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help=f"FER2013: an archive made by --pack, a folder in Kaggle's layout or fer2013.csv "
        f"(default {shown(ARCHIVE)} if there, else $SHARED_DATA/fer2013)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        help=f"folder for the unpacked data and the decoded-face cache (default {shown(DEFAULT_WORK)})",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help=f"on any machine: a tiny network, {TINY_PER_CLASS} faces of each emotion, one epoch; checks the "
        "script, measures nothing",
    )
    parser.add_argument(
        "--pack",
        type=Path,
        metavar="SOURCE",
        help=f"pack the FER2013 of SOURCE (train/ and test/ folders, or fer2013.csv) into {shown(ARCHIVE)} "
        "and stop",
    )
    parser.add_argument("--note", action="append", default=[], help="a line for the report (repeatable)")
    add_write_argument(parser, RESULTS)
    options = parser.parse_args(argv)
    if options.pack is not None:
        if not options.pack.exists():
            raise UserError(f"--pack {options.pack}: no such file or folder")
        size = pack(options.pack, ARCHIVE)
        print(f"packed {options.pack} into {shown(ARCHIVE)}: {size:,} bytes ({size / 2**20:.1f} MiB)")
        return 0
    defaults = {"budget": 900.0, "members": 2, "epochs": 1, "student_epochs": 1} if options.tiny else {}
    defaults = {"budget": 480.0, "members": 3, "epochs": 40, "student_epochs": 40} | defaults
    for key, value in defaults.items():
        if getattr(options, key) is None:
            setattr(options, key, value)
    if options.members < 1 or options.epochs < 1 or options.student_epochs < 0 or options.budget <= 0:
        parser.error(
            "--members and --epochs take 1 or more, --student-epochs 0 or more, --budget a positive number"
        )

    gpus = nvidia_gpus() or jax_gpus()
    if not gpus and not options.tiny:
        print(
            "bench.fer_gpu: no GPU here (neither nvidia-smi nor JAX lists one); it trains the FER2013 "
            "recipe on a GPU machine (bash bench/fer_gpu.sh there), or checks itself here with --tiny. "
            "Nothing written."
        )
        return 0
    options.work = Path(os.path.abspath(options.work))
    options.data = Path(os.path.abspath(find_data(options.data, options.work, options.tiny)))

    results_file = TINY_RESULTS if options.tiny else RESULTS
    destinations = [results_file] if options.write else []
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    given = sys.argv[1:] if argv is None else argv
    meta = {
        "tiny": options.tiny,
        "command": os.environ.get("FER_GPU_COMMAND") or shlex.join(["python", "-m", "bench.fer_gpu", *given]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "gpus": gpus,
        "versions": software_versions(),
        "budget": options.budget,
        "plan": "the first member is running",
        "notes": list(options.note),
        "log": [],
    }

    def report(rows: list[dict]) -> None:
        lines = render(rows, meta)
        if out is not None:
            _write(lines, [out / results_file.name])
            _write(meta["log"], [out / LOG_NAME])
            for row in rows:
                if "run_dir" in row:  # Each run's metrics, per class included; the models stay there.
                    target = out / "fer-gpu-runs" / f"{row['run_dir'].name}.json"
                    _write([json.dumps(row["metrics"], indent=2)], [target])

    rows = recipe(options, meta, report)
    report(rows)
    lines = render(rows, meta)
    print("\n".join(lines))
    if results_file in destinations:
        record(lines, results_file)
    _write(meta["log"], [options.work / LOG_NAME])
    # A step stopped by the budget is reported, not a failure; a step that failed is.
    return 1 if any(row.get("error") and not row.get("stopped") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(run(main))
