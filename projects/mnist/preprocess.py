"""Any digit picture → a 28x28 digit made the way MNIST's were.

MNIST's digits are white ink on black, size-normalised to fit a 20x20 box (aspect kept,
anti-aliased), then centred by centre of mass in a 28x28 image. A drawing or photo (dark ink on
light paper, any size, anywhere on the canvas) looks nothing like that until it gets the same
treatment; this module is that treatment, used by ``predict`` and by the drawing pad alike.
"""

from __future__ import annotations

import cv2
import numpy as np

from common.errors import UserError

BOX = 20  # MNIST fits each digit in a 20x20 box ...
SIZE = 28  # ... centred in a 28x28 image.
# MNIST strokes are about 2.5 px wide inside the 20 px box; thinner ink is thickened to that.
TARGET_STROKE = 2.5 / BOX


def to_mnist(image: np.ndarray) -> np.ndarray:
    """Normalises one grayscale digit image (2-D uint8, any size, any polarity) to MNIST's format.

    Steps: make the ink bright on a black background (inverting when the background is light),
    remove the paper's grey level, crop to the ink, thicken strokes that are thin for the
    digit's size, fit into a 20x20 box keeping the aspect ratio, and place the result in 28x28
    so its centre of mass is at the centre.

    Returns:
        A (28, 28) uint8 array, white digit on black.

    Raises:
        UserError: the image holds no ink (a blank page).
    """
    gray = np.asarray(image, dtype=np.float32)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image; received shape {gray.shape}")
    # The background is what most of the border is; a light one means dark ink on paper.
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    ink = gray - background if background < 128 else background - gray
    ink = np.clip(ink, 0, None)
    peak = float(ink.max())
    if peak < 32:  # Less than an eighth of full contrast: nothing was drawn.
        raise UserError("no digit found: the image is blank or has almost no contrast")
    ink = ink * (255.0 / peak)
    ink[ink < 0.15 * 255] = 0  # Paper texture and JPEG noise are not ink.

    mask = (ink >= 0.35 * 255).astype(np.uint8)
    rows, columns = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    digit = ink[top:bottom, left:right]
    digit = _thicken(digit, mask[top:bottom, left:right])

    height, width = digit.shape
    scale = BOX / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(digit, new_size, interpolation=interpolation)
    small = small * (255.0 / max(float(small.max()), 1e-6))

    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    top = (SIZE - small.shape[0]) // 2
    left = (SIZE - small.shape[1]) // 2
    canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
    canvas = _centre_by_mass(canvas)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def _thicken(digit: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Dilates strokes whose width, relative to the digit's size, is thinner than MNIST's."""
    longest_side = max(digit.shape)
    area = float(mask.sum())
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(contour, True) for contour in contours)
    if perimeter <= 0:
        return digit
    # A stroke of width w and length L has area w*L and perimeter about 2L.
    stroke_width = 2 * area / perimeter
    target_width = TARGET_STROKE * longest_side
    grow = int(round(target_width - stroke_width))
    if grow < 1:
        return digit
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow + 1, grow + 1))
    # Pad first so the thickened stroke is not clipped at the crop's edge.
    padded = cv2.copyMakeBorder(digit, grow, grow, grow, grow, cv2.BORDER_CONSTANT, value=0)
    thick = cv2.dilate(padded, kernel)
    rows, columns = np.nonzero(thick)
    return thick[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]


def _centre_by_mass(image: np.ndarray) -> np.ndarray:
    """Shifts by whole pixels so the centre of mass lands on pixel (14, 14), as in MNIST."""
    total = float(image.sum())
    rows, columns = np.indices(image.shape)
    centre_row = float((rows * image).sum()) / total
    centre_column = float((columns * image).sum()) / total
    shift_row = int(round(SIZE / 2 - centre_row))
    shift_column = int(round(SIZE / 2 - centre_column))
    matrix = np.float32([[1, 0, shift_column], [0, 1, shift_row]])
    return cv2.warpAffine(image, matrix, (SIZE, SIZE), flags=cv2.INTER_NEAREST, borderValue=0)


def to_model_input(digits: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Stacks 28x28 uint8 digits into the (N, 28, 28, 1) batch the model takes."""
    return np.asarray(digits, dtype=np.uint8).reshape(-1, SIZE, SIZE, 1)
