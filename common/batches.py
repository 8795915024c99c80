"""Training batches in an order fixed by the seed and the epoch alone.

``model.fit(x, y, shuffle=True)`` shuffles with the backend's random state, which a process that
resumes a killed run starts afresh: its later epochs would see other orders than the
uninterrupted run. Here epoch ``e``'s order is ``permutation(seed, e)``, so a resumed run trains
on exactly the batches the uninterrupted one would have.
"""

from __future__ import annotations

import numpy as np

from common.backend import import_keras

keras = import_keras()


class ShuffledBatches(keras.utils.PyDataset):
    """``(x, y)`` or ``(x, y, sample_weight)`` batches of in-memory arrays, reshuffled each epoch.

    Args:
        x: the inputs, first axis the examples.
        y: the targets.
        batch_size: examples per batch (the last batch may be smaller).
        seed: the run's seed.
        first_epoch: the epoch the first pass is (a resumed run starts past 0).
        class_weight: optional ``{class: weight}``, given to the loss as per-example weights
            (what ``fit(class_weight=...)`` does for arrays).
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        seed: int,
        first_epoch: int = 0,
        class_weight: dict[int, float] | None = None,
    ) -> None:
        super().__init__()
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} and {len(y)}")
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.sample_weight = None
        if class_weight:
            lookup = np.zeros(int(np.max(y)) + 1, np.float32)
            for label, weight in class_weight.items():
                if int(label) < len(lookup):
                    lookup[int(label)] = weight
            self.sample_weight = lookup[np.asarray(y, dtype=np.int64)]
        self.set_epoch(first_epoch)

    def set_epoch(self, epoch: int) -> None:
        """Orders the next pass as epoch ``epoch`` of the run."""
        self.epoch = epoch
        self.order = np.random.default_rng([self.seed, epoch]).permutation(len(self.y))

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __getitem__(self, index: int):
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.sample_weight is None:
            return self.x[chosen], self.y[chosen]
        return self.x[chosen], self.y[chosen], self.sample_weight[chosen]

    def ordering_callback(self) -> keras.callbacks.Callback:
        """The callback ``fit`` needs beside these batches: it sets each epoch's order from the
        epoch number Keras is about to run (``fit`` itself must not shuffle: ``shuffle=False``).

        Keras reads a batch or two before training to learn their shapes and may call
        ``on_epoch_end`` for that, so the order is tied to the epoch number, not to a count of
        calls."""
        batches = self

        class SetEpochOrder(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                batches.set_epoch(epoch)

        return SetEpochOrder()
