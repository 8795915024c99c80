"""Shared fixtures: isolated run folders, the CLI in-process and as a real subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.keras_setup import quiet_keras_import

# As on the command line: the first import of Keras, by whichever test or module, drops the
# backend's start-up lines.
quiet_keras_import()

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def pytest_configure(config):
    """No test reads or writes the user's own runs in models/: until a test's own folder is set
    (below), run folders go to an empty temporary folder, so fixtures that load models for a whole
    module see the shipped models only, whatever the user has trained."""
    os.environ["MODELS_DIR"] = config._empty_models_dir = tempfile.mkdtemp(prefix="no-user-runs-")


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "_empty_models_dir", ""), ignore_errors=True)


@pytest.fixture(autouse=True)
def models_dir(tmp_path, monkeypatch) -> Path:
    """Every test's run folders go to its own temporary folder, never to the repository's models/
    (and never to another test's: no test sees what an earlier one trained)."""
    folder = tmp_path / "models"
    monkeypatch.setenv("MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def cli(capsys):
    """Runs ``python -m common ...`` in this process (fast: Keras is imported once)."""
    from common.__main__ import main

    def run(*args: str) -> CliResult:
        code = main(["-q", *map(str, args)])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_subprocess(*args: str, env: dict | None = None, timeout: float = 120) -> CliResult:
    """Runs ``python -m common ...`` as a user would, to see exactly what reaches the terminal."""
    completed = subprocess.run(
        [sys.executable, "-m", "common", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def assert_one_line_error(result: CliResult, *fragments: str) -> None:
    """A bad input must give exit code 2 and one ``error:`` line naming the problem, no traceback."""
    assert result.code == 2, result
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment.lower() in error_lines[0].lower(), error_lines[0]


# A process that takes a run's lock, says so, and holds it until killed.
_HOLD_THE_LOCK = """
import sys, time
from pathlib import Path
from common.core import runs
with runs.RunLock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(300)
"""


@contextmanager
def another_process_training(run_dir: Path) -> Iterator[subprocess.Popen]:
    """Inside the block, another process holds ``run_dir``'s lock as a trainer does; it is killed
    at the end (leaving its ``.lock`` file behind, as a killed trainer does)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_LOCK, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


@pytest.fixture(scope="session")
def xvfb_display():
    """Starts a virtual screen for Tk tests and points DISPLAY at it."""
    import shutil

    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    # -displayfd lets Xvfb pick a free display, so parallel test runs never share (or kill) one.
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end) as announced:
        number = announced.readline().strip()
    if not number:
        server.kill()
        pytest.skip("Xvfb did not start")
    display = f":{number}"
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display
    yield display
    server.terminate()
    server.wait()
    if previous is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = previous


@pytest.fixture
def saved_figures(monkeypatch) -> dict:
    """Every matplotlib figure saved during a test, by file name, to read its titles and data."""
    from matplotlib.figure import Figure

    saved: dict = {}
    original = Figure.savefig

    def record(figure, path, *args, **kwargs):
        saved[Path(path).name] = figure
        return original(figure, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return saved


def figure_text(figure) -> str:
    """All titles of a figure (its own and its axes'), one string, to search."""
    titles = [figure._suptitle.get_text()] if figure._suptitle is not None else []
    titles += [axis.get_title() for axis in figure.axes]
    return "\n".join(titles)


def says(figure, fragment: str) -> bool:
    """Whether the figure's titles hold ``fragment``, wherever they were wrapped (a long title
    is broken at spaces, and a path longer than a line inside the path)."""
    return "".join(fragment.split()) in "".join(figure_text(figure).split())


@contextmanager
def ctrl_c_after_epoch(epoch: int) -> Iterator[None]:
    """Inside the block, a training is interrupted (KeyboardInterrupt, as Ctrl-C) right after
    epoch ``epoch`` (0-based) was committed to its run folder."""
    from common.training import checkpoints

    commit = checkpoints.RunRecorder.on_epoch_end

    def commit_then_interrupt(self, done, logs=None):
        commit(self, done, logs)
        if done == epoch:
            raise KeyboardInterrupt

    checkpoints.RunRecorder.on_epoch_end = commit_then_interrupt
    try:
        yield
    finally:
        checkpoints.RunRecorder.on_epoch_end = commit


def brightness_model(side: int, classes: int):
    """A real Keras model that reads a ``side`` x ``side`` image whose pixels average ``v`` as
    class ``v``: the logit of class k is 20 k v - 10 k^2, largest at k = v (a mirrored image reads
    the same)."""
    import keras
    import numpy as np

    model = keras.Sequential(
        [
            keras.Input(shape=(side, side, 1)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )
    ks = np.arange(classes, dtype="float32")
    model.set_weights([20 * ks[None, :], -10 * ks**2])
    return model
