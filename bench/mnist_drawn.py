"""Accuracy of a saved MNIST model on digits drawn dark-on-light on a large page.

Each official MNIST test digit is turned into a 'drawing' (``tests/drawn_digits.py``: enlarged to
60-420 px, a solid pen stroke from thin to thick, off-centre on an 800x600 page with paper noise),
then read back through the same ``to_mnist`` preprocessing that ``predict`` uses.

Run: .venv/bin/python -m bench.mnist_drawn [--count 2000] [--model pretrained]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from common import registry, workflow  # noqa: E402
from projects.mnist.data import read_idx_folder  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402
from tests.drawn_digits import drawn_digit_accuracy  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "mnist.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--model", default="pretrained")
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "mnist", help="folder with t10k IDX files")
    options = parser.parse_args()
    model, _, model_file = workflow.load_saved(registry.get_project("mnist"), options.model)
    arrays = read_idx_folder(options.data)
    started = time.perf_counter()
    accuracy = drawn_digit_accuracy(model, arrays["x_test"], arrays["y_test"], options.count, seed=2)
    seconds = time.perf_counter() - started
    line = (
        f"| {time.strftime('%Y-%m-%d')} | {model_file.relative_to(registry.ROOT)} | {options.count} drawn "
        f"official test digits | {accuracy:.2%} | {seconds / options.count * 1000:.1f} ms/digit "
        f"(drawing + preprocessing + model) | {platform.machine()}, {os.cpu_count()} cores |"
    )
    print(f"drawn-digit accuracy: {accuracy:.2%} on {options.count} digits ({model_file})")
    if not RESULTS.exists():
        RESULTS.write_text(
            "# MNIST: prediction on drawn digits\n\nCommand: `.venv/bin/python -m bench.mnist_drawn`\n\n"
            "| date | model | input | accuracy | time | machine |\n|---|---|---|---|---|---|\n"
        )
    with open(RESULTS, "a") as file:
        file.write(line + "\n")


if __name__ == "__main__":
    main()
