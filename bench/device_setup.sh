# Sourced (not run) by the scripts that run on a GPU machine, bench/device.sh and bench/fer_gpu.sh,
# from the repository root: that machine reaches no package index and holds JAX but not Keras, so
# what `bash bench/device_prepare.sh` put in .whl/ (Keras and the few packages the training imports
# that its image lacks) is installed into a private folder and put on PYTHONPATH after the
# repository. Sets PY (the interpreter); returns 2 with one line on stderr when Keras is missing.
#
# Environment: PYTHON (the interpreter, default python3), DEVICE_WHEELS (default .whl),
# DEVICE_SITE (default /tmp/site).

PY=${PYTHON:-python3}
WHEELS=${DEVICE_WHEELS:-.whl}
SITE=${DEVICE_SITE:-/tmp/site}

shopt -s nullglob
wheels=("$WHEELS"/*.whl)
shopt -u nullglob
if ((${#wheels[@]})); then
    echo "installing ${#wheels[@]} wheels from $WHEELS/ into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "${wheels[@]}" || { echo "error: could not install $WHEELS/*.whl into $SITE with $PY" >&2; return 2; }
    export PYTHONPATH=$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('keras') is None)"; then
    echo "error: $PY has no Keras and $WHEELS/ holds no wheels: run \`bash bench/device_prepare.sh\`" \
        "where pip works, and copy .whl/ and .device-data/ to this machine with the repository" >&2
    return 2
fi
