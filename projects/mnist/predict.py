"""Digit images (any size, either polarity, anywhere on the canvas) → predicted digit."""

from __future__ import annotations

import argparse
import logging

import keras
import numpy as np

from common.config import Config
from common.errors import UserError
from common.images import read_image
from projects.mnist.preprocess import to_mnist, to_model_input, unlike_one_digit

log = logging.getLogger(__name__)


def classify_digits(model: keras.Model, digits: np.ndarray) -> np.ndarray:
    """Class probabilities for a batch of MNIST-format digits, shape (N, 10)."""
    return np.asarray(model.predict_on_batch(to_model_input(digits)))


def predict(
    model: keras.Model, inputs: list[str], config: Config, options: argparse.Namespace | None = None
) -> list[dict]:
    """Reads, normalises and classifies each image file.

    Returns:
        One ``{"input", "label", "confidence", "top3", "warning"}`` per file, in order;
        ``warning`` says why the image does not look like one digit on plain paper (a photo,
        several digits), or is None.
    """
    if not inputs:
        raise UserError("give one or more image files: python -m common predict mnist digit.png")
    digits = [to_mnist_checked(path) for path in inputs]
    probabilities = classify_digits(model, np.stack(digits))
    results = []
    for path, row in zip(inputs, probabilities):
        ranked = np.argsort(row)[::-1][:3]
        results.append(
            {
                "input": path,
                "label": int(ranked[0]),
                "confidence": round(float(row[ranked[0]]), 4),
                "top3": [[int(label), round(float(row[label]), 4)] for label in ranked],
                "warning": input_warning(path),
            }
        )
    return results


def to_mnist_checked(path: str) -> np.ndarray:
    """Reads one file and normalises it, naming the file in any error."""
    try:
        return to_mnist(read_image(path, mode="L"))
    except UserError as error:
        message = str(error)
        raise UserError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def input_warning(path: str) -> str | None:
    """Why the image file does not look like one digit on plain paper, also logged; or None."""
    warning = unlike_one_digit(read_image(path, mode="L"))
    if warning is not None:
        log.warning("%s: %s", path, warning)
    return warning


def format_prediction(result: dict) -> str:
    """``digit.png: 7 (98.1%)``."""
    return f"{result['input']}: {result['label']} ({result['confidence']:.1%})"
