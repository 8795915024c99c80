"""The RNN lesson in numbers: each network kind of the stock project on three real daily series.

Every ``model.cell`` (lstm, gru, simple_rnn, conv1d) is trained with the defaults of
``projects/stock/config.toml`` (same window, target, split and schedule) on the S&P 500 that ships
with arch and on the AAPL and NSE-TATAGLOBAL exports of ``$SHARED_DATA/stock`` (default
``../shared/data/stock``), once per training seed (``train.seed``; the split stays the same).
Each run is an ordinary ``train`` run in a temporary models folder, and its ``metrics.json``
gives the figures: the test period's RMSE over persistence's, the Diebold-Mariano p-value of
that difference, the parameter count, the training time, and the 90% interval's test coverage
and mean width over the naive interval's.

Run: .venv/bin/python -m bench.bench_cells [--seeds 3] [--epochs N] [--write]   (or: make bench)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from bench import RESULTS_DIR, ROOT, add_write_argument, record, run  # noqa: E402
from common.core import registry  # noqa: E402
from common.core.errors import UserError  # noqa: E402
from common.training import steps
from projects.stock.settings import CELLS  # noqa: E402

log = logging.getLogger("bench_cells")

RESULTS = RESULTS_DIR / "cells.md"
SHARED_STOCK = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data")) / "stock"
# Name shown in the table -> data.path ("" = the arch S&P 500).
SERIES = {"S&P 500": "", "AAPL": "AAPL.csv", "NSE-TATAGLOBAL": "NSE-TATAGLOBAL.csv"}


def train_once(path: str, cell: str, seed: int, epochs: int | None) -> dict:
    """One ordinary training run in a temporary models folder; returns its metrics."""
    project = registry.get_project("stock")
    overrides = [f"data.path={json.dumps(path)}", f"model.cell={cell}", f"train.seed={seed}"]
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    config = project.load_config(None, overrides)
    saved = os.environ.get("MODELS_DIR")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["MODELS_DIR"] = folder
        try:
            run_dir = steps.train(project, config, run_name=f"{cell}-{seed}", verbose=0)
            return json.loads((run_dir / "metrics.json").read_text())
        finally:
            if saved is None:
                os.environ.pop("MODELS_DIR", None)
            else:
                os.environ["MODELS_DIR"] = saved


def spread(values: list[float], digits: int, percent: bool = False) -> str:
    """The mean, and the range over seeds when there are several: ``0.9994 (0.9990-0.9999)``."""
    shown = [100 * value for value in values] if percent else values
    unit = "%" if percent else ""
    text = f"{statistics.mean(shown):.{digits}f}{unit}"
    if len(values) > 1:
        text += f" ({min(shown):.{digits}f}-{max(shown):.{digits}f})"
    return text


def table_row(name: str, cell: str, runs: list[dict]) -> str:
    """One Markdown row: a series and a cell, over its seeds."""
    ten_days = [m["horizons"]["10"] for m in runs]
    return (
        f"| {name} | {cell} | {runs[0]['parameters']:,} | {spread([m['rmse_ratio'] for m in runs], 4)} | "
        f"{p_values(runs)} | {spread([m['rmse_ratio'] for m in ten_days], 4)} | {p_values(ten_days)} | "
        f"{statistics.mean(m['train_seconds'] for m in runs):.1f} | "
        f"{spread([m['interval_coverage'] for m in runs], 1, percent=True)} | "
        f"{runs[0]['naive_interval_coverage']:.1%} | "
        f"{spread([m['interval_mean_width'] / m['naive_interval_mean_width'] for m in runs], 2)} | "
        f"{spread([m['interval_winkler'] / m['naive_interval_winkler'] for m in runs], 2)} |"
    )


def p_values(scores: list[dict]) -> str:
    """The Diebold-Mariano p-value of each seed, two significant digits."""
    return ", ".join(f"{m['dm_p_value']:.2g}" for m in scores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_cells", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per cell and series (default 3)")
    parser.add_argument("--epochs", type=int, help="train.epochs (default: config.toml's; early stopping on)")
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS), help="cells to compare")
    parser.add_argument(
        "--series", nargs="+", choices=list(SERIES), default=list(SERIES), help="series to train on"
    )
    add_write_argument(parser, RESULTS)
    parser.add_argument("--out", type=Path, help="write the Markdown results to this file instead")
    options = parser.parse_args(argv)
    if options.seeds < 1:
        raise UserError(f"--seeds must be at least 1; received: {options.seeds}")
    paths = {}
    for name in options.series:
        paths[name] = str(SHARED_STOCK / SERIES[name]) if SERIES[name] else ""
        if paths[name] and not Path(paths[name]).is_file():
            raise UserError(
                f"{paths[name]} not found; set SHARED_DATA to the folder holding stock/{SERIES[name]}"
            )
    # Set only once the arguments are checked: a refused command changes no logger.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("projects", "common"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    rows = []
    for name in options.series:
        for cell in options.cells:
            runs = []
            for seed in range(options.seeds):
                metrics = train_once(paths[name], cell, seed, options.epochs)
                log.info(
                    "%s %s seed %d: rmse_ratio %.4f, p %.2g, coverage %.3f, %d epochs, %.1f s",
                    name, cell, seed, metrics["rmse_ratio"], metrics["dm_p_value"],
                    metrics["interval_coverage"], metrics["epochs_run"], metrics["train_seconds"],
                )  # fmt: skip
                runs.append(metrics)
            rows.append(table_row(name, cell, runs))

    command = "python -m bench.bench_cells"
    if options.seeds != 3:
        command += f" --seeds {options.seeds}"
    if options.epochs is not None:
        command += f" --epochs {options.epochs}"
    lines = [
        "# Stock: LSTM, GRU, simple RNN and 1-D convolution side by side",
        "",
        f"Command: `{command} --write`; the defaults of projects/stock/config.toml, only model.cell changed; "
        f"training seeds 0-{options.seeds - 1} (`train.seed`, one split); Keras {keras.__version__}, backend "
        f"{keras.backend.backend()}, {platform.machine()}, {os.cpu_count()} CPU cores.",
        "",
        "RMSE ratio: the test period's one-step RMSE over persistence's (below 1 beats it), mean (range over "
        "seeds); DM p: the Diebold-Mariano p-value of each seed; 10 days: the same two for the recursive "
        "10-day forecast against persistence 10 days ahead; coverage: the share of test days inside the 90% "
        "interval, the model's and the naive one's (persistence +- the training period's 90% daily move); "
        "width and Winkler: the model's mean interval width and Winkler score over the naive interval's "
        "(below 1: narrower, better).",
        "",
        "| series | cell | parameters | RMSE ratio | DM p | 10 days: ratio | 10 days: DM p | train s "
        "| coverage | naive coverage | width / naive | Winkler / naive |",
        "| --- | --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ]
    print("\n".join(lines))
    out = options.out or (RESULTS if options.write else None)
    if out is not None:
        record([*lines, ""], out)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
