"""The twoway project: generated houses, a two-input two-output model, evaluation, prediction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np

from common.core.config import Config
from common.core.errors import UserError, per_input
from common.kit.splits import Splits, take

KINDS = ["flat", "terrace", "villa"]
REGIONS = 4


def load_data(config: Config, need_training: bool = True) -> Splits:
    """Size and rooms, and a region code, give a price and a kind; 60/20/20."""
    rng = np.random.default_rng(config.seed)
    n = config.data.houses
    size = rng.uniform(30, 250, n).astype("float32")
    rooms = np.round(size / 35 + rng.normal(0, 0.5, n)).astype("float32")
    region = rng.integers(0, REGIONS, n)
    kind = np.digitize(size, [80, 160])
    price = (size * (1 + 0.3 * region) / 100 + rng.normal(0, 0.1, n)).astype("float32")
    x = {"measures": np.stack([size, rooms], axis=1), "region": region.astype("int64")}
    y = {"price": price[:, None], "kind": kind.astype("int64")}
    order = rng.permutation(n)
    test, validation, train = np.split(order, [n // 5, 2 * n // 5])
    return Splits(
        test=(take(x, test), take(y, test)),
        train=(take(x, train), take(y, train)) if need_training else None,
        validation=(take(x, validation), take(y, validation)) if need_training else None,
        source=f"{n} generated houses",
    )


def build_model(config: Config, splits: Splits) -> keras.Model:
    assert splits.train is not None
    measures = keras.Input((2,), name="measures")
    region = keras.Input((), dtype="int64", name="region")
    scale = keras.layers.Normalization()
    scale.adapt(splits.train[0]["measures"])
    places = keras.layers.Embedding(REGIONS, 3)(region)
    hidden = keras.layers.Dense(config.model.units, activation="relu")(
        keras.layers.Concatenate()([scale(measures), places])
    )
    return keras.Model(
        {"measures": measures, "region": region},
        {
            "price": keras.layers.Dense(1, name="price")(hidden),
            "kind": keras.layers.Dense(len(KINDS), activation="softmax", name="kind")(hidden),
        },
        name="twoway",
    )


class BestSoFar(keras.callbacks.Callback):
    """Writes the best validation loss so far to ``best.json`` in the run folder each epoch."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        best = json.loads(self.path.read_text()) if self.path.is_file() else {"val_loss": float("inf")}
        if (logs or {}).get("val_loss", float("inf")) < best["val_loss"]:
            self.path.write_text(json.dumps({"epoch": epoch, "val_loss": float(logs["val_loss"])}))


def callbacks(config: Config, run_dir: Path) -> list[keras.callbacks.Callback]:
    return [BestSoFar(run_dir / "best.json")]


def evaluate(model: keras.Model, splits: Splits, config: Config, out_dir: Path) -> dict:
    """The kind's accuracy beside the majority kind; the price's error beside the mean price."""
    x_test, y_test = splits.test
    predicted = model.predict(x_test, verbose=0)
    y_train = splits.train[1] if splits.train is not None else y_test
    majority = int(np.bincount(y_train["kind"]).argmax())
    mean_price = float(np.mean(y_train["price"]))
    return {
        "test_accuracy": float(np.mean(predicted["kind"].argmax(axis=1) == y_test["kind"])),
        "baseline_accuracy": float(np.mean(y_test["kind"] == majority)),
        "test_price_mae": float(np.mean(np.abs(predicted["price"] - y_test["price"]))),
        "baseline_price_mae": float(np.mean(np.abs(mean_price - y_test["price"]))),
    }


def predict(model: keras.Model, inputs: list[str], config: Config) -> Iterator[dict]:
    """Each JSON file ``{"size": 120, "rooms": 3, "region": 2}`` → a price and a kind."""
    return per_input(inputs, lambda path: _predict_file(model, path))


def _predict_file(model: keras.Model, path: str) -> dict:
    try:
        house = json.loads(Path(path).read_text())
        x = {
            "measures": np.array([[house["size"], house["rooms"]]], "float32"),
            "region": np.array([house["region"]], "int64"),
        }
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path}: expected JSON with size, rooms and region ({error})") from None
    answer = model.predict_on_batch(x)
    kind = np.asarray(answer["kind"])[0]
    return {
        "input": path,
        "price": round(float(np.asarray(answer["price"])[0, 0]), 3),
        "kind": KINDS[int(kind.argmax())],
    }
