"""The transfer project: digits, a base (keras.applications' place) under a new head."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from common.core.config import Config
from common.core.errors import per_input
from common.kit.classification import evaluate_classifier
from common.kit.images import read_image
from common.kit.splits import Splits, split_arrays

CLASSES = [str(digit) for digit in range(10)]


def load_data(config: Config, need_training: bool = True) -> Splits:
    digits = load_digits()
    arrays = {"x_train": digits.images[..., None].astype("float32"), "y_train": digits.target}
    splits, _ = split_arrays(arrays, config, need_training)
    return Splits(**splits, source="scikit-learn's 8x8 digits", info={"class_names": CLASSES})


def base() -> keras.Model:
    """The base: in a real project ``keras.applications.EfficientNetB0(include_top=False,
    weights="imagenet")``; a small convolutional stack here, to train in seconds offline."""
    return keras.Sequential(
        [keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.Conv2D(8, 3, activation="relu")],
        name="base",
    )


def build_model(config: Config, splits: Splits) -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    pretrained = base()
    pretrained.trainable = config.model.fine_tune
    # training=False keeps a base's batch normalisation in inference mode while fine-tuning.
    features = pretrained(keras.layers.Rescaling(1 / 16)(inputs), training=False)
    hidden = keras.layers.GlobalAveragePooling2D()(features)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden), name="transfer")


def callbacks(config: Config, run_dir: Path) -> list[keras.callbacks.Callback]:
    """Records which phase each epoch trained in, and how many weights trained."""

    class Phase(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            with open(run_dir / "phases.csv", "a") as file:
                file.write(f"{epoch},{config.model.fine_tune},{len(self.model.trainable_weights)}\n")

    return [Phase()]


def evaluate(model: keras.Model, splits: Splits, config: Config, out_dir: Path) -> dict:
    y_train = splits.train[1] if splits.train is not None else None
    x_test, y_test = splits.test
    return evaluate_classifier(model, x_test, y_test, y_train, CLASSES, out_dir, data_source=splits.source)


def predict(model: keras.Model, inputs: list[str], config: Config) -> Iterator[dict]:
    return per_input(inputs, lambda path: _predict_file(model, path))


def _predict_file(model: keras.Model, path: str) -> dict:
    small = Image.fromarray(255 - read_image(path, mode="L")).resize((8, 8), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, "float32")[None, ..., None] * 16 / 255
    chances = np.asarray(model.predict_on_batch(pixels))[0]
    return {"input": path, "label": int(chances.argmax()), "confidence": round(float(chances.max()), 4)}
