"""Any digit picture → a 28x28 digit made the way MNIST's were.

MNIST's digits are white ink on black, size-normalised to fit a 20x20 box (aspect kept,
anti-aliased), then centred by centre of mass in a 28x28 image. A drawing or photo (dark ink on
light paper, any size, anywhere on the canvas) looks nothing like that until it gets the same
treatment; this module is that treatment, used by ``predict`` and by the drawing pad alike.
It also tells an image that is no single digit at all (a photo, a number), which the model would
read as a digit all the same.
"""

from __future__ import annotations

import cv2
import numpy as np

from common.core.errors import UserError

BOX = 20  # MNIST fits each digit in a 20x20 box ...
SIZE = 28  # ... centred in a 28x28 image.
# MNIST strokes are about 2.5 px wide inside the 20 px box; thinner ink is thickened to that.
TARGET_STROKE = 2.5 / BOX
# Ink levels, as fractions of the darkest ink: below NOISE is paper texture or JPEG noise; from
# STROKE up is the pen's stroke itself (what is cropped to, and counted as a piece of ink); from
# FULL up is ink at full strength, and what lies between NOISE and FULL is a grey tone.
NOISE = 0.15
STROKE = 0.35
FULL = 0.7

# What one digit on plain paper never looks like (see unlike_one_digit). Chosen from measurements
# on 2,000 MNIST test digits drawn on an 800x600 page (tests/drawn_digits.py), 2,000 raw 28x28
# ones and 500 enlarged ones: ink over at most 35% of the image, grey tones at most 71% of the ink
# near the stroke, a border spread of at most 0.021; on 1,000 FER2013 faces the medians are 49%,
# 81% and 0.24. The resulting warning rates: tests/test_mnist.py::test_warning_rates.
PHOTO_BORDER_SPREAD = 0.1  # Plain paper's border is one tone; a photo's edge is anything.
PHOTO_GREY_TONES = 0.8  # Ink is mostly full strength; a photo is mostly grey tones ...
PHOTO_INKED = 0.4  # ... or grey tones over much of the image:
PHOTO_INKED_GREY_TONES = 0.5  # a tightly cropped bold digit can cover 40%, but in solid ink.
# Several digits: separate pieces at least half as tall as all the ink, side by side; or one
# piece (digits written joined) this many times as wide as it is tall. Single MNIST digits reach
# 1.43 at the 99th percentile and 2.0 at most; two side by side, 2.0 at the median.
PIECE_HEIGHT = 0.5
WIDE = 1.8


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
    ink, _ = _ink(image)
    ink[ink < NOISE * 255] = 0  # Paper texture and JPEG noise are not ink.

    mask = (ink >= STROKE * 255).astype(np.uint8)
    top, bottom, left, right = _bounds(mask)
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


