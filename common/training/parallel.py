"""Training on several devices at once, and on several processes or machines: what
``train.distribution = "data_parallel"`` and ``train.cpu_devices`` ask for, applied with Keras'
own machinery. A run on one device never imports this module.

- ``distribution = "data_parallel"`` copies the model onto every local device and splits each
  batch between them: ``keras.distribution.DataParallel`` under JAX,
  ``tf.distribute.MirroredStrategy`` under TensorFlow. Keras' PyTorch backend has no
  data-parallel training of its own (``keras.distribution`` is JAX's; torch would need
  ``torchrun`` and DDP outside Keras' ``fit``), so it is refused in one line.
- ``train.batch_size`` stays the *global* batch: with N replicas each device gets batch_size / N
  examples and the learning rate is left as it is, so a run on N devices follows the same
  recipe (same steps per epoch, same updates up to float round-off) as on one. To use N devices
  for a bigger batch, raise ``train.batch_size`` and scale ``train.learning_rate`` with it (the
  linear rule, Goyal et al. 2017) yourself: both are ordinary config keys, recorded with the run.
- ``cpu_devices`` splits the CPU into several logical devices, only so that data-parallel
  training can be tried and tested on a machine without accelerators (TensorFlow: logical CPU
  devices; JAX: ``--xla_force_host_platform_device_count``, which it reads from ``XLA_FLAGS``).
- A cluster (``KERAS_DISTRIBUTION_*`` variables, JAX only) is joined once per process.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import keras

from common.core.errors import UserError

log = logging.getLogger(__name__)

_JAX_DEVICE_COUNT = re.compile(r"--xla_force_host_platform_device_count=(\d+)")

# Keras' own variables for a cluster launch (read by keras.distribution.initialize).
CLUSTER_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)
_joined_cluster = False


def join_cluster() -> None:
    """Joins the processes of a cluster launch (``keras.distribution.initialize``, which reads
    the ``KERAS_DISTRIBUTION_*`` variables), before JAX computes anything."""
    global _joined_cluster
    if _joined_cluster:
        return
    import jax

    # Collectives between processes on CPUs (on GPUs JAX uses NCCL whatever this says).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        keras.distribution.initialize()
    except Exception as error:  # jax.distributed raises several types for a bad address or peer.
        missing = [name for name in CLUSTER_VARIABLES if not os.environ.get(name)]
        hint = f"; set {', '.join(missing)}" if missing else ""
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"could not join the cluster: {first[:300]}{hint}") from None
    _joined_cluster = True


def processes() -> tuple[int, int]:
    if keras.backend.backend() != "jax" or not _joined_cluster:
        return 1, 0
    import jax

    return jax.process_count(), jax.process_index()


@contextmanager
def _jax_data_parallel() -> Iterator[int]:
    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    if processes()[0] > 1:
        # Each process feeds its own share of every batch (common.kit.batches.EpochOrder.shard).
        distribution.auto_shard_dataset = False
    keras.distribution.set_distribution(distribution)
    log.info("data-parallel training on %d devices: %s", len(devices), ", ".join(map(str, devices)))
    try:
        yield len(devices)
    finally:
        keras.distribution.set_distribution(None)


@contextmanager
def _tf_mirrored() -> Iterator[int]:
    import tensorflow as tf

    accelerators = tf.config.list_logical_devices("GPU")
    devices = [device.name for device in accelerators or tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    log.info("data-parallel training on %d devices: %s", len(devices), ", ".join(devices))
    with strategy.scope():
        yield strategy.num_replicas_in_sync


def enough_jax_launch_threads(count: int) -> None:
    """Gives XLA's CPU client a thread pool in which ``count`` devices' collectives cannot deadlock.

    The client launches each device's share of a multi-device program on a pool of
    max(cores, devices) threads, and lets 32 programs queue per device. Python runs ahead of the
    computation, so once 32 steps are queued the next step's launch waits for room *on a pool
    thread*. With as many threads as devices (2 cores, 2 devices) that leaves too few for the
    all-reduce at the head of the queue, which needs every device's share running at once: a
    deadlock, which XLA ends after 40 s by aborting the process ("Termination timeout for all
    reduce"). Seen under load, when the computation falls furthest behind. ``PJRT_NPROC`` sizes
    that pool (read when JAX creates its CPU client); twice the devices leaves one launch thread
    per device besides the collective's. A larger value set by the user is kept.
    """
    wanted = 2 * count
    current = os.environ.get("PJRT_NPROC", "")
    if not (current.isdigit() and int(current) >= wanted):
        os.environ["PJRT_NPROC"] = str(wanted)


def split_cpu(count: int) -> None:
    """Makes the CPU ``count`` logical devices, or says in one line why it cannot."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        current = tf.config.get_logical_device_configuration(cpu)
        if current is not None and len(current) == count:
            return
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError:
            raise UserError(
                f"train.cpu_devices = {count}: TensorFlow's devices were already set up in this process; "
                "run the training in a new process"
            ) from None
    elif backend == "jax":
        import jax

        flags = os.environ.get("XLA_FLAGS", "")
        asked = _JAX_DEVICE_COUNT.search(flags)
        if asked is None or int(asked.group(1)) != count:
            # JAX reads XLA_FLAGS when it first looks for devices, which nothing has done yet in a
            # fresh process; checked below in case something did.
            flags = _JAX_DEVICE_COUNT.sub("", flags).strip()
            os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
        enough_jax_launch_threads(count)
        found = len(jax.devices("cpu"))
        if found != count:
            raise UserError(
                f"train.cpu_devices = {count}: JAX already set up {found} CPU device(s) in this process; "
                f"start Python with XLA_FLAGS=--xla_force_host_platform_device_count={count}"
            )
    else:
        raise UserError(
            f"train.cpu_devices = {count}: the {backend} backend cannot split the CPU into devices; "
            "use KERAS_BACKEND=jax or tensorflow, or train.cpu_devices = 1"
        )


def fit_launch_threads_to_xla_flags() -> None:
    """Under JAX with the CPU split by the user's own ``XLA_FLAGS``, the launch pool that split
    needs (:func:`enough_jax_launch_threads`)."""
    asked = _JAX_DEVICE_COUNT.search(os.environ.get("XLA_FLAGS", ""))
    if asked is not None and int(asked.group(1)) > 1:
        enough_jax_launch_threads(int(asked.group(1)))


@contextmanager
def data_parallel(batch_size: int) -> Iterator[tuple[int, int, int]]:
    """Trains inside on every local device: yields ``(replicas, processes, process_index)``."""
    if keras.backend.backend() == "jax":
        with _jax_data_parallel() as replicas:
            if batch_size % replicas:
                raise UserError(
                    f"train.batch_size = {batch_size} does not split evenly between {replicas} devices; "
                    f"choose a multiple of {replicas}"
                )
            yield (replicas, *processes())
    else:
        with _tf_mirrored() as replicas:
            yield replicas, 1, 0
