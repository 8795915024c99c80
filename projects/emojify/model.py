"""The emotion classifier: a VGG-style CNN whose blocks are set in ``config.toml`` (uncompiled)."""

from __future__ import annotations

import keras
from keras import layers

from common.config import Config
from projects.emojify.classes import NUM_CLASSES
from projects.emojify.synthetic import SIZE

IMAGE_SHAPE = (SIZE, SIZE, 1)
# Keras' default (0.99) needs hundreds of steps before the statistics used at inference settle,
# so validation looks like chance for the first epochs of a short run; 0.9 settles in tens.
BATCH_NORM_MOMENTUM = 0.9


def build_model(config: Config, splits: object = None) -> keras.Model:
    """Builds the CNN: raw 48x48 grayscale pixels (0-255) in, 7 emotion probabilities out.

    Scaling to [0, 1] and augmentation are layers of the model, so the saved model takes the same
    raw pixels in training and in prediction (the classic recipe forgot the 1/255 at inference),
    and the augmentation layers are inactive outside training.

    Each block is its 3x3 convolutions (optionally batch-normalised), then a 2x2 max-pooling and
    dropout; then a flatten (or global average pooling), an optional dense layer, and the softmax.
    """
    settings = config.model
    model = keras.Sequential(name="emotion_cnn")
    model.add(keras.Input(shape=IMAGE_SHAPE))
    model.add(layers.Rescaling(1.0 / 255))
    for layer in augmentation_layers(settings):
        model.add(layer)
    dropouts = block_dropouts(settings)
    for block, filters_list in enumerate(settings.blocks):
        for filters in filters_list:
            model.add(
                layers.Conv2D(
                    filters,
                    3,
                    padding=settings.padding,
                    use_bias=not settings.batch_norm,
                    activation=None if settings.batch_norm else "relu",
                )
            )
            if settings.batch_norm:
                model.add(layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM))
                model.add(layers.Activation("relu"))
        model.add(layers.MaxPooling2D())
        if dropouts[block] > 0:
            model.add(layers.Dropout(dropouts[block]))
    model.add(layers.GlobalAveragePooling2D() if settings.global_pooling else layers.Flatten())
    if settings.dense_units > 0:
        model.add(layers.Dense(settings.dense_units, use_bias=not settings.batch_norm))
        if settings.batch_norm:
            model.add(layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM))
        model.add(layers.Activation("relu"))
    if settings.dropout > 0:
        model.add(layers.Dropout(settings.dropout))
    model.add(layers.Dense(NUM_CLASSES, activation="softmax"))
    return model


def serving_model(model: keras.Model, config: Config) -> keras.Model:
    """The model that evaluation, ``predict``, the demo and the benchmarks query: the trained one,
    or with ``model.mirror_average`` a wrapper (sharing its weights) that puts each face and its
    left-right mirror through it in one batch of 2N and averages each face's two probability
    vectors: test-time augmentation, as faces are nearly symmetric and training mirrors them too."""
    if not config.model.mirror_average:
        return model
    # Built once per model: a web server calls predict once per photo, and a new wrapper is
    # traced again on its first batch (about a third of a second on 2 CPU cores). Kept beside
    # Keras' layer tracking (object.__setattr__), so saving the model never sees it.
    wrapper = model.__dict__.get("_mirror_average_model")
    if wrapper is None:
        inputs = keras.Input(shape=model.input_shape[1:])
        both = keras.ops.concatenate([inputs, keras.ops.flip(inputs, axis=2)], axis=0)
        probabilities = keras.ops.reshape(model(both), (2, -1, model.output_shape[-1]))
        outputs = keras.ops.mean(probabilities, axis=0)
        wrapper = keras.Model(inputs, outputs, name=f"{model.name}_mirror_average")
        object.__setattr__(model, "_mirror_average_model", wrapper)
    return wrapper


def augmentation_layers(settings) -> list[keras.layers.Layer]:
    """Random flips, rotations, shifts, zooms and contrast changes, active only while training."""
    augment = []
    if settings.augment_flip:
        augment.append(layers.RandomFlip("horizontal"))
    if settings.augment_rotation > 0:
        augment.append(layers.RandomRotation(settings.augment_rotation, fill_mode="reflect"))
    if settings.augment_shift > 0:
        augment.append(
            layers.RandomTranslation(settings.augment_shift, settings.augment_shift, fill_mode="reflect")
        )
    if settings.augment_zoom > 0:
        augment.append(layers.RandomZoom(settings.augment_zoom, fill_mode="reflect"))
    if settings.augment_contrast > 0:
        augment.append(layers.RandomContrast(settings.augment_contrast, value_range=(0, 1)))
    return augment


def block_dropouts(settings) -> list[float]:
    """One dropout rate per block, from ``block_dropout`` in order; its last rate repeats for any
    further block, and rates beyond the last block go unused (so ``--set model.blocks=...`` alone
    works)."""
    rates = list(settings.block_dropout)
    return [rates[min(block, len(rates) - 1)] for block in range(len(settings.blocks))]
