"""Simulated drawings of digits, for testing and measuring prediction on drawn input."""

from __future__ import annotations

import cv2
import numpy as np


def draw_on_canvas(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turns an MNIST digit into a 'drawing': dark pen on a large light page, anywhere, any size.

    The digit is enlarged to a random height, thresholded into a solid pen stroke of random
    thickness (thin pen to thick marker), and placed off-centre on an 800x600 page with paper
    noise; ink and paper shades vary too.
    """
    height = int(rng.integers(60, 420))
    big = cv2.resize(digit, (height, height), interpolation=cv2.INTER_CUBIC)
    stroke = big > 255 * rng.uniform(0.35, 0.6)
    if rng.random() < 0.5:  # a thin pen: erode the stroke down to a few pixels
        thinned = cv2.erode(stroke.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=height // 40)
        stroke = thinned.astype(bool) if thinned.any() else stroke
    paper, ink = rng.uniform(200, 255), rng.uniform(0, 60)
    page = np.full((600, 800), paper) + rng.normal(0, 4, (600, 800))
    top = int(rng.integers(0, 600 - height))
    left = int(rng.integers(0, 800 - height))
    region = page[top : top + height, left : left + height]
    region[stroke] = ink
    return np.clip(page, 0, 255).astype(np.uint8)
