"""FER2013 in either of its layouts (or a synthetic sample), split into train / validation / test.

Sources, in order (the one used is logged and recorded as ``data_source``):
1. ``data.path``: Kaggle's folder layout (``train/<emotion>/*.jpg|png``, ``test/<emotion>/...``,
   either or both), one such split folder on its own, or Kaggle's ``fer2013.csv`` (or a folder
   holding it).
2. ``data/fer2013/`` in the repository, in any of those layouts.
3. A generated sample of simple synthetic faces (``synthetic.py``), with one message on how to get
   FER2013. ``data.synthetic = true`` asks for it even when ``data/fer2013/`` is there (a set
   ``data.path`` still wins, so a model trained on the sample can be evaluated on real faces).

Decoding 35,000 small images takes a while, so decoded arrays are cached in ``.npz`` files
(``data.cache_dir``). Each cache file records a fingerprint of its source (every image's path,
size and modification time; the CSV's size and modification time) and is rebuilt when it differs.

The test split is the source's own (``test/``, or the CSV's PublicTest + PrivateTest rows) when it
has one; otherwise a stratified part of the training split is held out, with the same seed at
training and evaluation, so ``evaluate`` scores exactly the faces training never saw. Validation is
always carved from the training split, stratified; never from the test split.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from common.core.config import Config
from common.core.errors import UserError
from common.core.paths import ROOT
from common.kit.splits import FileList, Splits, split_arrays
from projects.emojify.classes import CLASS_NAMES, NUM_CLASSES, class_index
from projects.emojify.synthetic import SIZE, synthetic_faces

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = ROOT / "data" / "fer2013"
DEFAULT_CACHE_DIR = ROOT / "data" / ".cache" / "emojify"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
CSV_NAME = "fer2013.csv"
# Threads decoding a streamed source's test split (OpenCV releases Python's lock while decoding).
DECODE_THREADS = min(8, os.cpu_count() or 1)
# ``{use}`` is "training on" or "evaluating on": `evaluate` trains nothing, and saying so would
# send a user looking for a training run that never happened.
HOW_TO_GET_FER2013 = (
    "FER2013 not found in data/fer2013/; {use} a generated sample of simple synthetic faces "
    "instead (not FER2013). For real faces, download Kaggle's 'msambare/fer2013' (train/ and test/ "
    "folders) or the 2013 challenge's fer2013.csv into data/fer2013/, or set data.path"
)


def load_data(config: Config, need_training: bool = True) -> Splits:
    """Returns the splits of the configured source; only the test split if not training.

    With ``data.streaming`` the training and validation splits are the image files, read batch
    by batch while training (:func:`load_file_lists`)."""
    if config.data.streaming:
        return load_file_lists(config, need_training)
    arrays, source = load_arrays(config, need_training)
    info = {"class_names": list(CLASS_NAMES), "synthetic": source.startswith("synthetic")}
    splits, test_held_out = split_arrays(arrays, config, need_training)
    if test_held_out:
        source += f"; test = held-out {config.data.test_fraction:.0%} of train"
    prepared: dict[str, Any] = {name: (to_model_input(x), y) for name, (x, y) in splits.items()}
    class_weight = class_weights(splits["train"][1], config.train.class_weighting) if need_training else None
    return Splits(
        **prepared, source=source, stand_in=bool(info["synthetic"]), class_weight=class_weight, info=info
    )


def load_file_lists(config: Config, need_training: bool = True) -> Splits:
    """The splits of Kaggle's folder layout as file lists, for streaming (``data.streaming``).

    The files are listed, not decoded, and split exactly as :func:`load_data` splits the decoded
    faces (same order, stratified, same seed and fractions), so the same faces train, validate
    and test either way. Training and validation are :class:`common.kit.splits.FileList` s; the test
    split, small, is decoded into an array for evaluation.

    Raises:
        UserError: the source is Kaggle's CSV or the synthetic sample, which have no files to stream.
    """
    path = _streamed_source(config)
    csv_path, folders, source = locate_fer2013(path)
    if csv_path is not None:
        raise UserError(
            f"config key 'data.streaming' reads image folders (Kaggle's train/<emotion>/*.png), one "
            f"face per file; {csv_path} is FER2013's CSV: set data.streaming = false to read it into memory"
        )
    listed = {}
    for split, folder in folders.items():
        files, labels = list_split_folder(folder)
        listed[f"x_{split}"] = np.array([str(file) for file in files], dtype=object)
        listed[f"y_{split}"] = labels
        log.info("listed %d %s faces in %s, to be read as training needs them", len(files), split, folder)
    splits, test_held_out = split_arrays(listed, config, need_training)
    if test_held_out:
        source += f"; test = held-out {config.data.test_fraction:.0%} of train"
    x_test, y_test = splits.pop("test")
    test = (FileList(x_test, decode_face).read(threads=DECODE_THREADS), y_test)
    prepared: dict[str, Any] = {name: (FileList(x, decode_face), y) for name, (x, y) in splits.items()}
    class_weight = class_weights(splits["train"][1], config.train.class_weighting) if need_training else None
    info = {"class_names": list(CLASS_NAMES), "synthetic": False}
    return Splits(test=test, **prepared, source=source, class_weight=class_weight, info=info)


def _streamed_source(config: Config) -> Path:
    """The folder ``data.streaming`` reads: ``data.path``, else ``data/fer2013/``; the synthetic
    sample is generated in memory and cannot be streamed."""
    if config.data.path:
        return Path(config.data.path).expanduser()
    if not config.data.synthetic and DEFAULT_DATA_DIR.exists():
        return DEFAULT_DATA_DIR
    reason = "data.synthetic = true" if config.data.synthetic else "FER2013 is not in data/fer2013/"
    raise UserError(
        f"config key 'data.streaming' reads FER2013's image folders, but {reason} and the synthetic "
        "sample is made in memory: set data.path to Kaggle's fer2013 folder, or data.streaming = false"
    )


def decode_face(path: str) -> np.ndarray:
    """One face file as the model's input, ``(48, 48, 1)`` uint8: exactly :func:`read_face`'s
    pixels, for streaming.

    A complete 48x48 grayscale JPEG or PNG (every FER2013 face) is decoded by OpenCV, four times
    faster than PIL and without holding Python's lock, so decoding threads run in parallel; its
    pixels are PIL's (checked on all 28,709 faces of FER2013's train split). Anything else (colour,
    another size, a truncated file, which OpenCV would decode with a grey tail where PIL refuses
    it) goes through :func:`read_face` itself, with its resizing and its errors.
    """
    import cv2  # Imported here, as only streaming needs it.

    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError:
        data = b""
    complete = data.startswith(b"\x89PNG") or (data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9"))
    face = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if complete else None
    if face is None or face.dtype != np.uint8 or face.shape != (SIZE, SIZE):
        face = read_face(Path(path))
    return face[..., None]


def to_model_input(images: np.ndarray) -> np.ndarray:
    """(N, 48, 48) uint8 faces → the model's input, (N, 48, 48, 1) raw 0-255 pixels."""
    return np.asarray(images, dtype=np.uint8).reshape(-1, SIZE, SIZE, 1)


