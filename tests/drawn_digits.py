"""Simulated drawings of digits, for testing and measuring prediction on drawn input."""

from __future__ import annotations

import cv2
import numpy as np


def draw_on_canvas(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turns an MNIST digit into a 'drawing': dark pen on a large light page, anywhere, any size.

    The digit is enlarged to a random height, thresholded into a solid pen stroke, thinned for
    half of them (a thin pen rather than a marker) without breaking the stroke, and placed
    off-centre on an 800x600 page with paper noise; ink and paper shades vary too.
    """
    height = int(rng.integers(60, 420))
    big = cv2.resize(digit, (height, height), interpolation=cv2.INTER_CUBIC)
    stroke = big > 255 * rng.uniform(0.35, 0.6)
    if rng.random() < 0.5:  # a thin pen: erode towards a line a few pixels wide
        stroke = _thin(stroke, max_iterations=height // 40)
    paper, ink = rng.uniform(200, 255), rng.uniform(0, 60)
    page = np.full((600, 800), paper) + rng.normal(0, 4, (600, 800))
    top = int(rng.integers(0, 600 - height))
    left = int(rng.integers(0, 800 - height))
    region = page[top : top + height, left : left + height]
    region[stroke] = ink
    return np.clip(page, 0, 255).astype(np.uint8)


def _thin(stroke: np.ndarray, max_iterations: int) -> np.ndarray:
    """Erodes a stroke step by step, stopping before it would break into more pieces."""
    current = stroke.astype(np.uint8)
    pieces = cv2.connectedComponents(current)[0]
    for _ in range(max_iterations):
        eroded = cv2.erode(current, np.ones((3, 3), np.uint8))
        if eroded.sum() < 0.2 * current.sum() or cv2.connectedComponents(eroded)[0] > pieces:
            break
        current = eroded
    return current.astype(bool)


def drawn_digit_accuracy(model, images: np.ndarray, labels: np.ndarray, count: int, seed: int) -> float:
    """Accuracy of a model on ``count`` random digits redrawn by :func:`draw_on_canvas`.

    Each drawing goes through ``to_mnist``, the preprocessing ``predict`` uses for image files.
    """
    from projects.mnist.predict import classify_digits
    from projects.mnist.preprocess import to_mnist

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), count, replace=False)
    drawings = np.stack([to_mnist(draw_on_canvas(images[i], rng)) for i in chosen])
    return float(np.mean(classify_digits(model, drawings).argmax(axis=1) == labels[chosen]))
