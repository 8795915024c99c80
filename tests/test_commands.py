"""Commands the template prints for the user to run next run as printed, whether the user
started with ``python -m common`` or through ``make``; and ``make`` with a mistyped project
names the projects rather than saying it has no rule."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.core import commands, runs
from tests.conftest import ROOT, ctrl_c_after_epoch
from tests.test_registry_and_runs import TOY, toy_project  # noqa: F401

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def test_the_python_is_named_as_the_user_can_type_it(tmp_path, monkeypatch):
    # A virtual environment that is not active: its python is named by its path, relative to
    # the current folder when inside it; `python` would find another interpreter.
    venv = tmp_path / "project" / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text("")
    (venv / "python").chmod(0o755)
    elsewhere = tmp_path / "system"
    elsewhere.mkdir()
    (elsewhere / "python").write_text("")
    (elsewhere / "python").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(venv / "python"))
    monkeypatch.setenv("PATH", str(elsewhere))
    monkeypatch.chdir(tmp_path / "project")
    assert commands.python_command() == ".venv/bin/python"
    monkeypatch.chdir(tmp_path)
    assert commands.python_command() == "project/.venv/bin/python"
    monkeypatch.chdir(elsewhere)
    assert commands.python_command() == str(venv / "python")
    # Activated, `python` is this interpreter.
    monkeypatch.setenv("PATH", f"{venv}{os.pathsep}{elsewhere}")
    assert commands.python_command() == "python"


def test_a_command_is_given_back_through_the_make_target_that_started_it(monkeypatch):
    monkeypatch.setenv(commands.MAKE_TARGET, "train-mnist")
    assert commands.command_line("train", "mnist", ["--resume", "models/mnist/run"]) == (
        'make train-mnist ARGS="--resume models/mnist/run"'
    )
    # A folder with a space and a quote: the shell hands make ARGS, and make's recipe the arguments.
    awkward = ["--resume", "/a b/it's"]
    make, target, args = shlex.split(commands.command_line("train", "mnist", awkward))
    assert (make, target) == ("make", "train-mnist") and shlex.split(args.removeprefix("ARGS=")) == awkward
    assert commands.command_line("train", "mnist", []) == "make train-mnist"
    # Another verb (tune has no make target) names the Python.
    assert commands.command_line("tune", "mnist", ["--name", "a"]).endswith(" -m common tune mnist --name a")
    monkeypatch.delenv(commands.MAKE_TARGET)
    assert commands.command_line("train", "mnist", ["--resume", "x"]) == (
        f"{shlex.quote(commands.python_command())} -m common train mnist --resume x"
    )


def outside_make() -> dict[str, str]:
    """The environment without what a make that runs this test (`make test`) hands its children:
    the make these tests start must behave as one a user types (no "make[1]: Entering directory"
    lines, no jobserver of the outer make)."""
    return {key: value for key, value in os.environ.items() if key not in MAKE_VARIABLES}


MAKE_VARIABLES = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR")


def fake_venv(folder: Path) -> Path:
    """A stand-in for .venv that make takes as installed: its python is this test's own."""
    (folder / "bin").mkdir(parents=True)
    python = folder / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    (folder / ".installed").touch()
    return folder


@needs_make
def test_the_printed_make_command_passes_the_run_to_train_as_printed(tmp_path, monkeypatch):
    monkeypatch.setenv(commands.MAKE_TARGET, "train-mnist")
    run_dir = tmp_path / "a folder" / "20260101-120000"
    printed = commands.command_line("train", "mnist", ["--resume", str(run_dir)])
    venv = fake_venv(tmp_path / "venv")
    # make -n shows the command the target runs, without running it.
    dry = subprocess.run(
        [*shlex.split(printed), f"VENV={venv}", "-n"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=outside_make(),
    )
    assert dry.returncode == 0, dry.stderr
    line = dry.stdout.strip().splitlines()[-1]
    assert shlex.split(line) == [
        "COMMON_MAKE_TARGET=train-mnist",
        f"{venv}/bin/python",
        "-m",
        "common",
        "train",
        "mnist",
        "--resume",
        str(run_dir),
    ]


def test_ctrl_c_under_make_prints_the_make_command(toy_project, models_dir, cli, monkeypatch):  # noqa: F811
    monkeypatch.setenv(commands.MAKE_TARGET, f"train-{TOY}")
    with ctrl_c_after_epoch(0):
        result = cli("train", TOY, "--name", "cut", "--set", "train.epochs=2")
    [cut] = [path for path in (models_dir / TOY).iterdir() if path.name.endswith("-cut")]
    assert runs.run_state(cut) == runs.INTERRUPTED
    assert result.code == 2 and result.stderr.strip().splitlines()[-1] == (
        f"error: training interrupted; 'latest' is unchanged. Continue with: make train-{TOY} "
        f'ARGS="--resume {cut}"'
    )
    # Without make, the Python that ran it: here this test's own, by its path.
    monkeypatch.delenv(commands.MAKE_TARGET)
    monkeypatch.setenv("PATH", "")
    with ctrl_c_after_epoch(0):
        again = cli("train", TOY, "--name", "cut2", "--set", "train.epochs=2")
    [cut2] = [path for path in (models_dir / TOY).iterdir() if path.name.endswith("-cut2")]
    command = shlex.split(again.stderr.strip().splitlines()[-1].split("Continue with: ")[1])
    assert Path(command[0]).absolute() == Path(sys.executable).absolute()
    assert command[1:] == ["-m", "common", "train", TOY, "--resume", str(cut2)]


@needs_make
@pytest.mark.parametrize("verb", ["train", "evaluate", "export", "demo"])
def test_make_with_a_mistyped_project_names_the_closest(verb, tmp_path):
    venv = fake_venv(tmp_path / "venv")
    made = subprocess.run(
        ["make", f"{verb}-mnsit", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=outside_make(),
    )
    assert made.returncode != 0 and made.stdout == ""
    [line] = made.stderr.strip().splitlines()
    assert "error: unknown project 'mnsit' (did you mean 'mnist'?); available projects: " in line
    assert line.endswith(f"(make {verb}-<project>).  Stop.")


@needs_make
def test_make_with_a_mistyped_project_before_install_installs_nothing(tmp_path):
    venv = tmp_path / "venv"  # not there: make would create it for a real target
    made = subprocess.run(
        ["make", "train-mnsit", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=outside_make(),
    )
    assert made.returncode != 0 and not venv.exists()
    [line] = made.stderr.strip().splitlines()
    assert "error: unknown project 'mnsit'; available projects: " in line
    assert "mnist" in line.split("available projects: ")[1].split()