def class_weights(labels: np.ndarray, method: str) -> dict[int, float] | None:
    """Per-class loss weights that lift rare classes ("disgust" is 1.5% of FER2013).

    ``"balanced"`` weighs each class by ``n / (classes * count)``; ``"sqrt"`` by the square root of
    that, a milder lift that helps the rare class without costing overall accuracy; ``"none"``
    leaves every face at weight 1. Weights are scaled so the average face still weighs 1.
    """
    if method == "none":
        return None
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(float)
    present = counts > 0
    weights = np.zeros(NUM_CLASSES)
    weights[present] = len(labels) / (present.sum() * counts[present])
    if method == "sqrt":
        weights = np.sqrt(weights)
    weights /= (weights * counts).sum() / len(labels)
    return {index: round(float(weights[index]), 4) for index in range(NUM_CLASSES) if present[index]}


def load_arrays(config: Config, need_training: bool = True) -> tuple[dict[str, np.ndarray], str]:
    """The decoded arrays (``x_train``, ``y_train``, ``x_test``, ``y_test``, as present), and a
    description of where they came from. ``need_training`` only words the message about the
    synthetic sample (training on it, or evaluating on it)."""
    data = config.data
    if data.path:
        path = Path(data.path).expanduser()
    elif data.synthetic:
        return _synthetic(config, reason="data.synthetic = true")
    elif DEFAULT_DATA_DIR.exists():
        path = DEFAULT_DATA_DIR
    else:
        log.warning(HOW_TO_GET_FER2013.format(use="training on" if need_training else "evaluating on"))
        return _synthetic(config, reason="FER2013 not found")
    cache_dir = Path(data.cache_dir).expanduser() if data.cache_dir else DEFAULT_CACHE_DIR
    return read_fer2013(path, cache_dir)


