"""Knowledge distillation (``python -m common distill``): a student trained on the labels and a
teacher's softened probabilities, checked by value on the toy ``curves_fixture`` project (a
one-layer softmax on points, so every probability is computed here in NumPy from the weights)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from common.core import runs
from common.training import checkpoints
from tests.conftest import assert_one_line_error
from tests.test_workflow import CURVES, curves, train  # noqa: F401 (curves is a fixture)


def probabilities(model_file, x) -> np.ndarray:
    """The softmax of a saved one-layer model's logits, computed in NumPy (float64)."""
    import keras

    kernel, bias = keras.saving.load_model(model_file, compile=False).get_weights()
    logits = x.astype(np.float64) @ kernel.astype(np.float64) + bias
    logits -= logits.max(axis=1, keepdims=True)
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def softened_log(p: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(p) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def test_the_soft_target_loss_by_hand():
    """KL(soften(t) || soften(s)) * T**2 on one example worked out by hand: at T = 2 the
    softened probabilities are the square roots of the probabilities, renormalised."""
    from common.training.distill import soft_target_loss

    teacher, student = np.array([[0.64, 0.36]]), np.array([[0.36, 0.64]])
    # sqrt: (0.8, 0.6) / 1.4 and (0.6, 0.8) / 1.4
    t, s = np.array([0.8, 0.6]) / 1.4, np.array([0.6, 0.8]) / 1.4
    by_hand = float(np.sum(t * np.log(t / s))) * 4
    assert by_hand == pytest.approx(0.2 * np.log(4 / 3) / 1.4 * 4)
    computed = float(soft_target_loss(teacher.astype("float32"), student.astype("float32"), 2.0))
    assert computed == pytest.approx(by_hand, rel=1e-5)
    # The same answer gives no soft loss, whatever the temperature.
    assert float(soft_target_loss(teacher, teacher, 5.0)) == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def teacher_dir(curves):  # noqa: F811
    run_dir, _ = train(curves, "train.epochs=6")
    return run_dir


def test_a_student_is_trained_on_the_labels_and_the_teachers_softened_probabilities(curves, teacher_dir):  # noqa: F811
    """The validation loss Keras recorded after the student's last epoch is alpha times the
    labels' cross-entropy plus (1 - alpha) T**2 times the KL divergence from the teacher's
    softened probabilities, both computed here from the saved weights; the run keeps the
    student alone."""
    import keras

    teacher_file = teacher_dir / runs.MODEL_FILE
    settings = ("train.epochs=3", "distill.alpha=0.25", "distill.temperature=2.0")
    student_dir, history = train(curves, f"distill.teacher={json.dumps(str(teacher_dir))}", *settings)

    x, y = curves.functions.load_data(curves.load_config(), need_training=True).validation
    student, teacher = probabilities(student_dir / runs.MODEL_FILE, x), probabilities(teacher_file, x)
    labels_loss = float(-np.mean(np.log(student[np.arange(len(y)), y])))
    t_log, s_log = softened_log(teacher, 2.0), softened_log(student, 2.0)
    soft_loss = float(np.mean(np.sum(np.exp(t_log) * (t_log - s_log), axis=1))) * 4
    assert history["val_loss"].iloc[-1] == pytest.approx(0.25 * labels_loss + 0.75 * soft_loss, rel=1e-4)
    assert abs(soft_loss - labels_loss) > 0.05  # the two parts differ, so the mix is what was seen

    saved = keras.saving.load_model(student_dir / runs.MODEL_FILE, compile=False)
    assert isinstance(saved, keras.Sequential) and saved.count_params() == 4
    metrics = runs.read_metrics(student_dir)
    assert metrics["distilled_from"] == str(teacher_file) and metrics["parameters"] == 4
    # The config names the teacher's file, so a resume finds the same teacher.
    assert curves.load_config(student_dir / runs.CONFIG_FILE).distill.teacher == str(teacher_file)


def test_alpha_one_is_training_on_the_labels_alone(curves, teacher_dir):  # noqa: F811
    """With the soft targets' weight at 0 the student trains exactly as without a teacher."""
    import keras

    plain_dir, plain = train(curves, "train.epochs=2")
    teacher = f"distill.teacher={json.dumps(str(teacher_dir))}"
    taught_dir, taught = train(curves, teacher, "train.epochs=2", "distill.alpha=1.0")
    pd.testing.assert_frame_equal(taught, plain, rtol=1e-6)
    for a, b in zip(
        keras.saving.load_model(plain_dir / runs.MODEL_FILE).get_weights(),
        keras.saving.load_model(taught_dir / runs.MODEL_FILE).get_weights(),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_an_interrupted_distillation_resumes_as_the_unbroken_run(curves, teacher_dir):  # noqa: F811
    """Its checkpoints hold the student (the teacher is loaded again from the file its config
    names), and the resumed run ends where the unbroken one did."""
    import keras

    from common.core.errors import UserError
    from common.training import steps
    from tests.conftest import ctrl_c_after_epoch

    settings = (f"distill.teacher={json.dumps(str(teacher_dir))}", "train.epochs=3")
    unbroken_dir, unbroken = train(curves, *settings, "train.seed=8")
    with ctrl_c_after_epoch(0), pytest.raises(UserError, match="interrupted"):
        train(curves, *settings, "train.seed=8")
    [broken_dir] = [p for p in unbroken_dir.parent.iterdir() if runs.run_state(p) == runs.INTERRUPTED]
    config = curves.load_config(broken_dir / runs.CONFIG_FILE)
    steps.train(curves, config, resume_dir=broken_dir, verbose=0)
    pd.testing.assert_frame_equal(pd.read_csv(broken_dir / checkpoints.HISTORY_FILE), unbroken)
    for a, b in zip(
        keras.saving.load_model(broken_dir / runs.MODEL_FILE).get_weights(),
        keras.saving.load_model(unbroken_dir / runs.MODEL_FILE).get_weights(),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_a_teacher_must_share_the_students_split(curves, cli, tmp_path):  # noqa: F811
    """A teacher trained on another split would carry test labels into training: refused, as a
    missing teacher and out-of-range settings are, before a run folder is made."""
    other_split, _ = train(curves, "train.epochs=1", "seed=5")
    before = sorted(runs.models_dir().rglob("*"))
    assert_one_line_error(
        cli("distill", CURVES, "--teacher", other_split), "was trained on another split (seed: 5 against 3"
    )
    assert_one_line_error(cli("distill", CURVES, "--teacher", tmp_path / "nowhere"), "nowhere")
    assert_one_line_error(
        cli("distill", CURVES, "--teacher", other_split, "--set", "distill.alpha=1.5"),
        "config key 'distill.alpha' must lie in [0, 1]; received: 1.5",
    )
    assert_one_line_error(
        cli("distill", CURVES, "--teacher", other_split, "--set", "distill.temperature=0"),
        "config key 'distill.temperature' must be greater than 0",
    )
    assert sorted(runs.models_dir().rglob("*")) == before


def test_a_regression_cannot_be_distilled_and_says_why(cli, models_dir):
    # Every project shares the [distill] keys; a teacher's soft targets are class probabilities.
    assert_one_line_error(
        cli("distill", "stock", "--teacher", "latest"),
        "distillation teaches a classifier's probabilities, and train.loss is 'mse'",
    )
    assert not models_dir.exists() or not any(models_dir.rglob("*"))
