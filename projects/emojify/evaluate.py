"""Test accuracy beside the majority-class baseline, per-class scores and pictures."""

from __future__ import annotations

import logging
from pathlib import Path

import keras

from common.core.config import Config
from common.kit.classification import evaluate_classifier, format_classifier_report
from common.kit.splits import Splits
from projects.emojify.model import serving_model, serving_size

log = logging.getLogger(__name__)


def evaluate(model: keras.Model, splits: Splits, config: Config, out_dir: Path) -> dict:
    """Scores the model on the test split; writes ``confusion_matrix.png`` and ``mistakes.png``.

    On the synthetic sample, the metrics say so (``synthetic_data``), beside ``data_source``.
    The scores are those of the model as served (``serving_model``: mirror-averaged, crops), which
    the metrics record.
    """
    model = serving_model(model, config)
    x_test, y_test = splits.test
    y_train = splits.train[1] if splits.train is not None else None
    metrics = evaluate_classifier(
        model, x_test, y_test, y_train, splits.info["class_names"], out_dir, data_source=splits.source
    )
    metrics["synthetic_data"] = bool(splits.info.get("synthetic"))
    # How the scored model looked at each face (serving_model), so a figure says what it measures.
    metrics["mirror_average"] = bool(config.model.mirror_average)
    if config.augment.crop:
        metrics["test_crops"] = config.model.test_crops
        metrics["test_size"] = serving_size(config)
    if metrics["synthetic_data"]:
        log.warning(
            "these scores are on the synthetic sample of drawn faces, not on FER2013: they show the "
            "pipeline works, not how well the model reads real faces"
        )
    return metrics


def format_report(metrics: dict) -> str:
    """The per-class table, and a reminder when the scores are on the synthetic sample."""
    report = format_classifier_report(metrics)
    if metrics.get("synthetic_data"):
        report += "\n(synthetic sample of drawn faces, not FER2013)"
    return report