def _synthetic(config: Config, reason: str) -> tuple[dict[str, np.ndarray], str]:
    # The sample has its own test split, drawn independently (another seed), so that the few
    # training faces are not thinned further by a held-out part.
    per_class = config.data.synthetic_per_class
    x_train, y_train = synthetic_faces(per_class, config.seed)
    x_test, y_test = synthetic_faces(per_class, config.seed + 1)
    source = (
        f"synthetic sample of simple drawn faces ({per_class} per emotion to train and as many to test, "
        f"seed {config.seed}; {reason}), NOT FER2013"
    )
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}, source


def read_fer2013(path: Path, cache_dir: Path | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Reads FER2013 from a folder layout or a CSV, through the decoded-array cache.

    Args:
        path: a folder with ``train/`` and/or ``test/`` (each holding one folder per emotion), one
            such split folder, ``fer2013.csv``, or a folder holding ``fer2013.csv``.
        cache_dir: where decoded arrays are kept; ``None`` decodes without caching.

    Returns:
        ``(arrays, description)``.
    """
    path = Path(path)
    csv_path, folders, description = locate_fer2013(path)
    if csv_path is not None:
        return _cached(csv_path, "csv", cache_dir, lambda: read_csv(csv_path)), description
    return _cached(path, "folders", cache_dir, lambda: read_split_folders(folders)), description


def locate_fer2013(path: Path) -> tuple[Path | None, dict[str, Path], str]:
    """Which layout ``path`` holds: ``(csv_file, {}, description)`` for Kaggle's CSV, or
    ``(None, {"train": folder, "test": folder}, description)`` (either or both splits) for its
    image folders. Raises ``UserError`` when it holds neither."""
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise UserError(f"{path}: expected Kaggle's fer2013.csv or a folder of train/ and test/ images")
        return path, {}, f"FER2013 CSV {path}"
    splits = {name: path / name for name in ("train", "test") if (path / name).is_dir()}
    if splits:
        return None, splits, f"FER2013 {' + '.join(f'{name} split' for name in splits)} at {path}"
    if (path / CSV_NAME).is_file():
        return path / CSV_NAME, {}, f"FER2013 CSV {path / CSV_NAME}"
    if _emotion_folders(path):
        # A split folder on its own (e.g. data.path=.../fer2013/test): its name says which split.
        split = "test" if path.name.lower() == "test" else "train"
        return None, {split: path}, f"FER2013 {split} split at {path}"
    raise UserError(
        f"{path}: no FER2013 found; expected train/<emotion>/ and/or test/<emotion>/ image folders "
        f"(Kaggle 'msambare/fer2013'), or {CSV_NAME}"
    )


def _emotion_folders(folder: Path) -> list[Path]:
    return sorted(child for child in folder.iterdir() if child.is_dir() and not child.name.startswith("."))


def read_split_folders(splits: dict[str, Path]) -> dict[str, np.ndarray]:
    """Decodes ``{"train": folder, "test": folder}``, each holding one folder per emotion."""
    arrays = {}
    for split, folder in splits.items():
        files, labels = list_split_folder(folder)
        arrays[f"x_{split}"] = np.stack([read_face(file) for file in files])
        arrays[f"y_{split}"] = labels
        log.info("decoded %d %s faces from %s", len(files), split, folder)
    return arrays


def list_split_folder(folder: Path) -> tuple[list[Path], np.ndarray]:
    """The face images of one split folder and their labels: emotion folders in name order, the
    files of each in name order (the order of the decoded arrays, cached or streamed)."""
    files, labels = [], []
    for emotion_folder in _emotion_folders(folder):
        label = class_index(emotion_folder.name)
        images = _image_files(emotion_folder)
        files += images
        labels += [label] * len(images)
    if not files:
        raise UserError(f"{folder}: no face images (.jpg, .png) in its emotion folders")
    return files, np.asarray(labels, dtype=np.int64)


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        file
        for file in folder.iterdir()
        if file.suffix.lower() in IMAGE_SUFFIXES and not file.name.startswith(".")
    )


def read_face(path: Path) -> np.ndarray:
    """One face image as a (48, 48) uint8 grayscale array, resized if it has another size."""
    try:
        with Image.open(path) as opened:
            image = opened.convert("L")
            if image.size != (SIZE, SIZE):
                image = image.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
            return np.asarray(image)
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UserError(f"{path}: the image is truncated or corrupt ({error})") from None


def read_csv(path: Path) -> dict[str, np.ndarray]:
    """Decodes Kaggle's ``fer2013.csv``: ``emotion`` (0-6), ``pixels`` (2,304 numbers), ``Usage``.

    ``Training`` rows form the train split; ``PublicTest`` and ``PrivateTest`` together the test
    split (the same 7,178 faces as the folder layout's ``test/``). Without a ``Usage`` column every
    row is training data.
    """
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise UserError(f"{path}: not a readable CSV file ({error})") from None
    columns = {name.strip().lower(): name for name in table.columns}
    if "emotion" not in columns or "pixels" not in columns:
        raise UserError(
            f"{path}: expected FER2013 columns 'emotion' and 'pixels' (and 'Usage'); "
            f"found: {list(table.columns)}"
        )
    try:
        labels = table[columns["emotion"]].astype(int).to_numpy()
    except ValueError:
        raise UserError(f"{path}: column 'emotion' must hold the codes 0-6") from None
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise UserError(
            f"{path}: column 'emotion' must hold the codes 0-6; found {labels.min()}-{labels.max()}"
        )
    images = _parse_pixels(path, table[columns["pixels"]].tolist())
    if "usage" in columns:
        usage = table[columns["usage"]].str.strip().to_numpy()
        unknown = sorted(set(usage) - {"Training", "PublicTest", "PrivateTest"})
        if unknown:
            raise UserError(
                f"{path}: column 'Usage' holds {unknown}; expected Training, PublicTest or PrivateTest"
            )
        is_train = usage == "Training"
    else:
        is_train = np.ones(len(labels), dtype=bool)
    arrays = {}
    for split, rows in (("train", is_train), ("test", ~is_train)):
        if rows.any():
            arrays[f"x_{split}"] = images[rows]
            arrays[f"y_{split}"] = labels[rows].astype(np.int64)
    if not arrays:
        raise UserError(f"{path}: the CSV holds no faces")
    log.info("decoded %d faces from %s", len(labels), path)
    return arrays


def _parse_pixels(path: Path, rows: list[str]) -> np.ndarray:
    expected = SIZE * SIZE
    # One parse of all rows at once is ~50x faster than splitting row by row.
    values = np.array(" ".join(rows).split(), dtype=np.int64) if rows else np.zeros(0, np.int64)
    if values.size != expected * len(rows):
        for number, row in enumerate(rows, start=2):
            if len(row.split()) != expected:
                raise UserError(
                    f"{path}: line {number} has {len(row.split())} pixel values; a 48x48 face has {expected}"
                )
    if values.size and (values.min() < 0 or values.max() > 255):
        raise UserError(f"{path}: pixel values must lie in 0-255")
    return values.astype(np.uint8).reshape(len(rows), SIZE, SIZE)


# The decoded-array cache ---------------------------------------------------------------------


def fingerprint(path: Path) -> str:
    """A digest of what the source holds: the path, size and modification time of every image
    file under a folder (or of one file). Editing, adding, removing or renaming an image changes it."""
    if path.is_file():
        stat = path.stat()
        return hashlib.sha1(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}".encode()).hexdigest()
    lines = []
    for root, folders, _ in os.walk(path):
        folders.sort()
        relative = os.path.relpath(root, path)
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                    stat = entry.stat()
                    lines.append(f"{relative}/{entry.name}\t{stat.st_size}\t{stat.st_mtime_ns}")
    return hashlib.sha1("\n".join(sorted(lines)).encode()).hexdigest()


def cache_file(path: Path, kind: str, cache_dir: Path) -> Path:
    """The cache file of one source: named after its absolute path, so each source has one."""
    key = hashlib.sha1(f"{kind}:{path.resolve()}".encode()).hexdigest()[:16]
    return cache_dir / f"fer2013-{key}.npz"


def _cached(path: Path, kind: str, cache_dir: Path | None, decode) -> dict[str, np.ndarray]:
    if cache_dir is None:
        return decode()
    target = cache_file(path, kind, cache_dir)
    current = fingerprint(path)
    if target.is_file():
        try:
            with np.load(target) as archive:
                if str(archive["fingerprint"]) == current:
                    log.info("decoded faces read from cache %s", target)
                    return {key: archive[key] for key in archive.files if key != "fingerprint"}
            log.info("%s changed since it was cached; decoding it again", path)
        except (OSError, ValueError, KeyError, EOFError):
            log.info("cache %s is unreadable; decoding %s again", target, path)
    arrays = decode()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.stem}.{os.getpid()}.partial.npz")
        np.savez(partial, fingerprint=np.array(current), **arrays)
        os.replace(partial, target)
        log.info("decoded faces cached in %s", target)
    except OSError as error:  # A read-only home or full disk costs only speed, not the run.
        log.warning("could not cache decoded faces in %s (%s)", cache_dir, error)
    return arrays
