"""Early stopping, the best weights and the learning-rate schedules of a training, checked by value
on a toy run whose validation loss first falls, then rises: every expected number is worked out
here from the run's recorded losses or by hand, never read back from the code under test."""

from __future__ import annotations

import dataclasses
import math
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import projects
from common.core import registry, runs
from common.training import checkpoints
from tests.conftest import assert_one_line_error

# A name no user would give a project of their own, ahead of the real projects on the path.
CURVES = "curves_fixture"

CURVES_CONFIG = """
seed = 3
[data]
path = ""
# Training points; the validation points are as many, a fraction ``flip`` of them mislabelled.
rows = 48
flip = 0.25
[model]
units = 2
[train]
seed = -1
epochs = 12
batch_size = 16
learning_rate = 0.3
optimizer = "sgd"
loss = "sparse_categorical_crossentropy"
metrics = ["accuracy"]
lr_schedule = "constant"
early_stopping_patience = 0
plateau_factor = 0.5
plateau_patience = 0
tensorboard = false
[distill]
teacher = ""
temperature = 4.0
alpha = 0.1
[tune]
algorithm = "random"
trials = 2
[tune.space]
"data.flip" = [0.05, 0.4]
"""

CURVES_PROJECT = '''
"""Points left or right of zero; the validation labels are partly flipped, so once the model
separates the training points ever more sharply its validation loss rises again."""
import keras
import numpy as np

from common.kit.splits import Splits
from common.core.project import Headline, Project


def points(config, seed, flip):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(config.data.rows, 1)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    flipped = rng.permutation(len(y))[: round(flip * len(y))]
    y[flipped] = 1 - y[flipped]
    return x, y


def load_data(config, need_training=True):
    validation = points(config, [config.seed, 1], config.data.flip)
    return Splits(train=points(config, [config.seed, 0], 0.0), validation=validation,
                  test=validation, source="curves")


def build_model(config, splits):
    return keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(2, activation="softmax")])


def evaluate(model, splits, config, out_dir):
    return {}


def predict(model, inputs, config):
    return []


PROJECT = Project(headline=Headline("test_accuracy", baseline="baseline_accuracy"), load_data=load_data,
                  build_model=build_model, evaluate=evaluate, predict=predict)
'''


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    """The toy project ``curves``, in a folder outside the repository; its runs go to a temporary
    models folder (one for the module, so a run can be shared by tests that only read it)."""
    base = tmp_path_factory.mktemp("plugins")
    folder = base / CURVES
    folder.mkdir()
    (folder / "config.toml").write_text(textwrap.dedent(CURVES_CONFIG))
    (folder / "__init__.py").write_text(textwrap.dedent(CURVES_PROJECT))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELS_DIR", str(tmp_path_factory.mktemp("models")))
        patch.setattr(projects, "__path__", [str(base), *projects.__path__])
        yield registry.get_project(CURVES)
    sys.modules.pop(f"projects.{CURVES}", None)


def train(project, *overrides: str):
    """Trains the project with ``--set``-style overrides; returns its run folder and history."""
    from common.training import steps

    config = project.load_config(None, list(overrides))
    run_dir = steps.train(project, config, verbose=0)
    return run_dir, pd.read_csv(run_dir / checkpoints.HISTORY_FILE)


def validation_loss(model_file, project) -> float:
    """The sparse categorical cross-entropy of a saved one-layer softmax model on the validation
    split, computed in NumPy from its weights (not by Keras)."""
    import keras

    kernel, bias = keras.saving.load_model(model_file, compile=False).get_weights()
    x, y = project.functions.load_data(project.load_config(), need_training=True).validation
    logits = x.astype(np.float64) @ kernel.astype(np.float64) + bias
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def falls_then_rises(val_loss: np.ndarray, best: int, min_delta: float = 1e-4) -> bool:
    """Each epoch before ``best`` beats the one before by more than ``min_delta``; none after it
    comes near ``best``'s value (each rises)."""
    steps = np.diff(val_loss)
    return bool(np.all(steps[:best] < -min_delta) and np.all(steps[best:] > 0))


@pytest.fixture
def learning_rates(monkeypatch):
    """Filled during a training with ``(optimizer step, learning rate)`` at the end of every epoch,
    as the optimizer holds them when the epoch is committed."""
    seen: list[tuple[int, float]] = []
    commit = checkpoints.RunRecorder.on_epoch_end

    def record_then_commit(self, epoch, logs=None):
        optimizer = self.model.optimizer
        seen.append((int(optimizer.iterations.numpy()), float(np.asarray(optimizer.learning_rate))))
        commit(self, epoch, logs)

    monkeypatch.setattr(checkpoints.RunRecorder, "on_epoch_end", record_then_commit)
    return seen


