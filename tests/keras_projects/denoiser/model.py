"""The denoiser: data, a registered subclassed model and custom layer, evaluation, prediction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from common.core.config import Config
from common.core.errors import per_input
from common.kit.images import read_image
from common.kit.splits import Splits


def load_data(config: Config, need_training: bool = True) -> Splits:
    """Noisy digits in, clean digits out (flattened to 64 pixels in [0, 1]); 60/20/20."""
    clean = load_digits().data.astype("float32") / 16.0
    rng = np.random.default_rng(config.seed)
    noisy = np.clip(clean + rng.normal(0, config.data.noise, clean.shape), 0, 1).astype("float32")
    order = rng.permutation(len(clean))
    test, validation, train = np.split(order, [len(order) // 5, 2 * len(order) // 5])
    return Splits(
        test=(noisy[test], clean[test]),
        train=(noisy[train], clean[train]) if need_training else None,
        validation=(noisy[validation], clean[validation]) if need_training else None,
        source=f"scikit-learn's 8x8 digits with noise {config.data.noise}",
    )


@keras.saving.register_keras_serializable(package="denoiser")
class Bottleneck(keras.layers.Layer):
    """A dense code of ``units``, whose activations are kept small by an L1 penalty."""

    def __init__(self, units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units, activation="relu")

    def call(self, inputs):
        code = self.dense(inputs)
        self.add_loss(1e-5 * keras.ops.sum(keras.ops.abs(code)))
        return code

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="denoiser")
class Autoencoder(keras.Model):
    """Encoder, bottleneck and decoder, as a subclassed model."""

    def __init__(self, pixels: int, code: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pixels, self.code = pixels, code
        self.encoder = keras.layers.Dense(48, activation="relu")
        self.bottleneck = Bottleneck(code)
        self.decoder = keras.layers.Dense(pixels, activation="sigmoid")

    def call(self, inputs):
        return self.decoder(self.bottleneck(self.encoder(inputs)))

    def get_config(self) -> dict:
        return {**super().get_config(), "pixels": self.pixels, "code": self.code}


def build_model(config: Config, splits: Splits) -> keras.Model:
    return Autoencoder(pixels=64, code=config.model.code, name="denoiser")


def callbacks(config: Config, run_dir: Path) -> list[keras.callbacks.Callback]:
    """Keras' own CSV log, appended to, so a resumed run goes on with the same file."""
    return [keras.callbacks.CSVLogger(str(run_dir / "epochs.csv"), append=True)]


def evaluate(model: keras.Model, splits: Splits, config: Config, out_dir: Path) -> dict:
    """The mean squared error beside that of returning the noisy digit unchanged."""
    noisy, clean = splits.test
    error = float(np.mean((model.predict(noisy, verbose=0) - clean) ** 2))
    baseline = float(np.mean((noisy - clean) ** 2))
    return {"test_mse": error, "baseline_mse": baseline, "error_ratio": error / baseline}


def predict(model: keras.Model, inputs: list[str], config: Config) -> Iterator[dict]:
    """Each image, made 8x8 gray, denoised: its 64 pixels in [0, 1]."""
    return per_input(inputs, lambda path: _denoise(model, path))


def _denoise(model: keras.Model, path: str) -> dict:
    small = Image.fromarray(read_image(path, mode="L")).resize((8, 8), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, "float32").reshape(1, 64) / 255.0
    return {"input": path, "pixels": np.round(model.predict_on_batch(pixels)[0], 3).tolist()}
