"""The streaming input path (common/kit/streaming.py) and emojify's ``data.streaming``: a run trains
from image files read batch by batch, on the very batches the in-memory path gives, never holding
the training split, and a resumed run reads the batches of the uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.core import runs
from common.core.config import load_config
from common.core.errors import UserError
from common.core.paths import PROJECTS_DIR
from common.kit.splits import FileList
from common.kit.streaming import StreamedBatches
from projects.emojify import data as emojify_data
from projects.emojify.augment import AugmentedBatches, training_batches
from projects.emojify.classes import CLASS_NAMES
from projects.emojify.synthetic import synthetic_faces
from tests.conftest import assert_one_line_error
from tests.test_emojify import TINY_MODEL, write_folder_layout

DEFAULTS = PROJECTS_DIR / "emojify" / "config.toml"
CPU68 = PROJECTS_DIR / "emojify" / "cpu68.toml"  # the variant with the pipeline's augmentation on


def write_mixed_train_folder(root: Path) -> int:
    """``root/train/<emotion>/`` with 12 faces per emotion, as FER2013 and the odd user file hold
    them: grayscale JPEGs and PNGs, and one colour and one 64x64 face (decoded through PIL)."""
    images, labels = synthetic_faces(12, seed=5)
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / "train" / CLASS_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        face = Image.fromarray(image)
        if index == 3:
            face.convert("RGB").save(folder / f"{index:03d}.png")
        elif index == 4:
            face.resize((64, 64)).save(folder / f"{index:03d}.png")
        elif index % 2:
            face.save(folder / f"{index:03d}.jpg", quality=90)
        else:
            face.save(folder / f"{index:03d}.png")
    return len(labels)


@pytest.fixture(scope="module")
def train_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fer-train-only")
    write_mixed_train_folder(root)
    return root


def emojify_config(data_path: Path, *overrides: str, variant: Path | None = CPU68):
    return load_config(DEFAULTS, variant, [f"data.path={data_path}", "train.batch_size=8", *overrides])


def all_batches(batches, epoch: int) -> list[tuple]:
    batches.set_epoch(epoch)
    return [batches[index] for index in range(len(batches))]


def test_streamed_batches_equal_the_in_memory_ones_pixel_for_pixel(train_folder, tmp_path):
    in_memory = emojify_config(train_folder, f"data.cache_dir={tmp_path / 'cache'}")
    streamed = in_memory.with_overrides(["data.streaming=true"])
    arrays = emojify_data.load_data(in_memory)
    files = emojify_data.load_data(streamed)
    assert files.streamed and not arrays.streamed
    assert files.sizes() == arrays.sizes() == {"n_test": 9, "n_train": 67, "n_validation": 8}
    assert files.source == arrays.source and files.class_weight == arrays.class_weight
    # The same faces held out as test (decoded whole) and validation (read from its files).
    assert np.array_equal(files.test[0], arrays.test[0]) and np.array_equal(files.test[1], arrays.test[1])
    assert isinstance(files.validation[0], FileList)
    assert np.array_equal(files.validation[0].read(), arrays.validation[0])
    assert np.array_equal(files.validation[1], arrays.validation[1])
    # The same training batches: order, augmentation (crop, scale, rotation, flip, erase), weights.
    expected, actual = training_batches(in_memory, arrays, 0), training_batches(streamed, files, 0)
    assert isinstance(expected, AugmentedBatches) and isinstance(actual, StreamedBatches)
    assert len(actual) == len(expected) == 9
    for epoch in (0, 1):
        for want, got in zip(all_batches(expected, epoch), all_batches(actual, epoch), strict=True):
            assert len(got) == 3  # faces, labels, class weights
            assert got[0].dtype == np.uint8 and got[0].shape[1:] == (40, 40, 1)
            assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))


def test_reading_a_batch_decodes_only_that_batchs_files(train_folder, monkeypatch):
    config = emojify_config(train_folder, "data.streaming=true")
    decoded: list[str] = []
    decode = emojify_data.decode_face

    def counting_decode(path: str) -> np.ndarray:
        decoded.append(path)
        return decode(path)

    def never(*args, **kwargs):
        raise AssertionError("the streaming path decoded a whole split")

    monkeypatch.setattr(emojify_data, "decode_face", counting_decode)
    monkeypatch.setattr(emojify_data, "read_split_folders", never)
    splits = emojify_data.load_data(config)
    assert len(decoded) == 9  # the held-out test split, decoded for evaluation
    decoded.clear()
    batches = training_batches(config, splits, first_epoch=3)
    assert not decoded  # listing and ordering read nothing
    x, y, _ = batches[2]
    assert len(decoded) == len(x) == 8
    assert sorted(decoded) == sorted(splits.train[0].paths[batches.order[16:24]])


def test_a_resumed_run_reads_the_batches_of_the_uninterrupted_one(train_folder):
    config = emojify_config(train_folder, "data.streaming=true")
    splits = emojify_data.load_data(config)
    through = training_batches(config, splits, first_epoch=0)
    for epoch in (0, 1):
        all_batches(through, epoch)
    after_two_epochs = all_batches(through, 2)
    resumed = training_batches(config, splits, first_epoch=2)
    fresh = [resumed[index] for index in range(len(resumed))]
    for want, got in zip(after_two_epochs, fresh, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))
    # And each epoch is another order and other augmentation.
    assert not np.array_equal(all_batches(through, 3)[0][0], after_two_epochs[0][0])


def test_fit_on_parallel_workers_trains_on_each_epochs_batches_in_order():
    """What the model is given, batch by batch, by ``fit`` with decoding threads running ahead:
    each epoch exactly its own batches, in order, also when a fresh dataset resumes at epoch 2;
    validation in file order every epoch."""
    import keras

    faces = np.arange(21 * 4, dtype=np.float32).reshape(21, 4)
    labels = np.arange(21) % 3
    files = FileList(np.array([str(index) for index in range(21)], dtype=object), lambda p: faces[int(p)])

    def shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return x + rng.integers(0, 1000, (len(x), 1))

    class Recorder(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)
            self.seen: list[tuple[str, np.ndarray]] = []

        def call(self, x):
            return self.dense(x)

        def train_step(self, data):
            self.seen.append(("train", np.asarray(data[0])))
            return {"batches": float(len(self.seen))}

        def test_step(self, data):
            self.seen.append(("validation", np.asarray(data[0])))
            return {"batches": float(len(self.seen))}

    def fit(first_epoch: int) -> list[tuple[str, np.ndarray]]:
        batches = StreamedBatches(
            files, labels, 4, 7, first_epoch, augment=shift, workers=3, max_queue_size=2
        )
        validation = StreamedBatches(files, labels, 8, shuffle=False, workers=2)
        model = Recorder()
        model.compile(run_eagerly=True)
        model.fit(
            batches,
            shuffle=False,
            epochs=4,
            initial_epoch=first_epoch,
            validation_data=validation,
            callbacks=[batches.ordering_callback()],
            verbose=0,
        )
        return model.seen

    def expected(epochs) -> list[tuple[str, np.ndarray]]:
        reference = StreamedBatches(files, labels, 4, 7, augment=shift, workers=1)
        batches = []
        for epoch in epochs:
            batches += [("train", x) for x, _ in all_batches(reference, epoch)]
            batches += [("validation", faces[start : start + 8]) for start in (0, 8, 16)]
        return batches

    for first_epoch in (0, 2):
        seen, want = fit(first_epoch), expected(range(first_epoch, 4))
        assert [kind for kind, _ in seen] == [kind for kind, _ in want]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(seen, want, strict=True))


def test_streaming_trains_and_evaluates_through_the_cli(tmp_path, cli, models_dir):
    write_folder_layout(
        tmp_path / "fer", {"train": synthetic_faces(10, seed=1), "test": synthetic_faces(2, seed=2)}
    )
    settings = [
        f"data.path={tmp_path / 'fer'}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.streaming=true",
        "train.epochs=1",
        "train.batch_size=8",
        "augment.flip=true",
        "augment.rotation=10",
        *TINY_MODEL,
    ]
    result = cli("train", "emojify", *[arg for setting in settings for arg in ("--set", setting)])
    assert result.code == 0, result.stderr
    metrics = json.loads((runs.latest_run("emojify") / "metrics.json").read_text())
    assert metrics["data_streamed"] is True and metrics["epochs_run"] == 1
    assert metrics["n_train"] == 63 and metrics["n_validation"] == 7 and metrics["n_test"] == 14
    assert metrics["data_source"] == f"FER2013 train split + test split at {tmp_path / 'fer'}"
    assert 0 <= metrics["test_accuracy"] <= 1
    assert not (tmp_path / "cache").exists()  # nothing decoded whole, so nothing cached


@pytest.fixture
def faces_csv(tmp_path) -> Path:
    from tests.test_emojify import write_csv_layout

    folder = tmp_path / "csv"
    folder.mkdir()
    write_csv_layout(folder / "fer2013.csv", {"train": synthetic_faces(2, seed=3)})
    return folder / "fer2013.csv"


def test_sources_without_files_to_stream_are_one_line(tmp_path, cli, faces_csv, monkeypatch):
    result = cli("train", "emojify", "--set", "data.streaming=true", "--set", f"data.path={faces_csv}")
    assert_one_line_error(result, "data.streaming", "not the CSV or the synthetic sample")
    result = cli("train", "emojify", "--set", "data.streaming=true", "--set", "data.synthetic=true")
    assert_one_line_error(result, "data.streaming", "not the CSV or the synthetic sample")
    # A folder holding the CSV, and no FER2013 at all, show only when the data is read.
    config = emojify_config(faces_csv.parent, "data.streaming=true", variant=None)
    with pytest.raises(UserError, match="is FER2013's CSV: set data.streaming = false"):
        emojify_data.load_data(config)
    monkeypatch.setattr(emojify_data, "DEFAULT_DATA_DIR", tmp_path / "no-fer2013")
    with pytest.raises(UserError, match="FER2013 is not in data/fer2013/"):
        emojify_data.load_data(load_config(DEFAULTS, None, ["data.streaming=true"]))


def test_a_truncated_face_file_is_refused_as_the_in_memory_path_refuses_it(tmp_path):
    whole = tmp_path / "whole.jpg"
    Image.fromarray(synthetic_faces(1, seed=4)[0][0]).save(whole, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[:400])
    assert np.array_equal(emojify_data.decode_face(str(whole))[..., 0], emojify_data.read_face(whole))
    for decode in (emojify_data.read_face, emojify_data.decode_face):
        with pytest.raises(UserError, match="truncated or corrupt"):
            decode(cut)


@pytest.mark.slow
def test_a_streamed_run_ends_with_the_weights_and_history_of_the_in_memory_run(tmp_path, cli, models_dir):
    write_folder_layout(
        tmp_path / "fer", {"train": synthetic_faces(10, seed=1), "test": synthetic_faces(2, seed=2)}
    )
    import keras

    ends = {}
    for streaming in ("false", "true"):
        settings = [
            f"data.path={tmp_path / 'fer'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"data.streaming={streaming}",
            "train.epochs=3",
            "train.batch_size=8",
            "augment.flip=true",
            "augment.rotation=10",
            "augment.erase=0.3",
            *TINY_MODEL,
        ]
        overrides = [arg for setting in settings for arg in ("--set", setting)]
        assert cli("train", "emojify", *overrides, "--name", streaming).code == 0
        [run_dir] = (models_dir / "emojify").glob(f"*-{streaming}")
        weights = keras.saving.load_model(run_dir / "model.keras").get_weights()
        ends[streaming] = weights, (run_dir / "history.csv").read_text()
    (in_memory, history), (streamed, streamed_history) = ends["false"], ends["true"]
    assert all(np.array_equal(a, b) for a, b in zip(in_memory, streamed, strict=True))
    assert streamed_history == history
