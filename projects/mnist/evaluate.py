"""Test accuracy beside the majority-class baseline, per-class scores and pictures."""

from __future__ import annotations

from pathlib import Path

import keras

from common.core.config import Config
from common.kit.classification import evaluate_classifier, format_classifier_report
from common.kit.splits import Splits


def evaluate(model: keras.Model, splits: Splits, config: Config, out_dir: Path) -> dict:
    """Scores the model on the test split; writes ``confusion_matrix.png`` and ``mistakes.png``."""
    x_test, y_test = splits.test
    y_train = splits.train[1] if splits.train is not None else None
    return evaluate_classifier(
        model, x_test, y_test, y_train, splits.info["class_names"], out_dir, data_source=splits.source
    )


format_report = format_classifier_report
