"""Training batches in an order fixed by the seed and the epoch alone.

``model.fit(x, y, shuffle=True)`` shuffles with the backend's random state, which a process that
resumes a killed run starts afresh: its later epochs would see other orders than the
uninterrupted run. Here epoch ``e``'s order is ``permutation(seed, e)``, so a resumed run trains
on exactly the batches the uninterrupted one would have.

:class:`EpochOrder` holds that ordering (and the class weights turned into per-example weights);
:class:`ShuffledBatches` serves in-memory arrays in it, :class:`common.kit.streaming.StreamedBatches`
files read from disk batch by batch.
"""

from __future__ import annotations

import keras
import numpy as np

from common.kit.splits import count, is_structured, take


class EpochOrder(keras.utils.PyDataset):
    """The order of ``len(labels)`` examples in batches, epoch ``e`` being ``default_rng([seed,
    e]).permutation(n)`` (or the examples as they are, ``shuffle=False``, for validation).

    Subclasses implement ``__getitem__`` from :meth:`batch_indices` (and :meth:`batch_weights`).

    Args:
        labels: the targets, first axis the examples.
        batch_size: examples per batch (the last batch may be smaller).
        seed: the run's seed.
        first_epoch: the epoch the first pass is (a resumed run starts past 0).
        class_weight: optional ``{class: weight}``, given to the loss as per-example weights
            (what ``fit(class_weight=...)`` does for arrays).
        shuffle: ``False`` keeps the examples in their order every epoch.
        **kwargs: ``keras.utils.PyDataset``'s ``workers``, ``use_multiprocessing`` and
            ``max_queue_size``.
    """

    def __init__(
        self,
        labels: np.ndarray,
        batch_size: int,
        seed: int,
        first_epoch: int = 0,
        class_weight: dict[int, float] | None = None,
        shuffle: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.y, self.batch_size, self.seed, self.shuffle = labels, batch_size, seed, shuffle
        self.sample_weight = None
        if class_weight and is_structured(labels):
            raise ValueError(
                "class_weight weighs the classes of one output; a model with several outputs gives "
                "per-output weights through its loss instead (compile_options' loss_weights or a loss)"
            )
        if class_weight:
            # A class the dict leaves out weighs 1, as with fit(class_weight=...).
            lookup = np.ones(int(np.max(labels)) + 1, np.float32)
            for label, weight in class_weight.items():
                if int(label) < len(lookup):
                    lookup[int(label)] = weight
            self.sample_weight = lookup[np.asarray(labels, dtype=np.int64)]
        self.set_epoch(first_epoch)

    def set_epoch(self, epoch: int) -> None:
        """Orders the next pass as epoch ``epoch`` of the run."""
        self.epoch = epoch
        if self.shuffle:
            self.order = np.random.default_rng([self.seed, epoch]).permutation(count(self.y))
        else:
            self.order = np.arange(count(self.y))

    # This process's share of every batch: all of it, unless shard() says otherwise; and the
    # number every batch's size must divide by (whole_multiples()).
    shard_index, shard_count, multiple = 0, 1, 1

    def whole_multiples(self, multiple: int) -> None:
        """Makes every batch a multiple of ``multiple`` examples (JAX splits each batch evenly
        between its devices): the epoch's last, smaller batch loses its remainder, at most
        ``multiple - 1`` examples (different ones each shuffled epoch)."""
        self.multiple = multiple

    def shard(self, index: int, count: int) -> None:
        """Serves only share ``index`` of ``count`` of every batch: on a cluster each process
        feeds its own part of the global batch. Every share must be the same size, so batches
        stay whole and each epoch's last, smaller batch is left out (fewer than ``batch_size``
        examples, different ones each epoch)."""
        if self.batch_size % count:
            raise ValueError(f"a batch of {self.batch_size} does not split into {count} equal shares")
        self.shard_index, self.shard_count = index, count

    def __len__(self) -> int:
        if self.shard_count > 1:
            return count(self.y) // self.batch_size
        whole, rest = divmod(count(self.y), self.batch_size)
        return whole + (rest >= self.multiple and rest > 0)

    def batch_indices(self, index: int) -> np.ndarray:
        """The examples of batch ``index`` of the current epoch (this process's share of it)."""
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.shard_count > 1:
            share = self.batch_size // self.shard_count
            chosen = chosen[self.shard_index * share : (self.shard_index + 1) * share]
        elif self.multiple > 1:
            chosen = chosen[: len(chosen) - len(chosen) % self.multiple]
        return chosen

    def batch_rng(self, index: int) -> np.random.Generator:
        """The random state of batch ``index`` of the current epoch (for augmentation):
        ``default_rng([seed, epoch, index])``, the same in a resumed run."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def batch(self, x: np.ndarray, chosen: np.ndarray) -> tuple:
        """``(x, y)``, or ``(x, y, sample_weight)`` with class weights, for the examples chosen."""
        if self.sample_weight is None:
            return x, take(self.y, chosen)
        return x, take(self.y, chosen), self.sample_weight[chosen]

    def ordering_callback(self) -> keras.callbacks.Callback:
        """The callback ``fit`` needs beside these batches: it sets each epoch's order from the
        epoch number Keras is about to run (``fit`` itself must not shuffle: ``shuffle=False``).

        Keras reads a batch or two before training to learn their shapes and may call
        ``on_epoch_end`` for that, so the order is tied to the epoch number, not to a count of
        calls. Keras calls the callback before it starts the epoch's worker threads (``workers
        > 1``) and stops them at the epoch's end, so no batch is read across the change."""
        batches = self

        class SetEpochOrder(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                batches.set_epoch(epoch)

        return SetEpochOrder()


class ShuffledBatches(EpochOrder):
    """``(x, y)`` or ``(x, y, sample_weight)`` batches of in-memory arrays, reshuffled each epoch.

    Args:
        x: the inputs, first axis the examples.
        y: the targets.
        batch_size, seed, first_epoch, class_weight: as :class:`EpochOrder`'s.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        seed: int,
        first_epoch: int = 0,
        class_weight: dict[int, float] | None = None,
        shuffle: bool = True,
    ) -> None:
        if count(x) != count(y):
            raise ValueError(f"x and y differ in length: {count(x)} and {count(y)}")
        self.x = x
        super().__init__(y, batch_size, seed, first_epoch, class_weight, shuffle=shuffle)

    def __getitem__(self, index: int):
        chosen = self.batch_indices(index)
        return self.batch(take(self.x, chosen), chosen)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if getattr(self, "_tf_order", None) is not None:
            self._tf_order.assign(self.order)

    def fit_input(self, replicas: int = 1):
        """What ``fit`` trains on: these batches, or under TensorFlow on one device the same
        batches through a ``tf.data`` pipeline that gathers them in TensorFlow's own threads.

        A ``PyDataset`` hands every batch to TensorFlow through Python (``from_generator``),
        which cost about 4% of an MNIST epoch on two cores. The pipeline reads the epoch's order
        from a variable that :meth:`set_epoch` fills, so the batches are exactly
        ``self[0], self[1], ...``. Elsewhere (JAX, PyTorch, several devices, a subclass that
        changes the batches, arrays over 1 GB) the ``PyDataset`` itself is the input."""
        plain = type(self).__getitem__ is ShuffledBatches.__getitem__
        arrays = (self.x, self.y) if self.sample_weight is None else (self.x, self.y, self.sample_weight)
        if (
            keras.backend.backend() != "tensorflow"
            or replicas != 1
            or not plain
            or self.shard_count > 1
            or self.multiple > 1
            or sum(np.asarray(array).nbytes for array in keras.tree.flatten(arrays)) > 2**30
        ):
            return self
        import tensorflow as tf

        self._tf_order = tf.Variable(self.order, trainable=False, dtype=tf.int64)
        # Texts too: a tf.data pipeline holds strings, where a PyDataset's batches must be numbers.
        tensors = keras.tree.map_structure(lambda array: tf.constant(np.asarray(array)), arrays)
        size, examples = self.batch_size, count(self.y)

        def gather(index):
            chosen = self._tf_order[index * size : tf.minimum((index + 1) * size, examples)]
            return keras.tree.map_structure(lambda tensor: tf.gather(tensor, chosen), tensors)

        batches = tf.data.Dataset.range(len(self)).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
        return batches.prefetch(tf.data.AUTOTUNE)
