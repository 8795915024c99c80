"""Digit images (any size, either polarity, anywhere on the canvas) → predicted digit."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import keras
import numpy as np

from common.core.config import Config
from common.core.errors import UserError, per_input
from common.core.project import ModelIO
from common.kit.images import read_image
from projects.mnist.model import to_model_input
from projects.mnist.preprocess import to_mnist, unlike_one_digit

log = logging.getLogger(__name__)

# What `python -m common serve` offers: POST /api/mnist/predict with one image (field `file`),
# answered by `predict` below, the same JSON as `predict mnist --json`.
WEB_API = {"verb": "predict", "upload": ".png", "upload_help": "an image of one digit (PNG, JPEG, ...)"}
# A digit ends up 20 pixels high: a picture is read at most this size (a photo scaled down as it
# is decoded), and one with more pixels than this to decode (a JPEG counted after that scaling) is
# refused rather than held in memory, a 64-megapixel PNG's 256 MB for 784 pixels of answer.
MAX_SIDE = 1024
MAX_PIXELS = 16_000_000


def describe_io(config: Config) -> ModelIO:
    """What an exported mnist model takes and gives (written into ``export.json``)."""
    return ModelIO(
        input=(
            "28x28x1 grayscale pixels, 0-255 as float32, one digit made the way MNIST's were: ink bright "
            "on a dark background (255 = ink, 0 = paper), the digit fitted into a 20x20 box and centred "
            "by its centre of mass. A drawing or photo (dark ink on light paper, any size) needs that "
            "treatment first, which stays in Python: projects/mnist/preprocess.py, to_mnist"
        ),
        output="10 probabilities, one per digit, in the order of classes; the highest is the answer",
        classes=tuple(str(digit) for digit in range(10)),
    )


def classify_digits(model: keras.Model, digits: np.ndarray) -> np.ndarray:
    """Class probabilities for a batch of MNIST-format digits, shape (N, 10)."""
    return np.asarray(model.predict_on_batch(to_model_input(digits)))


def predict(model: keras.Model, inputs: list[str], config: Config) -> Iterator[dict]:
    """Reads, normalises and classifies each image file, one at a time.

    Yields:
        One ``{"input", "label", "confidence", "top3", "warning"}`` per file, in order;
        ``warning`` says why the image does not look like one digit on plain paper (a photo,
        several digits), or is None. A file that cannot be read gives ``{"input", "error"}`` and
        the others are still answered.
    """
    if not inputs:
        raise UserError("give one or more image files: python -m common predict mnist digit.png")
    return per_input(inputs, lambda path: predict_file(model, path))


def predict_file(model: keras.Model, path: str) -> dict:
    """One image file's digit, its confidence, the three likeliest digits and any warning."""
    image = read_image(path, mode="L", max_side=MAX_SIDE, max_pixels=MAX_PIXELS)
    row = classify_digits(model, to_mnist(image)[None])[0]
    ranked = np.argsort(row)[::-1][:3]
    warning = unlike_one_digit(image)
    if warning is not None:
        log.warning("%s: %s", path, warning)
    return {
        "input": path,
        "label": int(ranked[0]),
        "confidence": round(float(row[ranked[0]]), 4),
        "top3": [[int(label), round(float(row[label]), 4)] for label in ranked],
        "warning": warning,
    }


def format_prediction(result: dict) -> str:
    """``digit.png: 7 (98.1%)``."""
    return f"{result['input']}: {result['label']} ({result['confidence']:.1%})"
