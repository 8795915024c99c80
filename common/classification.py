"""Evaluation shared by the classifiers (MNIST, emojify): scores beside the majority baseline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as sk_metrics

from common import plots


def evaluate_classifier(
    model: Any,
    x_test: np.ndarray,
    y_test: np.ndarray,
    y_train: np.ndarray | None,
    class_names: Sequence[str],
    out_dir: Path,
    batch_size: int = 256,
    max_mistakes: int = 40,
) -> dict:
    """Scores a classifier on the test split and writes its confusion matrix and mistakes.

    The baseline always predicts the most frequent class; it is taken from the training labels
    when known (what a model could have learnt), else from the test labels.

    Returns:
        ``test_accuracy``, ``baseline_accuracy``, ``baseline_class`` and ``per_class``
        (precision, recall, F1 and support per class name).
    """
    probabilities = model.predict(x_test, batch_size=batch_size, verbose=0)
    predicted = np.argmax(probabilities, axis=1)
    labels = list(range(len(class_names)))
    reference = y_train if y_train is not None and len(y_train) else y_test
    majority_class = int(np.bincount(reference, minlength=len(class_names)).argmax())
    precision, recall, f1, support = sk_metrics.precision_recall_fscore_support(
        y_test, predicted, labels=labels, zero_division=0
    )
    matrix = sk_metrics.confusion_matrix(y_test, predicted, labels=labels)
    accuracy = float(np.mean(predicted == y_test))
    plots.plot_confusion_matrix(
        matrix, class_names, out_dir / "confusion_matrix.png", title=f"accuracy {accuracy:.4f}"
    )
    wrong = np.flatnonzero(predicted != y_test)[:max_mistakes]
    plots.plot_image_grid(
        x_test[wrong],
        [f"true {class_names[y_test[i]]}\npred {class_names[predicted[i]]}" for i in wrong],
        out_dir / "mistakes.png",
    )
    return {
        "test_accuracy": accuracy,
        "baseline_accuracy": float(np.mean(y_test == majority_class)),
        "baseline_class": class_names[majority_class],
        "macro_f1": float(np.mean(f1)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
    }


def format_classifier_report(metrics: dict) -> str:
    """A short table of the per-class scores for the terminal."""
    lines = [f"{'class':>10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}"]
    for name, scores in metrics["per_class"].items():
        lines.append(
            f"{name:>10} {scores['precision']:9.3f} {scores['recall']:7.3f} "
            f"{scores['f1']:6.3f} {scores['support']:7d}"
        )
    return "\n".join(lines)
