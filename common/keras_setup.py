"""Imports Keras once, without the start-up lines its backend's C++ code prints on some CPUs.

On CPUs where TensorFlow turns oneDNN on by default (AVX-512, AVX-VNNI, AMX), importing it writes
``WARNING: All log messages before absl::InitializeLog() ...`` and ``I0000 ... port.cc:153]
oneDNN custom operations are on ...`` straight to file descriptor 2, twice, and
``TF_CPP_MIN_LOG_LEVEL`` does not stop them (TensorFlow 2.21). On other CPUs it prints nothing.
So the command line would print something different on every machine. The entry points (the
command line, the tests, the benchmarks) call :func:`quiet_keras_import` once, first; the modules
then ``import keras`` plainly, and the first of those imports, wherever it happens, points
descriptor 2 at a temporary file while Keras loads and then replays every captured line that is
not one of those informational start-up lines: errors still reach the user. Keras is imported only
when a module needs it, so ``list``, ``--help`` and a demo's "no display" stay instant. oneDNN
stays on; it is the fast path.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.core.project import Project

# Keep TensorFlow's own (Python-visible) C++ logging to warnings and errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Start-up lines that say nothing a user can act on: absl's notice, and informational or warning
# lines of the C++ logger ("I0000 00:00:1795776361.521893    2251 port.cc:153] ...": absl writes
# the whole epoch time as seconds before InitializeLog; older builds print a date), plus the
# two-line CPU-feature notice. Error (E) and fatal (F) lines are never dropped.
_START_UP_NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-]+:\d+\] .*"
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] [\w/.\-]+:\d+\] .*"
    rb"|To enable the following instructions: .* in other operations, rebuild TensorFlow .*"
)


def is_start_up_noise(line: bytes) -> bool:
    """Whether one line written to stderr is a backend's informational start-up line."""
    return _START_UP_NOISE.fullmatch(line.rstrip(b"\r\n")) is not None


@contextmanager
def start_up_noise_filtered() -> Iterator[None]:
    """Captures what anything (C++ included) writes to descriptor 2 inside the block, then writes
    back every line that is not start-up noise, in order."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = b"".join(line for line in capture.read().splitlines(True) if not is_start_up_noise(line))
            if kept:
                os.write(2, kept)


def quiet_keras_import() -> None:
    """Makes the process's first ``import keras``, wherever it happens, quiet (see the module's
    docstring); imports nothing now. Once per process is enough; a second call, or a call after
    Keras was imported, does nothing."""
    if "keras" not in sys.modules and not any(isinstance(f, _QuietKerasImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietKerasImport())


class _QuietKerasImport(importlib.abc.MetaPathFinder):
    """Finds ``keras`` as the other finders do, once, and has it loaded inside the filter."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "keras":
            return None
        try:
            sys.meta_path.remove(self)  # Only the first import; and the search below must not find us.
        except ValueError:
            pass
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """Keras' own loader, run with descriptor 2 filtered.

    Under JAX or PyTorch, Keras still imports TensorFlow when it is installed, later and on its
    own (``keras.utils.set_random_seed`` seeds it too; ``tf.data`` inputs use it), so it is
    imported here, inside the same filter, where its start-up lines are dropped."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with start_up_noise_filtered():
            self.loader.exec_module(module)
            if module.backend.backend() != "tensorflow" and importlib.util.find_spec("tensorflow"):
                import tensorflow  # noqa: F401

    def __getattr__(self, name: str) -> Any:
        # Whatever else is asked of Keras' loader (its resources, its source) is its own answer.
        return getattr(self.loader, name)


def use_project_objects(project: Project) -> None:
    """Makes the project's own classes and functions known to Keras before one of its models is
    loaded: its model, compile-options and callbacks modules are imported (a class registered
    with ``@keras.saving.register_keras_serializable`` registers itself), and its declared
    ``custom_objects`` are added to Keras' global custom objects, as registering would. Every
    loader of the process (``--resume``'s checkpoints, a teacher, an ensemble's members) then
    finds them."""
    objects = project.keras_objects()
    if objects:
        import keras

        keras.saving.get_custom_objects().update(objects)
