"""Evaluation shared by the classifiers (MNIST, emojify, any new one): scores beside the majority
baseline, the confusion matrix and the most confident mistakes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as sk_metrics

from common.kit import plots


def evaluate_classifier(
    model: Any,
    x_test: np.ndarray,
    y_test: np.ndarray,
    y_train: np.ndarray | None,
    class_names: Sequence[str],
    out_dir: Path,
    batch_size: int = 256,
    max_mistakes: int = 40,
    data_source: str = "",
) -> dict:
    """Scores a classifier on the test split and writes its confusion matrix and mistakes.

    The baseline always predicts the most frequent class; it is taken from the training labels
    when known (what a model could have learnt), else from the test labels.

    ``confusion_matrix.png`` is titled with the accuracy, the number of test examples and
    ``data_source``. The ``max_mistakes`` most confident mistakes, each with its true and
    predicted class and the predicted class's probability, are drawn in ``mistakes.png`` when the
    inputs are grayscale images (N x H x W, or N x H x W x 1); other inputs (vectors, text) are
    listed in ``mistakes.csv`` instead, with the input itself when it is one value (a sentence).

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
    count = len(y_test)
    data = f"\n{data_source}" if data_source else ""
    plots.plot_confusion_matrix(
        matrix,
        class_names,
        out_dir / "confusion_matrix.png",
        title=f"accuracy {accuracy:.4f} on n = {count:,} test examples{data}",
    )
    confidence = probabilities[np.arange(count), predicted]
    wrong = np.flatnonzero(predicted != y_test)
    # The most confident mistakes first: the ones that say most about what the model gets wrong.
    shown = wrong[np.argsort(-confidence[wrong], kind="stable")][:max_mistakes]
    if len(shown) < len(wrong):
        which = f"; the {len(shown)} most confident shown"
    else:
        which = "; all shown" if len(wrong) else ""
    title = f"{len(wrong):,} of {count:,} test examples misclassified{which}{data}"
    if _grayscale_images(x_test):
        plots.plot_image_grid(
            x_test[shown],
            [
                f"true {class_names[y_test[i]]}\npred {class_names[predicted[i]]} ({confidence[i]:.0%})"
                for i in shown
            ],
            out_dir / "mistakes.png",
            title=title,
            empty_text="no test example misclassified",
        )
    else:
        table = pd.DataFrame(
            {
                "test_index": shown,
                "true": [class_names[y_test[i]] for i in shown],
                "predicted": [class_names[predicted[i]] for i in shown],
                "confidence": np.round(confidence[shown], 4),
            }
        )
        if np.ndim(x_test) == 1:
            table["input"] = [str(x_test[i]) for i in shown]
        table.to_csv(out_dir / "mistakes.csv", index=False)
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


def _grayscale_images(inputs: Any) -> bool:
    """Whether ``inputs`` are what :func:`common.kit.plots.plot_image_grid` draws: N x H x W, or
    N x H x W x 1."""
    shape = np.shape(inputs)
    return len(shape) == 3 or (len(shape) == 4 and shape[-1] == 1)


def format_classifier_report(metrics: dict) -> str:
    """A short table of the per-class scores for the terminal."""
    lines = [f"{'class':>10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}"]
    for name, scores in metrics["per_class"].items():
        lines.append(
            f"{name:>10} {scores['precision']:9.3f} {scores['recall']:7.3f} "
            f"{scores['f1']:6.3f} {scores['support']:7d}"
        )
    return "\n".join(lines)
