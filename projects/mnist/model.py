"""The digit classifier: a CNN whose layers are set in ``config.toml`` (uncompiled)."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from common.core.config import Config

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
# Keras' default (0.99) needs hundreds of steps before the statistics used at inference settle:
# a 3-epoch run on the 5,000 offline digits (96 steps) validated at chance. 0.9 settles in tens.
BATCH_NORM_MOMENTUM = 0.9


def to_model_input(digits: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Stacks 28x28 uint8 digits into the (N, 28, 28, 1) batch the model takes."""
    return np.asarray(digits, dtype=np.uint8).reshape(-1, *IMAGE_SHAPE)


def build_model(config: Config, splits: object = None) -> keras.Model:
    """Builds the CNN: pixels 0-255 in, 10 class probabilities out.

    Scaling to [0, 1] and augmentation are layers of the model, so a saved model takes the same
    raw 28x28 uint8 digits in training and prediction, and augmentation is off at inference.
    """
    settings = config.model
    model = keras.Sequential(name="mnist_cnn")
    model.add(keras.Input(shape=IMAGE_SHAPE))
    model.add(layers.Rescaling(1.0 / 255))
    if settings.augment_rotation > 0:
        model.add(layers.RandomRotation(settings.augment_rotation, fill_mode="constant"))
    if settings.augment_shift > 0:
        model.add(
            layers.RandomTranslation(settings.augment_shift, settings.augment_shift, fill_mode="constant")
        )
    if settings.augment_zoom > 0:
        model.add(layers.RandomZoom(settings.augment_zoom, fill_mode="constant"))
    for index, filters in enumerate(settings.conv_filters, start=1):
        model.add(layers.Conv2D(filters, 3, padding="same", use_bias=not settings.batch_norm))
        if settings.batch_norm:
            model.add(layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM))
        model.add(layers.Activation("relu"))
        if index % settings.pool_every == 0:
            model.add(layers.MaxPooling2D())
            if settings.block_dropout > 0:
                model.add(layers.Dropout(settings.block_dropout))
    model.add(layers.Flatten())
    model.add(layers.Dense(settings.dense_units, activation="relu"))
    if settings.dropout > 0:
        model.add(layers.Dropout(settings.dropout))
    # float32 even under a mixed-precision policy (train.precision): the loss and probabilities.
    model.add(layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32"))
    return model