PATIENCE = 3


@pytest.fixture(scope="module")
def stopped_run(curves):
    """A run stopped early: patience 3 out of 12 epochs at most."""
    return train(curves, f"train.early_stopping_patience={PATIENCE}")


def test_training_stops_patience_epochs_after_the_best(stopped_run):
    run_dir, history = stopped_run
    val_loss = history["val_loss"].to_numpy()
    best = int(np.argmin(val_loss))
    assert falls_then_rises(val_loss, best)
    # Stopped after exactly PATIENCE epochs without a better validation loss, well before 12.
    assert list(history["epoch"]) == list(range(best + PATIENCE + 1))
    assert len(history) < 12
    progress = checkpoints.read_progress(run_dir)
    assert progress["epochs_done"] == best + PATIENCE + 1 and progress["finished"] is True
    assert progress["best"] == pytest.approx(val_loss[best], rel=1e-12)
    assert progress["early_stopping"]["best_epoch"] == best


def test_the_saved_model_has_the_best_epochs_weights_not_the_last(stopped_run, curves):
    import keras

    run_dir, history = stopped_run
    val_loss = history["val_loss"].to_numpy()
    final = keras.saving.load_model(run_dir / runs.MODEL_FILE).get_weights()
    best = keras.saving.load_model(run_dir / runs.BEST_CHECKPOINT).get_weights()
    last = keras.saving.load_model(run_dir / runs.LAST_CHECKPOINT).get_weights()
    for saved, wanted in zip(final, best, strict=True):
        np.testing.assert_array_equal(saved, wanted)
    assert not all(np.array_equal(saved, other) for saved, other in zip(final, last))
    # Scored independently, the saved model has the lowest validation loss of the run, and the
    # last checkpoint the last epoch's.
    assert validation_loss(run_dir / runs.MODEL_FILE, curves) == pytest.approx(val_loss.min(), rel=1e-5)
    assert validation_loss(run_dir / runs.LAST_CHECKPOINT, curves) == pytest.approx(val_loss[-1], rel=1e-5)


def test_patience_zero_trains_every_epoch_at_a_constant_rate(curves, learning_rates):
    run_dir, history = train(curves, "train.epochs=8")
    assert list(history["epoch"]) == list(range(8))
    val_loss = history["val_loss"].to_numpy()
    assert val_loss[-1] > val_loss.min() + 0.01  # rising, and still no early stop
    # 48 training points in batches of 16: 3 steps an epoch, all at the configured rate.
    assert learning_rates == [(3 * (epoch + 1), pytest.approx(0.3, rel=1e-6)) for epoch in range(8)]
    assert validation_loss(run_dir / runs.MODEL_FILE, curves) == pytest.approx(val_loss[-1], rel=1e-5)


