"""Batches read from files on disk as training reaches them: a dataset larger than memory trains.

The simple default holds the whole dataset in memory as arrays (:class:`common.kit.batches.
ShuffledBatches`). A project opts into streaming by returning :class:`common.kit.splits.FileList`
inputs in its :class:`common.kit.splits.Splits`; :class:`StreamedBatches` then decodes each batch's files
when Keras asks for the batch, on ``workers`` threads that run ahead of training by up to
``max_queue_size`` batches, so at any time only those batches are in memory.

The order is :class:`common.kit.batches.EpochOrder`'s, the same as the in-memory batches': epoch ``e``
is ``default_rng([seed, e]).permutation(n)`` and batch ``b``'s augmentation draws from
``default_rng([seed, e, b])``. Streamed and in-memory batches of the same examples are therefore
equal, and a resumed run reads exactly the batches of the uninterrupted one.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from common.kit.batches import EpochOrder
from common.kit.splits import FileList

# Threads decoding batches ahead of training (Keras' PyDataset workers), one per core up to this.
MAX_WORKERS = 8
# Batches decoded ahead of the one training takes (Keras' default).
QUEUE_SIZE = 10


def default_workers() -> int:
    """One decoding thread per CPU core, 2 to :data:`MAX_WORKERS` (with one, Keras would read the
    batches in its own thread, without running ahead)."""
    return max(2, min(MAX_WORKERS, os.cpu_count() or 1))


class StreamedBatches(EpochOrder):
    """``(x, y)`` or ``(x, y, sample_weight)`` batches decoded from files when they are asked for.

    Args:
        files: the examples' files and their decode function.
        labels: the targets, one per file.
        batch_size, seed, first_epoch, class_weight, shuffle: as
            :class:`common.kit.batches.EpochOrder`'s (``shuffle=False`` for validation).
        augment: optional ``augment(x, rng) -> x`` applied to each decoded batch, with batch
            ``b`` of epoch ``e`` given ``default_rng([seed, e, b])``.
        workers: threads decoding batches in parallel; ``None``: :func:`default_workers`.
        max_queue_size: batches decoded ahead of training.
    """

    def __init__(
        self,
        files: FileList,
        labels: np.ndarray,
        batch_size: int,
        seed: int = 0,
        first_epoch: int = 0,
        class_weight: dict[int, float] | None = None,
        shuffle: bool = True,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        workers: int | None = None,
        max_queue_size: int = QUEUE_SIZE,
    ) -> None:
        if len(files) != len(labels):
            raise ValueError(f"files and labels differ in length: {len(files)} and {len(labels)}")
        self.files, self.augment = files, augment
        super().__init__(
            labels,
            batch_size,
            seed,
            first_epoch,
            class_weight,
            shuffle,
            workers=workers or default_workers(),
            max_queue_size=max_queue_size,
        )

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        chosen = self.batch_indices(index)
        x = self.files.read(chosen)
        if self.augment is not None:
            x = self.augment(x, self.batch_rng(index))
        return self.batch(x, chosen)


def validation_batches(files: FileList, labels: np.ndarray, batch_size: int) -> StreamedBatches:
    """A validation split's streamed batches: in file order, unweighted, every epoch the same."""
    return StreamedBatches(files, labels, batch_size, shuffle=False)