def _ink(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The ink, bright on black and scaled so the darkest ink is 255, and the border's spread.

    The background is what most of the border is; a light one means dark ink on paper. The
    border's spread is the median distance of border pixels from that background, as a fraction
    of the ink's contrast: 0 for plain paper.

    Raises:
        UserError: the image holds no ink (a blank page).
    """
    gray = np.asarray(image, dtype=np.float32)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image; received shape {gray.shape}")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    ink = gray - background if background < 128 else background - gray
    ink = np.clip(ink, 0, None)
    peak = float(ink.max())
    if peak < 32:  # Less than an eighth of full contrast: nothing was drawn.
        raise UserError("no digit found: the image is blank or has almost no contrast")
    border_spread = float(np.median(np.abs(border - background))) / peak
    return ink * (255.0 / peak), border_spread


def unlike_one_digit(image: np.ndarray) -> str | None:
    """Says why an image does not look like one digit on plain paper, or None when it does.

    The model answers a digit for anything; this catches the two common mistakes, a photo and a
    number of several digits, from the image itself (thresholds and their measurements above).
    Of 2,000 MNIST test digits drawn on a page, and of 2,000 raw ones, 0.1% are flagged (none as
    a photo); of two-digit numbers 98.6-100%, of FER2013 faces 98%.

    Args:
        image: the grayscale image given to :func:`to_mnist` (2-D uint8, any size).

    Returns:
        One sentence for the user, or None.
    """
    try:
        ink, border_spread = _ink(image)
    except UserError:  # A blank page is to_mnist's error to report, not a warning.
        return None
    inked = ink >= NOISE * 255
    stroke = (ink >= STROKE * 255).astype(np.uint8)
    top, bottom, left, right = _bounds(stroke)
    inked_near_stroke = inked[top:bottom, left:right]
    grey_tones = float((ink[top:bottom, left:right][inked_near_stroke] < FULL * 255).mean())
    inked_fraction = float(inked.mean())
    if (
        border_spread >= PHOTO_BORDER_SPREAD
        or grey_tones >= PHOTO_GREY_TONES
        or (inked_fraction >= PHOTO_INKED and grey_tones >= PHOTO_INKED_GREY_TONES)
    ):
        return (
            "this looks like a photo, not a digit on plain paper (grey tones over much of the "
            "image); the model only knows single handwritten digits, so its answer means little"
        )
    pieces = _pieces_side_by_side(stroke[top:bottom, left:right])
    if pieces >= 2:
        return (
            f"this looks like {pieces} characters side by side, not one digit; the model reads "
            "one digit per image, so crop each digit into its own file"
        )
    aspect = (right - left) / (bottom - top)
    if aspect >= WIDE:
        return (
            f"the ink is {aspect:.1f} times as wide as it is tall, like several digits written "
            "together; the model reads one digit per image, so crop each digit into its own file"
        )
    return None


def _pieces_side_by_side(stroke: np.ndarray) -> int:
    """Counts digit-sized pieces of ink that stand side by side, not one above or inside another.

    ``stroke`` is cropped to the ink. A piece is a connected part of it at least ``PIECE_HEIGHT``
    as tall as all the ink and holding at least 2% of it (a 5's detached bar, a dotted stroke or a
    speck is not one); pieces whose columns overlap by more than a tenth of their width are
    counted once (an open 4's two halves).
    """
    height = stroke.shape[0]
    _, _, stats, _ = cv2.connectedComponentsWithStats(stroke, connectivity=8)
    stats = stats[1:]  # Row 0 is the background.
    areas = stats[:, cv2.CC_STAT_AREA]
    tall = stats[(areas >= 0.02 * areas.sum()) & (stats[:, cv2.CC_STAT_HEIGHT] >= PIECE_HEIGHT * height)]
    spans = sorted(
        (int(left), int(left + width)) for left, width in tall[:, [cv2.CC_STAT_LEFT, cv2.CC_STAT_WIDTH]]
    )
    count, right_edge = 0, None
    for left, right in spans:
        if right_edge is None or left >= right_edge - 0.1 * (right - left):
            count += 1
            right_edge = right
        else:
            right_edge = max(right_edge, right)
    return count


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
    top, bottom, left, right = _bounds(thick)
    return thick[top:bottom, left:right]


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The smallest box holding every non-zero pixel of ``mask``: top, bottom, left, right (the
    last two exclusive). Found from the rows and columns that hold any, which is many times faster
    than listing every pixel's coordinates on a large page."""
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


def _centre_by_mass(image: np.ndarray) -> np.ndarray:
    """Shifts by whole pixels so the centre of mass lands on pixel (14, 14), as in MNIST."""
    total = float(image.sum())
    rows, columns = np.indices(image.shape)
    centre_row = float((rows * image).sum()) / total
    centre_column = float((columns * image).sum()) / total
    shift_row = int(round(SIZE / 2 - centre_row))
    shift_column = int(round(SIZE / 2 - centre_column))
    matrix = np.array([[1, 0, shift_column], [0, 1, shift_row]], dtype=np.float32)
    return cv2.warpAffine(image, matrix, (SIZE, SIZE), flags=cv2.INTER_NEAREST, borderValue=0)