def plateau_rates(best: int, epochs: int, rate: float, factor: float, patience: int) -> list[float]:
    """The rate of each epoch when the validation loss improves until epoch ``best`` and never
    after: cut by ``factor`` at the end of every ``patience``-th epoch past the best."""
    return [rate * factor ** max(0, (epoch - 1 - best) // patience) for epoch in range(epochs)]


def test_the_plateau_schedule_cuts_the_rate_after_its_patience(curves):
    run_dir, history = train(
        curves, "train.lr_schedule=plateau", "train.plateau_patience=3", "train.plateau_factor=0.25",
        "train.epochs=10",
    )  # fmt: skip
    val_loss = history["val_loss"].to_numpy()
    best = int(np.argmin(val_loss))
    assert len(history) == 10 and falls_then_rises(val_loss, best)
    # Early stopping is off, so the default rule would wait 2 epochs: 3 is the key's own.
    expected = plateau_rates(best, 10, 0.3, 0.25, 3)
    assert len(set(expected)) >= 3  # the full rate and at least two cuts
    np.testing.assert_allclose(history["learning_rate"], expected, rtol=1e-6)


def test_the_plateau_patience_defaults_to_half_the_early_stopping_patience(curves):
    run_dir, history = train(
        curves, "train.lr_schedule=plateau", "train.early_stopping_patience=6", "train.epochs=20"
    )
    val_loss = history["val_loss"].to_numpy()
    best = int(np.argmin(val_loss))
    assert falls_then_rises(val_loss, best)
    assert len(history) == best + 6 + 1
    # Halved (the default factor) after 6 // 2 = 3 epochs without improvement.
    np.testing.assert_allclose(
        history["learning_rate"], plateau_rates(best, best + 7, 0.3, 0.5, 3), rtol=1e-6
    )
    assert history["learning_rate"].iloc[-1] == pytest.approx(0.15, rel=1e-6)


def test_the_cosine_schedule_decays_over_every_step_of_the_run(curves, learning_rates):
    run_dir, history = train(curves, "train.lr_schedule=cosine", "train.epochs=8")
    assert len(history) == 8
    # 3 steps an epoch, 24 in all: after step s the rate is 0.3 * (1 + cos(pi * s / 24)) / 2.
    expected = [(3 * (epoch + 1), 0.3 * (1 + math.cos(math.pi * (epoch + 1) / 8)) / 2) for epoch in range(8)]
    assert [step for step, _ in learning_rates] == [step for step, _ in expected]
    np.testing.assert_allclose(
        [rate for _, rate in learning_rates], [rate for _, rate in expected], rtol=1e-5, atol=1e-7
    )


def test_every_epoch_of_a_run_is_served_in_its_own_order(curves, monkeypatch):
    from common.kit.batches import ShuffledBatches

    epochs_set: list[int] = []
    set_epoch = ShuffledBatches.set_epoch

    def record(self, epoch):
        epochs_set.append(epoch)
        set_epoch(self, epoch)

    monkeypatch.setattr(ShuffledBatches, "set_epoch", record)
    train(curves, "train.epochs=3")
    # Each epoch's number reaches the batches before it runs (the first also when they are made).
    assert epochs_set[-3:] == [0, 1, 2] and set(epochs_set) == {0, 1, 2}


def test_train_seed_draws_the_weights_and_batches_but_not_the_split(curves, monkeypatch):
    """Independent networks on one split: ``train.seed`` moves the initial weights and the batch
    order, never the data, even where a loader draws from the global random state; -1 (and
    the top-level seed's own value) trains exactly as before."""
    import keras

    from common.kit.batches import ShuffledBatches

    load = curves.functions.load_data
    seen: dict[str, list] = {"draws": [], "seeds": []}

    def load_drawing_from_global_state(config, need_training=True):
        seen["draws"].append(np.random.random())
        return load(config, need_training)

    made = ShuffledBatches.__init__

    def record_seed(self, x, y, batch_size, seed, *args, **kwargs):
        seen["seeds"].append(seed)
        made(self, x, y, batch_size, seed, *args, **kwargs)

    drawing = dataclasses.replace(curves, load_data=load_drawing_from_global_state)
    monkeypatch.setattr(ShuffledBatches, "__init__", record_seed)
    weights = {}
    for train_seed in (-1, 3, 11):
        run_dir, _ = train(drawing, "train.epochs=2", f"train.seed={train_seed}")
        weights[train_seed] = keras.saving.load_model(run_dir / "model.keras").get_weights()
    assert seen["draws"] == [seen["draws"][0]] * 3  # the data saw the top-level seed's state each time
    assert seen["seeds"] == [3, 3, 11]  # the top-level seed is 3
    for same, other in zip(weights[-1], weights[3]):
        np.testing.assert_array_equal(same, other)
    assert not np.allclose(weights[-1][0], weights[11][0])


def test_train_seed_must_be_minus_one_or_a_seed(curves, cli):
    for value in ("-2", str(2**32)):
        assert_one_line_error(
            cli("train", CURVES, "--set", f"train.seed={value}"),
            f"config key 'train.seed' must be -1 (the top-level seed) or 0 to 2**32 - 1; received: {value}",
        )
    assert curves.load_config(None, [f"train.seed={2**32 - 1}"]).train.seed == 2**32 - 1


def test_a_run_resumed_past_its_best_epoch_stops_and_cuts_the_rate_as_the_unbroken_run(curves):
    """Early stopping's and the plateau's waiting counts, and its best weights, survive an
    interruption."""
    import keras

    from common.core.errors import UserError
    from common.training import steps
    from tests.conftest import ctrl_c_after_epoch

    settings = ("train.early_stopping_patience=5", "train.lr_schedule=plateau", "train.plateau_patience=2")
    unbroken_dir, unbroken = train(curves, *settings)
    best = int(np.argmin(unbroken["val_loss"].to_numpy()))
    assert len(unbroken) == best + 5 + 1 < 12
    # Interrupted one epoch after a cut: the plateau has waited 1 epoch, early stopping 3.
    with ctrl_c_after_epoch(best + 3), pytest.raises(UserError, match="interrupted"):
        train(curves, *settings)
    [broken_dir] = [
        path for path in unbroken_dir.parent.iterdir() if runs.run_state(path) == runs.INTERRUPTED
    ]
    config = curves.load_config(broken_dir / runs.CONFIG_FILE)
    steps.train(curves, config, resume_dir=broken_dir, verbose=0)
    pd.testing.assert_frame_equal(pd.read_csv(broken_dir / checkpoints.HISTORY_FILE), unbroken)
    # Stopped after the resume, it restores the best epoch's weights (before it): the unbroken run's.
    resumed = keras.saving.load_model(broken_dir / runs.MODEL_FILE).get_weights()
    wanted = keras.saving.load_model(unbroken_dir / runs.MODEL_FILE).get_weights()
    for saved, weights in zip(resumed, wanted, strict=True):
        np.testing.assert_array_equal(saved, weights)


@pytest.mark.parametrize("patience", [PATIENCE, 1])
def test_a_run_interrupted_after_its_last_epoch_saves_the_best_weights_without_training(
    curves, stopped_run, patience
):
    """Killed while saving after its last epoch (out of epochs, or stopped early one epoch after
    the best with patience 1): the resume trains nothing more and saves the best epoch's weights,
    as the unbroken run would have."""
    import keras

    from common.core.errors import UserError
    from common.training import steps
    from tests.conftest import ctrl_c_after_epoch

    best = int(np.argmin(stopped_run[1]["val_loss"].to_numpy()))
    epochs = best + 2  # the last epoch is one after the best
    settings = (f"train.early_stopping_patience={patience}", f"train.epochs={epochs}")
    with ctrl_c_after_epoch(epochs - 1), pytest.raises(UserError, match="interrupted"):
        train(curves, *settings)
    [run_dir] = [path for path in runs.models_dir().joinpath(CURVES).iterdir() if path.name[0].isdigit()]
    progress = checkpoints.read_progress(run_dir)
    assert progress["epochs_done"] == epochs and progress["finished"] is True
    history = pd.read_csv(run_dir / checkpoints.HISTORY_FILE)

    steps.train(curves, curves.load_config(run_dir / runs.CONFIG_FILE), resume_dir=run_dir, verbose=0)
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / checkpoints.HISTORY_FILE), history)
    final = keras.saving.load_model(run_dir / runs.MODEL_FILE).get_weights()
    wanted = keras.saving.load_model(run_dir / runs.BEST_CHECKPOINT).get_weights()
    for saved, weights in zip(final, wanted, strict=True):
        np.testing.assert_array_equal(saved, weights)
    assert runs.run_state(run_dir) == runs.COMPLETED


