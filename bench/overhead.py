"""What the template costs: the same training through ``common.training.steps.train`` and plain ``fit``.

Both train the mnist project's model (from its own ``build_model`` and ``compile_model``) on the
same digits for the same epochs with the same batch size. The plain side is what a tutorial
writes: ``model.fit(x, y, shuffle=True, validation_data=...)``. The template side is a whole
``train``: run folder, batches ordered by seed and epoch, a checkpoint and progress record
committed to disk every epoch, early stopping and plateau state, history, then the final save.
Data loading, evaluation and plots are outside the timed part of both (the template's timing is
its own ``train_seconds``, which covers ``fit`` and the per-epoch commits).

The two alternate, several times, and the ratio of their median times is ``overhead_ratio``
(1.00 = no cost). On a machine that is busy with other work the figure is noisy: the spread is
printed beside it.

Run: .venv/bin/python -m bench.overhead [--repeats 3] [--epochs 3] [--json] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import keras

from bench import RESULTS_DIR, add_write_argument, run
from common.core import registry
from common.training import steps

RESULTS = RESULTS_DIR / "overhead.md"
# Small enough for a few minutes in all, large enough that an epoch is seconds, not milliseconds.
SETTINGS = ["data.download_timeout=0", "train.early_stopping_patience=50", "train.lr_schedule=plateau"]


def _plain_fit(project: registry.Project, config, splits) -> float:
    keras.utils.set_random_seed(config.seed)
    model = project.functions.build_model(config, splits)
    x_train, y_train = splits.train
    steps_per_epoch = -(-len(y_train) // config.train.batch_size)
    steps.compile_model(model, config, steps_per_epoch=steps_per_epoch)
    started = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        batch_size=config.train.batch_size,
        epochs=config.train.epochs,
        shuffle=True,
        validation_data=splits.validation,
        verbose=0,
    )
    return time.perf_counter() - started


def _template_train(project: registry.Project, config) -> float:
    with tempfile.TemporaryDirectory() as folder:
        os.environ["MODELS_DIR"] = folder
        run_dir = steps.train(project, config, run_name="overhead", verbose=0)
        return json.loads((run_dir / "metrics.json").read_text())["train_seconds"]


def measure(repeats: int, epochs: int) -> dict:
    """Times both sides ``repeats`` times each, alternating; returns the medians and their ratio."""
    project = registry.get_project("mnist")
    config = project.load_config(None, [*SETTINGS, f"train.epochs={epochs}"])
    splits = project.functions.load_data(config)
    saved_models_dir = os.environ.get("MODELS_DIR")
    plain, template = [], []
    try:
        _plain_fit(project, config, splits)  # Warm-up: the first fit in a process pays for tracing.
        for _ in range(repeats):
            plain.append(_plain_fit(project, config, splits))
            template.append(_template_train(project, config))
    finally:
        if saved_models_dir is None:
            os.environ.pop("MODELS_DIR", None)
        else:
            os.environ["MODELS_DIR"] = saved_models_dir
    ratio = statistics.median(template) / statistics.median(plain)
    return {
        "overhead_ratio": round(ratio, 4),
        "plain_fit_seconds": [round(value, 2) for value in plain],
        "template_train_seconds": [round(value, 2) for value in template],
        "epochs": epochs,
        "n_train": len(splits.train[1]),
        "data_source": splits.source,
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side (default 3)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_write_argument(parser, RESULTS)
    options = parser.parse_args(argv)
    result = measure(options.repeats, options.epochs)
    if options.json:
        print(json.dumps(result))
    else:
        print(
            f"overhead_ratio {result['overhead_ratio']:.3f}: template {result['template_train_seconds']} s, "
            f"plain fit {result['plain_fit_seconds']} s ({result['epochs']} epochs, "
            f"{result['n_train']} digits, load average {result['load_average']})"
        )
    if options.write:
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        line = (
            f"| {time.strftime('%Y-%m-%d')} | {machine} | {result['epochs']} epochs x {result['n_train']} "
            f"| {result['plain_fit_seconds']} | {result['template_train_seconds']} "
            f"| **{result['overhead_ratio']:.3f}** | {result['load_average']} |\n"
        )
        if not RESULTS.exists():
            RESULTS.write_text(
                "# Template overhead: `common.training.steps.train` against a plain `model.fit`\n\n"
                "`.venv/bin/python -m bench.overhead --write` (median of alternating runs; goal <= 1.03)\n\n"
                "| date | machine | work | plain fit (s) | template train (s) | overhead_ratio | load |\n"
                "|---|---|---|---|---|---:|---:|\n"
            )
        with open(RESULTS, "a") as file:
            file.write(line)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
