"""The classifiers' shared scoring (common/kit/classification.py), checked by value on tiny examples
whose every figure is worked out by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from common.kit.classification import evaluate_classifier, format_classifier_report

NAMES = ["cat", "dog", "fox"]


def picking_model(classes: int):
    """A real Keras classifier that predicts class c for the input one_hot(c) (softmax of 10 * x)."""
    import keras

    model = keras.Sequential(
        [
            keras.Input(shape=(1, classes)),
            keras.layers.Flatten(),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )
    model.set_weights([10 * np.eye(classes, dtype="float32"), np.zeros(classes, dtype="float32")])
    return model


def drawn_counts(figure) -> tuple[list[str], list[str], list[list[int]]]:
    """What a confusion matrix figure shows a reader: the class names along its rows (true) and
    columns (predicted), and the count written in each cell, by its place on the axes."""
    axis = figure.axes[0]
    rows = [label.get_text() for label in axis.get_yticklabels()]
    columns = [label.get_text() for label in axis.get_xticklabels()]
    counts = [[-1] * len(columns) for _ in rows]
    for text in axis.texts:
        column, row = text.get_position()
        counts[round(row)][round(column)] = int(text.get_text())
    return rows, columns, counts


def inputs_predicting(predicted: list[int], classes: int) -> np.ndarray:
    """One 1 x classes "image" per example, which :func:`picking_model` reads as ``predicted``."""
    return np.eye(classes, dtype="float32")[predicted][:, None, :]


# Test labels and the model's answers: 5 of 8 right.
Y_TEST = np.array([1, 1, 1, 1, 0, 0, 2, 2])
PREDICTED = [1, 1, 0, 2, 0, 1, 2, 2]
# Training's most frequent class is 0 (cat); the test split's is 1 (dog).
Y_TRAIN = np.array([0, 0, 0, 1, 1, 2])


def test_scores_and_baseline_match_a_hand_computation(tmp_path, saved_figures):
    metrics = evaluate_classifier(
        picking_model(3), inputs_predicting(PREDICTED, 3), Y_TEST, Y_TRAIN, NAMES, tmp_path
    )
    assert metrics["test_accuracy"] == pytest.approx(5 / 8)
    # Always answering training's majority class, cat, is right on the 2 test cats of 8.
    assert metrics["baseline_class"] == "cat"
    assert metrics["baseline_accuracy"] == pytest.approx(2 / 8)
    # cat: predicted for examples 2 and 4, right once (4); true for 4 and 5, found once.
    # dog: predicted for 0, 1 and 5, right twice; true for 0-3, found twice.
    # fox: predicted for 3, 6 and 7, right twice; true for 6 and 7, both found.
    expected = {
        "cat": {"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2},
        "dog": {"precision": 2 / 3, "recall": 2 / 4, "f1": 4 / 7, "support": 4},
        "fox": {"precision": 2 / 3, "recall": 2 / 2, "f1": 4 / 5, "support": 2},
    }
    assert list(metrics["per_class"]) == NAMES
    for name, scores in expected.items():
        assert metrics["per_class"][name] == pytest.approx(scores), name
        assert isinstance(metrics["per_class"][name]["support"], int)
    # The unweighted mean of the three F1 scores, (1/2 + 4/7 + 4/5) / 3.
    assert metrics["macro_f1"] == pytest.approx(131 / 210)
    # The confusion matrix written: rows are the true class, columns the predicted one, each cell
    # saying its count, the axes naming the classes.
    assert Image.open(tmp_path / "confusion_matrix.png").format == "PNG"
    assert drawn_counts(saved_figures["confusion_matrix.png"]) == (
        NAMES, NAMES, [[1, 1, 0], [1, 2, 1], [0, 0, 2]]
    )  # fmt: skip


def test_the_baseline_comes_from_the_test_labels_only_without_training_labels(tmp_path):
    x = inputs_predicting(PREDICTED, 3)
    for y_train in (None, np.array([], dtype=np.int64)):
        metrics = evaluate_classifier(picking_model(3), x, Y_TEST, y_train, NAMES, tmp_path)
        # The test split's own majority, dog, is 4 of its 8 labels.
        assert metrics["baseline_class"] == "dog"
        assert metrics["baseline_accuracy"] == pytest.approx(4 / 8)


def test_a_training_majority_absent_from_the_test_split_scores_zero(tmp_path):
    metrics = evaluate_classifier(
        picking_model(3), inputs_predicting(PREDICTED, 3), Y_TEST, np.array([2, 2, 2, 0, 1]), NAMES, tmp_path
    )
    assert metrics["baseline_class"] == "fox"
    assert metrics["baseline_accuracy"] == pytest.approx(2 / 8)
    metrics = evaluate_classifier(
        picking_model(3),
        inputs_predicting([0, 0, 0], 3),
        np.array([0, 1, 1]),
        np.array([2, 2]),
        NAMES,
        tmp_path,
    )
    assert (metrics["baseline_class"], metrics["baseline_accuracy"]) == ("fox", 0.0)


def test_a_class_missing_from_the_test_split_counts_as_zero_in_the_macro_f1(tmp_path):
    names = [*NAMES, "owl"]
    metrics = evaluate_classifier(
        picking_model(4), inputs_predicting(PREDICTED, 4), Y_TEST, Y_TRAIN, names, tmp_path
    )
    # Never true, never predicted: no score to earn, reported as 0 with support 0.
    assert metrics["per_class"]["owl"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert metrics["per_class"]["dog"]["f1"] == pytest.approx(4 / 7)
    # Averaged over all four class names: (1/2 + 4/7 + 4/5 + 0) / 4.
    assert metrics["macro_f1"] == pytest.approx(131 / 280)
    assert metrics["test_accuracy"] == pytest.approx(5 / 8)


def test_a_perfect_model_scores_one_everywhere(tmp_path):
    metrics = evaluate_classifier(
        picking_model(3), inputs_predicting(list(Y_TEST), 3), Y_TEST, Y_TRAIN, NAMES, tmp_path
    )
    assert metrics["test_accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    assert all(scores["f1"] == 1.0 for scores in metrics["per_class"].values())
    assert [scores["support"] for scores in metrics["per_class"].values()] == [2, 4, 2]


def test_the_report_prints_every_class_row_rounded():
    metrics = {
        "per_class": {
            "cat": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
            "dog": {"precision": 2 / 3, "recall": 0.5, "f1": 4 / 7, "support": 4},
        }
    }
    assert format_classifier_report(metrics).splitlines() == [
        "     class precision  recall     f1 support",
        "       cat     0.500   0.500  0.500       2",
        "       dog     0.667   0.500  0.571       4",
    ]


def test_the_mistakes_shown_are_the_wrong_answers_most_confident_first(tmp_path, monkeypatch):
    from common.kit import plots

    drawn = {}
    monkeypatch.setattr(
        plots,
        "plot_image_grid",
        lambda images, captions, out_path, title, empty_text: drawn.update(
            images=images, captions=captions, name=out_path.name, title=title
        ),
    )
    x = inputs_predicting(PREDICTED, 3)
    # Example 3 (a dog read as fox) is a tenth as bright: softmax(1, 0, 0) gives the fox
    # e / (e + 2) = 58%; the others, softmax(10, 0, 0), give e^10 / (e^10 + 2) = 99.99%.
    x[3] *= 0.1
    evaluate_classifier(
        picking_model(3), x, Y_TEST, Y_TRAIN, NAMES, tmp_path, max_mistakes=2, data_source="toy"
    )
    # Wrong: 2 (dog read as cat), 3 (dog read as fox) and 5 (cat read as dog); the two surest
    # mistakes are 2 and 5, in that order (equal confidence keeps the test order).
    assert drawn["name"] == "mistakes.png"
    assert drawn["title"] == "3 of 8 test examples misclassified; the 2 most confident shown\ntoy"
    assert drawn["captions"] == ["true dog\npred cat (100%)", "true cat\npred dog (100%)"]
    np.testing.assert_array_equal(drawn["images"], x[[2, 5]])
    evaluate_classifier(picking_model(3), x, Y_TEST, Y_TRAIN, NAMES, tmp_path)
    assert drawn["title"] == "3 of 8 test examples misclassified; all shown"
    assert drawn["captions"] == [
        "true dog\npred cat (100%)",
        "true cat\npred dog (100%)",
        "true dog\npred fox (58%)",
    ]


def test_mistakes_of_inputs_that_are_not_images_are_listed_in_a_table(tmp_path):
    """Vectors (or sentences) cannot be drawn as a grid: the same mistakes, most confident first,
    go to mistakes.csv, and no mistakes.png is written."""
    import keras
    import pandas as pd

    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(3, activation="softmax")])
    model.set_weights([10 * np.eye(3, dtype="float32"), np.zeros(3, dtype="float32")])
    x = np.eye(3, dtype="float32")[PREDICTED]
    x[3] *= 0.1  # The dog read as fox, at 58% (see the test above).
    metrics = evaluate_classifier(model, x, Y_TEST, Y_TRAIN, NAMES, tmp_path, max_mistakes=2)
    assert metrics["test_accuracy"] == pytest.approx(5 / 8)
    assert not (tmp_path / "mistakes.png").exists()
    table = pd.read_csv(tmp_path / "mistakes.csv")
    assert list(table.columns) == ["test_index", "true", "predicted", "confidence"]
    assert table["test_index"].tolist() == [2, 5]
    assert table["true"].tolist() == ["dog", "cat"] and table["predicted"].tolist() == ["cat", "dog"]
    # e^10 / (e^10 + 2) and e / (e + 2), to four places.
    assert table["confidence"].tolist() == [0.9999, 0.9999]
    evaluate_classifier(model, x, Y_TEST, Y_TRAIN, NAMES, tmp_path)
    assert pd.read_csv(tmp_path / "mistakes.csv")["confidence"].tolist() == [0.9999, 0.9999, 0.5761]
