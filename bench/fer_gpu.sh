#!/usr/bin/env bash
# The FER2013 recipe on a GPU in one command (docs/scaling.md, "On a GPU"), from the repository root:
#
#     bash bench/fer_gpu.sh [--budget 480] [--members 3] [--epochs 40] [--student-epochs 40] [--tiny] ...
#
# On a GPU machine that reaches no package index and holds JAX but not Keras, with .whl/ and
# .device-data/fer2013.tar.gz made by `bash bench/device_prepare.sh --fer2013` beside the
# repository: installs the wheels into a private folder (bench/device_setup.sh), trains under JAX
# where it imports, and hands over to `python -m bench.fer_gpu --write`, which trains members of
# projects/emojify/wide.toml with different seeds, their ensemble and a student distilled from it
# through the template's own commands within --budget seconds, and writes the test accuracies
# beside the majority-class baseline to bench/results/fer-gpu.md and $OUT/fer-gpu.md (only $OUT
# comes back from a remote GPU machine), with $OUT/fer-gpu.log.
#
# Every argument goes to bench.fer_gpu (`python -m bench.fer_gpu --help`). --tiny runs it all on
# any CPU in about a minute (tiny network, 20 faces of each emotion, one epoch; results in
# bench/out/fer-gpu-tiny.md). Without a GPU and without --tiny it writes nothing and says so.
# Environment: PYTHON (default python3), DEVICE_WHEELS (default .whl), DEVICE_SITE (default /tmp/site).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

export PYTHONUNBUFFERED=1
export FER_GPU_COMMAND="bash bench/fer_gpu.sh${*:+ $*}"
# shellcheck source=bench/device_setup.sh
source bench/device_setup.sh || exit 2

# JAX is the GPU machine's backend; elsewhere (no JAX) Keras' configured backend trains.
if [ -z "${KERAS_BACKEND:-}" ] && "$PY" -c "import jax" >/dev/null 2>&1; then
    export KERAS_BACKEND=jax
fi

exec "$PY" -m bench.fer_gpu --write "$@"
