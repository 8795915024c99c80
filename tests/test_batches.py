"""The in-memory training batches: an order fixed by the seed and the epoch, whichever way they
reach ``fit`` (a ``PyDataset``, or TensorFlow's ``tf.data`` pipeline on one device)."""

from __future__ import annotations

import numpy as np
import pytest

from common.backend import import_keras
from common.batches import ShuffledBatches

keras = import_keras()


@pytest.mark.parametrize("class_weight", [None, {0: 0.5, 1: 2.0, 2: 1.0}])
def test_the_tf_data_pipeline_gives_exactly_the_pydataset_batches(class_weight):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the pipeline is TensorFlow's")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (37, 5, 5, 1), dtype=np.uint8)
    y = rng.integers(0, 3, 37)
    batches = ShuffledBatches(x, y, batch_size=8, seed=7, first_epoch=2, class_weight=class_weight)
    pipeline = batches.fit_input()
    assert pipeline is not batches
    for epoch in (2, 3, 5):
        batches.set_epoch(epoch)
        expected = [batches[index] for index in range(len(batches))]
        got = [tuple(np.asarray(part) for part in batch) for batch in pipeline]
        assert len(got) == len(expected) == 5
        for mine, theirs in zip(got, expected):
            assert len(mine) == len(theirs) == (2 if class_weight is None else 3)
            for part, wanted in zip(mine, theirs):
                np.testing.assert_array_equal(part, wanted)
    # Several devices, or batches a subclass changes, keep the PyDataset.
    assert batches.fit_input(replicas=2) is batches


def test_a_model_trained_through_either_input_ends_with_the_same_weights():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the pipeline is TensorFlow's")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x.sum(axis=1) > 0).astype(np.int64)
    weights = []
    for fast in (False, True):
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        batches = ShuffledBatches(x, y, batch_size=10, seed=5)
        model.fit(
            batches.fit_input() if fast else batches,
            shuffle=False,
            epochs=3,
            verbose=0,
            callbacks=[batches.ordering_callback()],
        )
        weights.append(model.get_weights())
    for fast, plain in zip(*weights):
        np.testing.assert_array_equal(fast, plain)
