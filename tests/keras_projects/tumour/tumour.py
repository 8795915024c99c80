"""The tumour project's data, model, loss, callback, evaluation and prediction."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from common.core.config import Config
from common.core.errors import UserError, per_input
from common.kit.splits import Splits


def load_data(config: Config, need_training: bool = True) -> Splits:
    """Stratified 60/20/20 splits; malignant (the rarer class) weighs more in training."""
    table = load_breast_cancer()
    x, y = table.data.astype("float32"), (table.target == 0).astype("float32")  # 1: malignant
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=config.seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.25, stratify=y_rest, random_state=config.seed
    )
    share = float(y_train.mean())
    return Splits(
        test=(x_test, y_test),
        train=(x_train, y_train) if need_training else None,
        validation=(x_val, y_val) if need_training else None,
        source="scikit-learn's 569 breast-cancer tumours",
        class_weight={0: 0.5 / (1 - share), 1: 0.5 / share},
        info={"columns": list(table.feature_names)},
    )


def build_model(config: Config, splits: Splits) -> keras.Model:
    """Standardised inside the model (the scaler adapted on the training split alone)."""
    assert splits.train is not None
    scale = keras.layers.Normalization()
    scale.adapt(splits.train[0])
    return keras.Sequential(
        [
            keras.Input((splits.train[0].shape[1],)),
            scale,
            keras.layers.Dense(config.model.units, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="tumour",
    )


def focal_loss(y_true, y_pred, gamma: float = 2.0):
    """Binary focal loss (Lin et al. 2017): cross-entropy down-weighted where the model is sure."""
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    y_pred = keras.ops.clip(y_pred, 1e-7, 1 - 1e-7)
    right = y_true * y_pred + (1 - y_true) * (1 - y_pred)
    return keras.ops.mean(-((1 - right) ** gamma) * keras.ops.log(right), axis=-1)


def compile_options(config: Config) -> dict:
    """The focal loss (a plain function) and metric objects instead of the config's names."""
    return {
        "loss": focal_loss,
        "metrics": [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc"),
                    keras.metrics.Precision(name="precision")],
    }  # fmt: skip


class LearningRateLog(keras.callbacks.Callback):
    """Appends each epoch's learning rate to ``learning_rate.csv`` in the run folder."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        with open(self.path, "a") as file:
            file.write(f"{epoch},{rate}\n")


def callbacks(config: Config, run_dir: Path) -> list[keras.callbacks.Callback]:
    return [LearningRateLog(run_dir / "learning_rate.csv")]


def evaluate(model: keras.Model, splits: Splits, config: Config, out_dir: Path) -> dict:
    """Accuracy beside always answering the training split's majority class."""
    x_test, y_test = splits.test
    predicted = model.predict(x_test, verbose=0).ravel() > 0.5
    y_train = splits.train[1] if splits.train is not None else y_test
    majority = float(np.mean(y_train) > 0.5)
    return {
        "test_accuracy": float(np.mean(predicted == y_test)),
        "baseline_accuracy": float(np.mean(y_test == majority)),
    }


def predict(model: keras.Model, inputs: list[str], config: Config) -> Iterator[dict]:
    """Each CSV file's rows (the 30 measurements, a header naming them) → malignant or not."""
    if not inputs:
        raise UserError("give one or more CSV files of the 30 measurements")
    for result in per_input(inputs, lambda path: _predict_file(model, path)):
        yield from result.get("rows", [result])


def _predict_file(model: keras.Model, path: str) -> dict:
    try:
        with open(path, newline="") as file:
            rows = [[float(value) for value in row] for row in list(csv.reader(file))[1:]]
        x = np.asarray(rows, "float32").reshape(len(rows), -1)
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not a CSV of numbers ({error})") from None
    if x.shape[1] != model.input_shape[-1]:
        raise UserError(f"{path}: {x.shape[1]} columns, the model takes {model.input_shape[-1]}")
    chances = model.predict_on_batch(x).ravel()
    rows = [
        {
            "input": f"{path}:{row + 1}",
            "malignant": bool(chance > 0.5),
            "probability": round(float(chance), 4),
        }
        for row, chance in enumerate(chances)
    ]
    return {"rows": rows}
