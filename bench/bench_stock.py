"""Training throughput of the stock model: the tutorial's one window per step against batches.

Three setups train on the same first windows of the default series (the S&P 500 from arch), on
this machine, through the project's own data, model and compile code:

1. the tutorial recipe (``projects/stock/classic.toml``: window 60, LSTM(50) x 2, Dense(1),
   batch size 1), for one epoch as in the tutorial;
2. the same recipe with the default batch size, which isolates what batching alone buys;
3. the default config (``projects/stock/config.toml``).

Throughput is windows trained per second of ``model.fit``, measured after a short warm-up fit
that pays for tracing the training step. The batched setups run several epochs over the same
windows so that their timing is not a fraction of a second.

Run: .venv/bin/python -m bench.bench_stock [--windows 2000] [--write]   (or: make bench)
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from bench import RESULTS_DIR, add_write_argument, run  # noqa: E402
from common.core import registry  # noqa: E402
from common.core.errors import UserError  # noqa: E402
from common.training import steps

log = logging.getLogger("bench_stock")

RESULTS = RESULTS_DIR / "stock.md"


def measure(config_file: str | None, overrides: list[str], windows: int, epochs: int) -> dict:
    """Trains a fresh model on the first ``windows`` training windows; returns its throughput."""
    project = registry.get_project("stock")
    config = project.load_config(config_file, overrides)
    keras.utils.set_random_seed(config.seed)
    splits = project.functions.load_data(config)
    x_train, y_train = splits.train
    if len(x_train) < windows:
        raise UserError(f"only {len(x_train)} training windows; pass --windows {len(x_train)} or fewer")
    x_train, y_train = x_train[:windows], y_train[:windows]
    model = project.functions.build_model(config, splits)
    batch_size = config.train.batch_size
    steps.compile_model(model, config, steps_per_epoch=-(-windows // batch_size))
    warm_up = max(2 * batch_size, 32)
    model.fit(x_train[:warm_up], y_train[:warm_up], batch_size=batch_size, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - started
    return {
        "window": config.data.window,
        "units": list(config.model.units),
        "batch_size": batch_size,
        "windows_trained": windows * epochs,
        "seconds": seconds,
        "windows_per_second": windows * epochs / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=2000, help="training windows per epoch (default 2000)")
    parser.add_argument(
        "--batched-epochs",
        type=int,
        default=5,
        help="epochs for the batched setups, for a stable timing (default 5)",
    )
    add_write_argument(parser, RESULTS)
    parser.add_argument("--out", type=Path, help="write the Markdown results to this file instead")
    options = parser.parse_args(argv)
    if options.windows < 1:
        raise UserError(f"--windows must be at least 1; received: {options.windows}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("projects").setLevel(logging.WARNING)

    project = registry.get_project("stock")
    classic = str(project.folder / "classic.toml")
    default_batch = project.load_config().train.batch_size
    setups = [
        ("tutorial recipe (classic.toml), batch 1", classic, [], 1),
        (
            f"tutorial recipe, batch {default_batch}",
            classic,
            [f"train.batch_size={default_batch}"],
            options.batched_epochs,
        ),
        ("default config (config.toml)", None, [], options.batched_epochs),
    ]
    results = []
    for name, config_file, overrides, epochs in setups:
        log.info("measuring: %s", name)
        results.append((name, measure(config_file, overrides, options.windows, epochs)))

    tutorial_speed = results[0][1]["windows_per_second"]
    lines = [
        "# Stock: training throughput",
        "",
        f"Command: `python -m bench.bench_stock --windows {options.windows} --write`; "
        f"{options.windows} windows of the S&P 500 (arch) per epoch; Keras {keras.__version__}, "
        f"backend {keras.backend.backend()}, {platform.machine()}, {os.cpu_count()} CPU cores.",
        "",
        "| setup | window | LSTM units | batch | windows trained | seconds | windows/s | vs tutorial |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, result in results:
        lines.append(
            f"| {name} | {result['window']} | {result['units']} | {result['batch_size']} | "
            f"{result['windows_trained']} | {result['seconds']:.1f} | {result['windows_per_second']:.0f} | "
            f"{result['windows_per_second'] / tutorial_speed:.1f}x |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    out = options.out or (RESULTS if options.write else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
        print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
