"""The reviews project: generated sentences, a text classifier, its evaluation and prediction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np

from common.core.config import Config
from common.kit.classification import evaluate_classifier
from common.kit.splits import Splits, split_arrays

CLASSES = ["negative", "positive"]
_WORDS = {
    "negative": ["awful", "boring", "dull", "terrible", "bad", "weak", "tedious"],
    "positive": ["great", "wonderful", "moving", "brilliant", "good", "fresh", "superb"],
}
_FILLER = ["the", "film", "was", "plot", "acting", "really", "quite", "and", "a", "story", "music"]


def load_data(config: Config, need_training: bool = True) -> Splits:
    """Sentences of filler words around two words of their class, split stratified."""
    rng = np.random.default_rng(config.seed)
    texts, labels = [], []
    for label, name in enumerate(CLASSES):
        for _ in range(config.data.per_class):
            words = list(rng.choice(_FILLER, 6)) + list(rng.choice(_WORDS[name], 2))
            rng.shuffle(words)
            texts.append(" ".join(words))
            labels.append(label)
    arrays = {"x_train": np.array(texts, dtype=object), "y_train": np.array(labels)}
    splits, _ = split_arrays(arrays, config, need_training)
    return Splits(**splits, source="generated review sentences", info={"class_names": CLASSES})


def build_model(config: Config, splits: Splits) -> keras.Model:
    """Words → indices (the vocabulary learnt from the training split) → embeddings → classes."""
    assert splits.train is not None
    settings = config.model
    words = keras.layers.TextVectorization(
        settings.vocabulary, output_sequence_length=settings.sequence_length
    )
    words.adapt(splits.train[0])
    text = keras.Input(shape=(), dtype="string", name="text")
    hidden = keras.layers.Embedding(settings.vocabulary, settings.embedding)(words(text))
    hidden = keras.layers.GlobalAveragePooling1D()(hidden)
    return keras.Model(text, keras.layers.Dense(len(CLASSES), activation="softmax")(hidden), name="reviews")


def callbacks(config: Config, run_dir: Path) -> list[keras.callbacks.Callback]:
    """Stops a run once validation accuracy is perfect: a callback that ends training early."""

    class Perfect(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if (logs or {}).get("val_accuracy", 0) >= 1.0:
                (run_dir / "stopped_when_perfect.txt").write_text(f"{epoch}\n")
                self.model.stop_training = True

    return [Perfect()]


def evaluate(model: keras.Model, splits: Splits, config: Config, out_dir: Path) -> dict:
    y_train = splits.train[1] if splits.train is not None else None
    x_test, y_test = splits.test
    return evaluate_classifier(model, x_test, y_test, y_train, CLASSES, out_dir, data_source=splits.source)


def predict(model: keras.Model, inputs: list[str], config: Config) -> Iterator[dict]:
    """Each input is a sentence (or a text file, one sentence a line) → its class."""
    sentences: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            sentences += [(f"{item}:{number}", line) for number, line in enumerate(lines, 1) if line.strip()]
        else:
            sentences.append((item, item))
    if not sentences:
        return iter(())
    chances = np.asarray(model.predict_on_batch(np.array([text for _, text in sentences], dtype=object)))
    return iter(
        {"input": name, "label": CLASSES[int(row.argmax())], "confidence": round(float(row.max()), 4)}
        for (name, _), row in zip(sentences, chances)
    )
