"""The emotion classifier: a VGG-style CNN whose blocks are set in ``config.toml`` (uncompiled)."""

from __future__ import annotations

import keras
from keras import layers

from common.core.config import Config
from common.experiments import ensemble
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
    crop = config.augment.crop
    model = keras.Sequential(name="emotion_cnn")
    if crop:
        # Trained on the pipeline's crops, it takes faces of any size and centre-crops them: the
        # crops pass unchanged, and a whole 48x48 face is classified by its centre.
        model.add(keras.Input(shape=(None, None, 1)))
        model.add(layers.CenterCrop(crop, crop))
    else:
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
    # float32 even under a mixed-precision policy (train.precision): the loss and probabilities.
    model.add(layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32"))
    return model


def serving_model(model: keras.Model, config: Config) -> keras.Model:
    """The model that evaluation, ``predict``, the demo and the benchmarks query: the trained one,
    or a wrapper (sharing its weights) that averages each face's probabilities over several views
    of it, put through the model in one batch: test-time augmentation.

    The views are the face (the model centre-crops it when trained on crops), or with
    ``model.test_crops = 5`` its centre and four corner crops; with ``model.mirror_average`` each
    view's left-right mirror too, as faces are nearly symmetric and training mirrors them. A model
    trained on crops with global pooling reads any size, so ``model.test_size`` may give its
    network a larger centre square than the training crops (more of the face, one pass).
    """
    if getattr(model, "is_serving_model", False):
        return model  # Already this function's result (the web server's batching stand-in for it).
    trained = config.augment.crop or SIZE
    test_crops = config.model.test_crops if config.augment.crop else 1
    size = serving_size(config)
    if test_crops == 1 and size == trained and not config.model.mirror_average:
        return model
    # Built once per model and set of views: a web server calls predict once per photo, and a new
    # wrapper is traced again on its first batch (about a third of a second on 2 CPU cores). Kept
    # beside Keras' layer tracking (object.__setattr__), so saving the model never sees it.
    key = (test_crops, trained, size, bool(config.model.mirror_average))
    cache = model.__dict__.get("_serving_models")
    if cache is None:
        cache = {}
        object.__setattr__(model, "_serving_models", cache)
    if key not in cache:
        inputs = keras.Input(shape=IMAGE_SHAPE)
        views = (
            [inputs]
            if test_crops == 1 and size == trained
            else corner_and_centre_crops(inputs, size, test_crops)
        )
        if config.model.mirror_average:
            views += [keras.ops.flip(view, axis=2) for view in views]
        batch = keras.ops.concatenate(views, axis=0)
        network = model if size == trained else _without_centre_crop(model)
        probabilities = keras.ops.reshape(network(batch), (len(views), -1, model.output_shape[-1]))
        outputs = keras.ops.mean(probabilities, axis=0)
        name = f"{model.name}_{len(views)}_view_average" if len(views) > 1 else f"{model.name}_{size}px"
        cache[key] = keras.Model(inputs, outputs, name=name)
    return cache[key]


def serving_size(config: Config) -> int:
    """Side of the square each served view is (48: whole faces, for a model not trained on crops)."""
    if not config.augment.crop:
        return SIZE
    return config.model.test_size or config.augment.crop


def _without_centre_crop(model: keras.Model):
    """The trained network after its ``CenterCrop`` (same layers, same weights): it reads squares
    larger than its training crops, which global pooling averages to the same features. For an
    ensemble (``python -m common ensemble``), each member's, their probabilities averaged."""
    networks = [
        # A model of its own per member: members trained apart have layers of the same names.
        keras.Sequential(
            [layer for layer in member.layers if not isinstance(layer, layers.CenterCrop)],
            name=f"{member.name}_uncropped",
        )
        for member in ensemble.members(model)
    ]

    def network(images):
        outputs = [uncropped(images) for uncropped in networks]
        return outputs[0] if len(outputs) == 1 else keras.ops.mean(keras.ops.stack(outputs), axis=0)

    return network


def corner_and_centre_crops(faces, crop: int, count: int = 5) -> list:
    """The centre (``count = 1``) or the centre and the four corner (``count = 5``) ``crop``-pixel
    squares of ``(N, 48, 48, 1)`` faces."""
    far, middle = SIZE - crop, (SIZE - crop) // 2
    corners = ((middle, middle), (0, 0), (0, far), (far, 0), (far, far))[:count]
    return [faces[:, top : top + crop, left : left + crop, :] for top, left in corners]


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
