#!/usr/bin/env bash
# The GPU benchmark in one command, on a GPU machine (docs/scaling.md, "On a GPU"), from the repository root:
#
#     bash bench/device.sh [--budget 420] [--epochs 3] [--projects mnist,emojify] [--dry-run] ...
#
# That machine reaches no package index and holds JAX and PyTorch but neither Keras nor
# TensorFlow. So this script installs what `bash bench/device_prepare.sh` put in .whl/ (Keras and
# the few packages the training imports that the image lacks) into /tmp/site, uses TensorFlow only
# where `import tensorflow` works (otherwise one line says it was skipped and why), and hands over
# to `python -m bench.device --write`, which trains each project for a few epochs through the
# template and through a plain `model.fit`, then data-parallel, and writes bench/results/gpu.md and
# $OUT/gpu.md (only $OUT comes back). The data comes from .device-data/ (device_prepare.sh too).
#
# Every argument goes to bench.device (`python -m bench.device --help`). Environment: PYTHON (the
# interpreter, default python3), DEVICE_WHEELS (default .whl), DEVICE_SITE (default /tmp/site).
# Without a GPU it writes nothing and says so; --dry-run checks the logic on any machine (tiny
# models, results in bench/out/gpu-dry-run.md).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

export PYTHONUNBUFFERED=1
export DEVICE_SH_COMMAND="bash bench/device.sh${*:+ $*}"
# shellcheck source=bench/device_setup.sh
source bench/device_setup.sh || exit 2

# JAX is this machine's backend; TensorFlow only if it imports (its GPU build is not on the image).
backends=jax
notes=()
if tf_error=$("$PY" -c "import tensorflow" 2>&1 >/dev/null); then
    backends=jax,tensorflow
else
    reason=$(printf '%s\n' "$tf_error" | grep -v '^[[:space:]]*$' | tail -n 1)
    line="TensorFlow skipped: 'import tensorflow' fails here (${reason:-no message}); JAX is measured alone"
    echo "$line"
    notes+=(--note "$line")
fi
# bench.device imports Keras itself: under JAX, which needs no TensorFlow (the workers choose their own).
export KERAS_BACKEND=${KERAS_BACKEND:-jax}

exec "$PY" -m bench.device --write --backends "$backends" ${notes[@]+"${notes[@]}"} "$@"
