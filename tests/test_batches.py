"""The in-memory training batches: an order fixed by the seed and the epoch, whichever way they
reach ``fit`` (a ``PyDataset``, or TensorFlow's ``tf.data`` pipeline on one device)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from common.kit.batches import ShuffledBatches


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


def test_by_default_every_example_is_served_once_an_epoch_the_last_batch_holding_the_rest():
    x, y = np.arange(17), np.arange(17)
    batches = ShuffledBatches(x, y, batch_size=8, seed=1)
    assert [len(batches[index][1]) for index in range(len(batches))] == [8, 8, 1]
    assert sorted(np.concatenate([batches[index][1] for index in range(len(batches))])) == list(range(17))


def test_whole_multiples_trims_only_the_last_batch_and_shards_split_every_batch():
    x, y = np.arange(23), np.arange(23)
    batches = ShuffledBatches(x, y, batch_size=8, seed=1)
    batches.whole_multiples(2)
    assert [len(batches[index][1]) for index in range(len(batches))] == [8, 8, 6]
    # A last batch smaller than the multiple is left out.
    batches = ShuffledBatches(x[:17], y[:17], batch_size=8, seed=1, shuffle=False)
    batches.whole_multiples(2)
    assert len(batches) == 2
    # Two processes: each takes its half of every whole batch; together, the whole batch.
    halves = [ShuffledBatches(x, y, batch_size=8, seed=1) for _ in range(2)]
    for index, half in enumerate(halves):
        half.shard(index, 2)
    whole = ShuffledBatches(x, y, batch_size=8, seed=1)
    assert len(halves[0]) == 2
    for index in range(2):
        joined = np.concatenate([half[index][0] for half in halves])
        np.testing.assert_array_equal(joined, whole[index][0])


def _epoch_order(batches: ShuffledBatches) -> np.ndarray:
    """The examples of every batch of the current epoch, in the order they are served."""
    return np.concatenate([batches[index][1] for index in range(len(batches))])


def test_each_epoch_has_its_own_order_fixed_by_the_seed_and_the_epoch():
    n, seed = 29, 11
    x, y = np.arange(n) * 10, np.arange(n)
    batches = ShuffledBatches(x, y, batch_size=8, seed=seed)
    orders = {}
    for epoch in range(3):
        batches.ordering_callback().on_epoch_begin(epoch)
        orders[epoch] = _epoch_order(batches)
        expected = np.random.default_rng([seed, epoch]).permutation(n)
        np.testing.assert_array_equal(orders[epoch], expected)
        np.testing.assert_array_equal(
            np.concatenate([batches[i][0] for i in range(len(batches))]), expected * 10
        )
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    # Another seed, another order; no shuffling, the examples as they are every epoch.
    other = ShuffledBatches(x, y, batch_size=8, seed=seed + 1)
    assert not np.array_equal(_epoch_order(other), orders[0])
    plain = ShuffledBatches(x, y, batch_size=8, seed=seed, shuffle=False)
    plain.set_epoch(2)
    np.testing.assert_array_equal(_epoch_order(plain), np.arange(n))


def test_a_resumed_run_serves_the_order_of_the_epoch_it_resumes_at():
    n, seed = 29, 11
    x, y = np.arange(n), np.arange(n)
    resumed = ShuffledBatches(x, y, batch_size=8, seed=seed, first_epoch=1)
    np.testing.assert_array_equal(_epoch_order(resumed), np.random.default_rng([seed, 1]).permutation(n))
    uninterrupted = ShuffledBatches(x, y, batch_size=8, seed=seed)
    uninterrupted.set_epoch(1)
    np.testing.assert_array_equal(_epoch_order(resumed), _epoch_order(uninterrupted))
    # The augmentation randomness of a batch follows the epoch too.
    assert resumed.batch_rng(2).random() == np.random.default_rng([seed, 1, 2]).random()


def test_class_weights_become_each_examples_weight():
    y = np.array([0, 2, 1, 2, 0, 1, 1])
    batches = ShuffledBatches(
        np.zeros((7, 1)), y, batch_size=7, seed=0, class_weight={0: 0.5, 1: 2.0, 2: 3.0}
    )
    _, labels, weights = batches[0]
    np.testing.assert_array_equal(weights, np.array([0.5, 2.0, 3.0])[labels])
    # A class without a weight weighs 1, as with fit(class_weight=...) on arrays.
    _, labels, weights = ShuffledBatches(np.zeros((7, 1)), y, 7, seed=0, class_weight={1: 4.0})[0]
    np.testing.assert_array_equal(weights, np.where(labels == 1, 4.0, 1.0))
