"""Where and in what precision a run trains: ``train.distribution``, ``train.precision`` and
``train.cpu_devices``, applied with Keras' own machinery.

A run on one device (``distribution = "none"``, the default) needs nothing more than this module:
:func:`check` before any data is read, :func:`placed` around the training. Data-parallel
training, clusters and a CPU split into logical devices are :mod:`common.training.parallel`'s, imported
only by a run that asks for them.

- ``precision`` is Keras' dtype policy (``keras.mixed_precision``): ``mixed_float16`` or
  ``mixed_bfloat16`` compute in 16 bits and keep the weights in float32; every project's output
  layer is built with ``dtype="float32"`` so the loss and the predictions stay in float32.
  A GPU setting: on a CPU it is slower (bf16 ran at 0.75x float32 for a small CNN here).
- ``distribution = "data_parallel"`` and ``cpu_devices``: see :mod:`common.training.parallel`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import keras

from common.core.config import Config
from common.core.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """What a run trains on, recorded in ``metrics.json``. ``processes`` > 1 on a cluster, where
    this process is number ``process_index`` (0 is the chief)."""

    replicas: int
    device: str
    precision: str
    processes: int = 1
    process_index: int = 0


def cluster_size() -> int:
    """The number of processes the launch asked for (``KERAS_DISTRIBUTION_NUM_PROCESSES``)."""
    value = os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "").strip() or "1"
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"KERAS_DISTRIBUTION_NUM_PROCESSES must be a whole number; it is {value!r}")
    return int(value)


def settings(config: Config) -> tuple[str, str, int]:
    """``(distribution, precision, cpu_devices)``, the defaults where a config lacks the keys."""
    train = config.train
    distribution = train.distribution.lower() if "distribution" in train else "none"
    precision = train.precision.lower() if "precision" in train else "float32"
    cpu_devices = train.cpu_devices if "cpu_devices" in train else 1
    return distribution, precision, cpu_devices


def check(config: Config) -> None:
    """What the current backend can do, checked before any data is read (the values themselves
    are checked with the rest of the config, :func:`common.core.config.validate`); the CPU split
    into ``train.cpu_devices`` logical devices."""
    distribution, _, cpu_devices = settings(config)
    backend = keras.backend.backend()
    if distribution == "data_parallel" and backend not in ("jax", "tensorflow"):
        raise UserError(
            f"train.distribution = 'data_parallel' is not available under Keras' {backend} backend "
            "(Keras distributes training under JAX and TensorFlow only); use KERAS_BACKEND=jax or "
            "tensorflow, or train.distribution = 'none'"
        )
    if backend == "tensorflow" and os.environ.get("TF_CONFIG"):
        raise UserError(
            "TF_CONFIG is set, but this template trains across machines under JAX only (TensorFlow's "
            "MultiWorkerMirroredStrategy is not wired in): use KERAS_BACKEND=jax with the "
            "KERAS_DISTRIBUTION_* variables (docs/scaling.md, 'Clusters'), or unset TF_CONFIG"
        )
    processes = cluster_size()
    if processes > 1:
        if backend != "jax":
            raise UserError(
                f"KERAS_DISTRIBUTION_NUM_PROCESSES={processes}: training on several processes or machines "
                "works under JAX here; set KERAS_BACKEND=jax"
            )
        if distribution != "data_parallel":
            raise UserError(
                f"KERAS_DISTRIBUTION_NUM_PROCESSES={processes}: set train.distribution = 'data_parallel' "
                "so the processes share the training"
            )
        if config.train.batch_size % processes:
            raise UserError(
                f"train.batch_size = {config.train.batch_size} does not split evenly between {processes} "
                "processes; choose a multiple of the number of processes"
            )
        from common.training import parallel

        parallel.join_cluster()
    if cpu_devices > 1:
        from common.training import parallel

        # Before anything (even making an optimizer to check its options) sets the devices up.
        parallel.split_cpu(cpu_devices)
    elif backend == "jax" and distribution == "data_parallel":
        from common.training import parallel

        # The CPU split by the user's own XLA_FLAGS (docs/scaling.md): the same launch pool is needed.
        parallel.fit_launch_threads_to_xla_flags()


@contextmanager
def placed(config: Config) -> Iterator[Placement]:
    """Trains inside: the dtype policy set, and the distribution (or strategy scope) in force;
    both put back afterwards, so a later run in the same process starts clean."""
    distribution, precision, _ = settings(config)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        if distribution == "none":
            yield Placement(1, device_kind(), precision)
        else:
            from common.training import parallel

            with parallel.data_parallel(config.train.batch_size) as (replicas, processes, index):
                yield Placement(replicas, device_kind(), precision, processes, index)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def check_output_dtype(model: keras.Model, precision: str) -> None:
    """Under mixed precision the outputs must be float32 (the loss, the predictions)."""
    if precision == "float32":
        return
    for output in model.outputs:
        if keras.backend.standardize_dtype(output.dtype) != "float32":
            raise UserError(
                f"train.precision = {precision!r}: the model's output is {output.dtype}; build its last "
                "layer with dtype='float32' (as every project here does) so the loss stays in float32"
            )


def batch_multiple(placement: Placement) -> int:
    """The number every batch's size must divide by: JAX splits a batch evenly between its
    devices (TensorFlow's MirroredStrategy copes with any size)."""
    if keras.backend.backend() == "jax" and placement.replicas > 1:
        return placement.replicas
    return 1


def local_model(model_file) -> keras.Model:
    """The saved model loaded into this process alone, outside the cluster's distribution (for
    evaluating and predicting after training on a cluster)."""
    keras.distribution.set_distribution(None)
    return keras.saving.load_model(model_file, compile=False)


def device_kind() -> str:
    """``"cpu"`` or ``"gpu"``/``"tpu"``: the kind of device the backend computes on."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return "cpu"