def test_validation_batches_for_data_parallel_devices_are_whole_multiples_of_them_in_order():
    """Under JAX's data-parallel training every batch divides by the number of devices: the
    validation split is served in order, in batches of 32 rounded up to a multiple, the last
    trimmed to one (here 67 examples: 32, 32 and 2 of the last 3 on two devices; 33 and 33 on
    three, the single example left being fewer than three); on one device, the arrays as they are."""
    from common.kit.splits import Splits
    from common.training import steps

    x, y = np.arange(67, dtype="float32").reshape(67, 1), np.arange(67)
    splits = Splits(test=(x, y), source="counting", train=(x, y), validation=(x, y))
    assert steps._validation_data(splits) is splits.validation
    for devices, sizes in ((2, [32, 32, 2]), (3, [33, 33])):
        batches = steps._validation_data(splits, devices)
        served = [batches[index] for index in range(len(batches))]
        assert [len(batch_y) for _, batch_y in served] == sizes
        np.testing.assert_array_equal(
            np.concatenate([batch_y for _, batch_y in served]), np.arange(sum(sizes))
        )
        np.testing.assert_array_equal(
            np.concatenate([batch_x for batch_x, _ in served])[:, 0], np.arange(sum(sizes))
        )


def test_a_run_interrupted_before_its_last_epoch_trains_that_epoch_on_resume(curves):
    """Only the last epoch's commit counts as finished: one before it resumes into the last."""
    from common.core.errors import UserError
    from common.training import steps
    from tests.conftest import ctrl_c_after_epoch

    with ctrl_c_after_epoch(2), pytest.raises(UserError, match="interrupted"):
        train(curves, "train.epochs=4")
    [run_dir] = [path for path in runs.models_dir().joinpath(CURVES).iterdir() if path.name[0].isdigit()]
    progress = checkpoints.read_progress(run_dir)
    assert progress["epochs_done"] == 3 and progress["finished"] is False
    steps.train(curves, curves.load_config(run_dir / runs.CONFIG_FILE), resume_dir=run_dir, verbose=0)
    assert list(pd.read_csv(run_dir / checkpoints.HISTORY_FILE)["epoch"]) == [0, 1, 2, 3]
    assert checkpoints.read_progress(run_dir)["finished"] is True
