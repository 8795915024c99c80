"""Accuracy of a saved MNIST model on digits drawn dark-on-light on a large page.

Each official MNIST test digit is turned into a 'drawing' (``tests/drawn_digits.py``: enlarged to
60-420 px, a solid pen stroke from thin to thick, off-centre on an 800x600 page with paper noise),
then read back through the same ``to_mnist`` preprocessing that ``predict`` uses.

The test digits come from ``--data`` (a ``keras.datasets.mnist``-style ``mnist.npz`` or a folder
of the ``t10k-*`` IDX files), by default ``$SHARED_DATA/mnist`` (``../shared/data/mnist``), else
Keras' cache ``~/.keras/datasets/mnist.npz``.

Run: .venv/bin/python -m bench.mnist_drawn [--count 2000] [--model pretrained] [--data PATH] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from bench import RESULTS_DIR, add_write_argument, run  # noqa: E402
from common.core import paths, registry  # noqa: E402
from common.core.errors import UserError  # noqa: E402
from common.serving import loading
from projects.mnist.data import _keras_cache_file, read_idx_folder, read_npz  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402
from tests.drawn_digits import drawn_digit_accuracy  # noqa: E402

RESULTS = RESULTS_DIR / "mnist.md"
HOW_TO_GET_MNIST = (
    "get them with `python -c 'import keras; keras.datasets.mnist.load_data()'` (downloads "
    "~/.keras/datasets/mnist.npz, 11 MB), or pass --data with a mnist.npz or a folder of the t10k IDX files"
)


def load_test_digits(path: Path | None) -> tuple[dict, Path]:
    """The official test digits from ``path``, else from the shared data, else Keras' cache."""
    candidates = [path] if path else [SHARED_DATA / "mnist", _keras_cache_file()]
    for candidate in candidates:
        if candidate.exists():
            arrays = read_idx_folder(candidate) if candidate.is_dir() else read_npz(candidate)
            if "x_test" not in arrays:
                raise UserError(f"{candidate}: holds no MNIST test digits; {HOW_TO_GET_MNIST}")
            return arrays, candidate
    raise UserError(f"no MNIST test digits in {' or '.join(map(str, candidates))}; {HOW_TO_GET_MNIST}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--model", default="pretrained")
    parser.add_argument(
        "--data",
        type=Path,
        help="mnist.npz or a folder with the t10k IDX files "
        "(default: $SHARED_DATA/mnist, else ~/.keras/datasets/mnist.npz)",
    )
    add_write_argument(parser, RESULTS)
    options = parser.parse_args(argv)
    arrays, data_path = load_test_digits(options.data)
    if not 1 <= options.count <= len(arrays["x_test"]):
        raise UserError(f"--count must be between 1 and {len(arrays['x_test'])}; received: {options.count}")
    model, _, model_file = loading.load_saved(registry.get_project("mnist"), options.model)
    shown_model = paths.in_repository(model_file)
    started = time.perf_counter()
    accuracy = drawn_digit_accuracy(model, arrays["x_test"], arrays["y_test"], options.count, seed=2)
    seconds = time.perf_counter() - started
    line = (
        f"| {time.strftime('%Y-%m-%d')} | {shown_model} | {options.count} drawn "
        f"official test digits | {accuracy:.2%} | {seconds / options.count * 1000:.1f} ms/digit "
        f"(drawing + preprocessing + model) | {platform.machine()}, {os.cpu_count()} cores |"
    )
    print(f"drawn-digit accuracy: {accuracy:.2%} on {options.count} digits of {data_path} ({model_file})")
    if not options.write:
        return 0
    if not RESULTS.exists():
        RESULTS.write_text(
            "# MNIST: prediction on drawn digits\n\n"
            "Command: `.venv/bin/python -m bench.mnist_drawn --write`\n\n"
            "| date | model | input | accuracy | time | machine |\n|---|---|---|---|---|---|\n"
        )
    with open(RESULTS, "a") as file:
        file.write(line + "\n")
    print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
