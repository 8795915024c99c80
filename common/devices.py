"""Where and in what precision a run trains: ``train.distribution``, ``train.precision`` and
``train.cpu_devices``, applied with Keras' own machinery.

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
- ``precision`` is Keras' dtype policy (``keras.mixed_precision``): ``mixed_float16`` or
  ``mixed_bfloat16`` compute in 16 bits and keep the weights in float32; every project's output
  layer is built with ``dtype="float32"`` so the loss and the predictions stay in float32.
  A GPU setting: on a CPU it is slower (bf16 ran at 0.75x float32 for a small CNN here).
- ``cpu_devices`` splits the CPU into several logical devices, only so that data-parallel
  training can be tried and tested on a machine without accelerators (TensorFlow: logical CPU
  devices; JAX: ``--xla_force_host_platform_device_count``, which it reads from ``XLA_FLAGS``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.backend import import_keras
from common.config import Config
from common.errors import UserError

if TYPE_CHECKING:
    import keras
else:
    keras = import_keras()

log = logging.getLogger(__name__)

_JAX_DEVICE_COUNT = re.compile(r"--xla_force_host_platform_device_count=(\d+)")


@dataclass(frozen=True)
class Placement:
    """What a run trains on, recorded in ``metrics.json``. ``processes`` > 1 on a cluster, where
    this process is number ``process_index`` (0 is the chief)."""

    replicas: int
    device: str
    precision: str
    processes: int = 1
    process_index: int = 0


# Keras' own variables for a cluster launch (read by keras.distribution.initialize).
CLUSTER_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)
_joined_cluster = False


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
    are checked with the rest of the config, :func:`common.config.validate`); the CPU split
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
        _join_cluster()
    if cpu_devices > 1:
        # Before anything (even making an optimizer to check its options) sets the devices up.
        _split_cpu(cpu_devices)
    elif backend == "jax" and distribution == "data_parallel":
        # The CPU split by the user's own XLA_FLAGS (docs/scaling.md): the same launch pool is needed.
        asked = _JAX_DEVICE_COUNT.search(os.environ.get("XLA_FLAGS", ""))
        if asked is not None and int(asked.group(1)) > 1:
            _enough_jax_launch_threads(int(asked.group(1)))


@contextmanager
def placed(config: Config) -> Iterator[Placement]:
    """Trains inside: the dtype policy set, and the distribution (or strategy scope) in force;
    both put back afterwards, so a later run in the same process starts clean."""
    distribution, precision, _ = settings(config)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        if distribution == "none":
            yield Placement(1, _device_kind(), precision)
        elif keras.backend.backend() == "jax":
            with _jax_data_parallel() as replicas:
                if config.train.batch_size % replicas:
                    raise UserError(
                        f"train.batch_size = {config.train.batch_size} does not split evenly between "
                        f"{replicas} devices; choose a multiple of {replicas}"
                    )
                yield Placement(replicas, _device_kind(), precision, *_processes())
        else:
            with _tf_mirrored() as replicas:
                yield Placement(replicas, _device_kind(), precision)
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


def _join_cluster() -> None:
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


def _processes() -> tuple[int, int]:
    if keras.backend.backend() != "jax" or not _joined_cluster:
        return 1, 0
    import jax

    return jax.process_count(), jax.process_index()


@contextmanager
def _jax_data_parallel() -> Iterator[int]:
    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    if _processes()[0] > 1:
        # Each process feeds its own share of every batch (common.batches.EpochOrder.shard).
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


def _enough_jax_launch_threads(count: int) -> None:
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


def _split_cpu(count: int) -> None:
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
        _enough_jax_launch_threads(count)
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


def _device_kind() -> str:
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
