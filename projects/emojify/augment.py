"""Augmentation in the input pipeline: training faces randomly rescaled, rotated, cropped,
mirrored and partly erased with OpenCV and NumPy, on the uint8 faces, off the model's forward pass.

Augmentation layers inside the model cost the CPU a third of its training speed (125 faces a
second instead of 181, measured on the emojify training), and draw their randomness from the
backend's seed generators. Here one affine warp per face does the rescale, rotation, crop and
shift at once, and batch ``b`` of epoch ``e`` draws all its randomness from
``default_rng([seed, e, b])``: what a batch holds is a function of the seed, the epoch and its
index alone, so a resumed run trains on exactly the faces the uninterrupted one would have.

The model sees ``augment.crop``-pixel crops in training and, through its own centre crop (or the
serving model's corner crops), the same size at inference; it still takes whole 48x48 faces.
"""

from __future__ import annotations

import cv2
import numpy as np

from common.core.config import Config, training_seed
from common.kit.batches import EpochOrder, ShuffledBatches
from common.kit.splits import FileList, Splits
from common.kit.streaming import StreamedBatches

# Random erasing (Zhong et al. 2017): a rectangle of 2-33% of the crop, of aspect ratio 0.3-3.3,
# filled with noise, so the network cannot lean on any one part of the face.
ERASE_AREA = (0.02, 0.33)
ERASE_ASPECT = (0.3, 3.3)


def training_batches(config: Config, splits: Splits, first_epoch: int) -> EpochOrder:
    """The training split's batches, augmented as ``[augment]`` says (plain ones when it is off);
    read from the image files batch by batch when the split is streamed (``data.streaming``),
    with the same order and augmentation, so the batches are the same."""
    assert splits.train is not None, "training needs a training split"
    x_train, y_train = splits.train
    seed = training_seed(config)
    arguments = (x_train, y_train, config.train.batch_size, seed, first_epoch, splits.class_weight)
    if isinstance(x_train, FileList):
        settings = config.augment

        def augment(faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return augment_faces(faces, rng, settings)

        return StreamedBatches(*arguments, augment=augment if augmenting(config) else None)
    if not augmenting(config):
        return ShuffledBatches(*arguments)
    return AugmentedBatches(*arguments, settings=config.augment)


def augmenting(config: Config) -> bool:
    """Whether ``[augment]`` changes the training faces at all."""
    settings = config.augment
    return bool(settings.crop or settings.scale or settings.rotation or settings.flip or settings.erase)


class AugmentedBatches(ShuffledBatches):
    """:class:`common.kit.batches.ShuffledBatches` whose faces are augmented by :func:`augment_faces`,
    with batch ``index`` of epoch ``e`` drawing from ``default_rng([seed, e, index])``.

    Args:
        settings: the ``[augment]`` table; the other arguments are ``ShuffledBatches``'.
    """

    def __init__(self, *args, settings, **kwargs) -> None:
        self.settings = settings
        super().__init__(*args, **kwargs)

    def __getitem__(self, index: int):
        x, *rest = super().__getitem__(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return (augment_faces(x, rng, self.settings), *rest)


def augment_faces(faces: np.ndarray, rng: np.random.Generator, settings) -> np.ndarray:
    """Augments a batch of ``(N, H, W, 1)`` uint8 faces into ``(N, crop, crop, 1)`` uint8 faces.

    Each face is scaled by a factor within ``1 ± settings.scale``, rotated by up to
    ``± settings.rotation`` degrees, and a ``settings.crop``-pixel square is cut from it at a
    random place (the whole face when ``crop`` is 0); the border, where the warp reaches past the
    face, mirrors the face. Then half the faces are mirrored left-right (``settings.flip``), and
    with probability ``settings.erase`` a random rectangle is replaced by noise.
    """
    count, height, width = faces.shape[:3]
    size = settings.crop or height
    scales = 1 + rng.uniform(-settings.scale, settings.scale, count)
    angles = rng.uniform(-settings.rotation, settings.rotation, count)
    # The crop's centre moves anywhere the crop stays on the scaled face (and at least a pixel).
    room = np.maximum((height * scales - size) / 2, 1.0)
    shifts = rng.uniform(-1, 1, (count, 2)) * room[:, None]
    flips = rng.random(count) < 0.5 if settings.flip else np.zeros(count, bool)
    out = np.empty((count, size, size), np.uint8)
    for face in range(count):
        warp = cv2.getRotationMatrix2D((width / 2, height / 2), angles[face], scales[face])
        # Moves the chosen point of the warped face to the centre of the crop.
        warp[:, 2] += (size - width) / 2 - shifts[face, 0], (size - height) / 2 - shifts[face, 1]
        out[face] = cv2.warpAffine(
            faces[face, :, :, 0],
            warp,
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT_101,
        )
    out[flips] = out[flips, :, ::-1]
    if settings.erase > 0:
        erase_rectangles(out, rng, settings.erase)
    return out[..., None]


def erase_rectangles(faces: np.ndarray, rng: np.random.Generator, probability: float) -> None:
    """Replaces a random rectangle of each face, with the given probability, by uniform noise."""
    count, height, width = faces.shape
    chosen = rng.random(count) < probability
    areas = rng.uniform(*ERASE_AREA, count) * height * width
    aspects = np.exp(rng.uniform(np.log(ERASE_ASPECT[0]), np.log(ERASE_ASPECT[1]), count))
    heights = np.clip(np.sqrt(areas * aspects).astype(int), 1, height)
    widths = np.clip(np.sqrt(areas / aspects).astype(int), 1, width)
    tops = (rng.random(count) * (height - heights + 1)).astype(int)
    lefts = (rng.random(count) * (width - widths + 1)).astype(int)
    noise = rng.integers(0, 256, faces.shape, dtype=np.uint8)
    for face in np.flatnonzero(chosen):
        rows = slice(tops[face], tops[face] + heights[face])
        columns = slice(lefts[face], lefts[face] + widths[face])
        faces[face, rows, columns] = noise[face, rows, columns]
