"""emojify's training input streamed from FER2013's image files against held in memory: faces a
second and peak memory (``data.streaming``).

Each side runs in a process of its own, as peak memory only ever grows: the in-memory side loads
the decoded faces (from the ``.npz`` cache, built on first use) and splits them; the streamed side
lists the files and decodes each batch when it is asked for, on Keras' worker threads. Both then
read every training batch of ``--epochs`` epochs, augmented as the config says (by default
``cpu68.toml``'s pipeline augmentation: crop, rescale, rotation, flip, erasing), through Keras'
own PyDataset adapter as ``fit`` does, with no model. So the figures are what the input can feed
a model, and the memory each way holds (the default model itself trains at about 180 faces a
second on two CPU cores, see augment.py).

Run: .venv/bin/python -m bench.streaming [--data FOLDER] [--epochs 1] [--workers N]
     [--config VARIANT.toml] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench import RESULTS_DIR, add_write_argument, report, run, shown
from common.core.errors import UserError
from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parent.parent
RESULTS = RESULTS_DIR / "streaming.md"
DEFAULT_VARIANT = ROOT / "projects" / "emojify" / "cpu68.toml"
SIDES = {"in-memory": "false", "streamed": "true"}
HOW_TO_GET_FER2013 = (
    "download Kaggle's 'msambare/fer2013' (train/<emotion>/ image folders) and pass --data with the "
    "folder that holds train/"
)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(side: str, data: Path, variant: Path, epochs: int, workers: int | None) -> dict:
    """Loads the training input one way and reads ``epochs`` epochs of it; run in its own process."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    from common.core import registry
    from projects.emojify import data as emojify_data
    from projects.emojify.augment import augmenting, training_batches

    after_imports = peak_rss_mb()
    project = registry.get_project("emojify")
    config = project.load_config(variant, [f"data.path={data}", f"data.streaming={SIDES[side]}"])
    cached = emojify_data.cache_file(data, "folders", emojify_data.DEFAULT_CACHE_DIR).is_file()
    started = time.perf_counter()
    splits = project.functions.load_data(config, need_training=True)
    batches = training_batches(config, splits, first_epoch=0)
    if workers and splits.streamed:
        batches.workers = workers
    load_seconds = time.perf_counter() - started
    adapter = PyDatasetAdapter(batches, shuffle=False)  # What fit reads a PyDataset through.
    faces = 0
    started = time.perf_counter()
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        adapter.on_epoch_begin()
        for x, *_ in adapter.get_numpy_iterator():
            faces += len(x)
        adapter.on_epoch_end()
    seconds = time.perf_counter() - started
    return {
        "side": side,
        "load_seconds": round(load_seconds, 2),
        "faces": faces,
        "seconds": round(seconds, 2),
        "faces_per_second": round(faces / seconds),
        "peak_rss_mb": round(peak_rss_mb()),
        "rss_after_imports_mb": round(after_imports),
        "workers": batches.workers,
        "arrays_from_cache": cached if side == "in-memory" else None,
        "augmented": augmenting(config),
        "batch_size": config.train.batch_size,
        "n_train": len(splits.train[1]),
        "data_source": splits.source,
    }


def run_side(side: str, options: argparse.Namespace) -> dict:
    """Runs :func:`measure` for one side in a fresh process; its last output line is the result."""
    command = [sys.executable, "-m", "bench.streaming", "--side", side, "--data", str(options.data)]
    command += ["--config", str(options.config), "--epochs", str(options.epochs)]
    if options.workers:
        command += ["--workers", str(options.workers)]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        lines = completed.stderr.strip().splitlines() or ["no output"]
        raise UserError(f"the {side} side failed: {lines[-1]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def check_data(data: Path) -> None:
    from projects.emojify.data import locate_fer2013

    if not data.exists():
        raise UserError(f"no FER2013 at {data}; {HOW_TO_GET_FER2013}")
    csv_path, _, _ = locate_fer2013(data)
    if csv_path is not None:
        raise UserError(f"{csv_path} is FER2013's CSV, which cannot be streamed; {HOW_TO_GET_FER2013}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streaming", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "fer2013", help="FER2013 with train/")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of batches read (default 1)")
    parser.add_argument(
        "--workers", type=int, help="decoding threads of the streamed side (default: one per core, 2-8)"
    )
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_VARIANT, help="emojify variant whose [augment] is applied"
    )
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # One side, in this process.
    add_write_argument(parser, RESULTS)
    options = parser.parse_args(argv)
    if options.side:
        print(
            json.dumps(measure(options.side, options.data, options.config, options.epochs, options.workers))
        )
        return 0
    check_data(options.data)
    load_before = os.getloadavg()[0]
    results = {side: run_side(side, options) for side in SIDES}
    load_after = os.getloadavg()[0]
    memory, streamed = results["in-memory"], results["streamed"]
    variant = shown(options.config)
    lines = [
        "# emojify: training input streamed from the image files against held in memory",
        "",
        f"Command: `.venv/bin/python -m bench.streaming` ({time.strftime('%Y-%m-%d')})",
        "",
        f"- Machine: {os.cpu_count()} CPU cores ({platform.machine()}); load average {load_before:.1f} "
        f"before, {load_after:.1f} after (other work on the machine slows every number below)",
        f"- Data: {memory['data_source']}; {memory['n_train']:,} training faces, batches of "
        f"{memory['batch_size']}, {options.epochs} epoch(s), "
        + (f"augmented as {variant} says" if memory["augmented"] else "not augmented"),
        "- Each side in a fresh process, reading every batch through Keras' PyDataset adapter (as fit"
        " does), no model; peak RSS includes what importing TensorFlow and Keras takes (its own column)",
        "",
        "| input | start (s) | faces/s | peak RSS (MB) | of which imports (MB) | above the imports (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {
        "in-memory": "in memory, "
        + ("arrays from the .npz cache" if memory["arrays_from_cache"] else "faces decoded (no cache yet)"),
        "streamed": f"streamed (`data.streaming = true`), {streamed['workers']} decoding threads",
    }
    for side, result in results.items():
        lines.append(
            f"| {names[side]} | {result['load_seconds']:.1f} | **{result['faces_per_second']:,}** | "
            f"{result['peak_rss_mb']:,} | {result['rss_after_imports_mb']:,} | "
            f"**{result['peak_rss_mb'] - result['rss_after_imports_mb']:,}** |"
        )
    report(lines, RESULTS, options.write)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
