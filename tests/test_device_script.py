"""The GPU benchmark's script, checked without a GPU: ``bench/device.sh`` (what it installs and
which backends it hands over), ``bench/device_prepare.sh`` (the wheels cover what the training
imports), and ``bench/device.py`` (one line without a GPU, its measurements and its report)."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from bench import RESULTS_DIR, device
from common.core import registry
from common.training import steps
from tests.conftest import ROOT

SCRIPT = ROOT / "bench" / "device.sh"
PREPARE = ROOT / "bench" / "device_prepare.sh"
TINY_STOCK = ["data.window=10", "model.units=[4]", "train.batch_size=32"]

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def results_snapshot() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(RESULTS_DIR.iterdir()) if path.is_file()}


# --- bench/device_prepare.sh: the wheels cover the training's imports ---------------------------


def prepare_lists() -> dict[str, set[str]]:
    """CARRIED, ON_IMAGE and NOT_CARRIED as the prepare script declares them."""
    text = PREPARE.read_text()
    lists = {}
    for name in ("CARRIED", "ON_IMAGE", "NOT_CARRIED"):
        found = re.search(rf"^{name}=\((.*?)\)", text, re.MULTILINE | re.DOTALL)
        assert found, f"{name}=(...) not found in {PREPARE.name}"
        lists[name] = {normalise(word) for word in found.group(1).split()}
    return lists


def normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _module_file(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                prefix = f"{base}.{node.module}" if node.module else base
            elif node.module == "__future__":
                continue
            else:
                prefix = node.module
            found.add(prefix)
            found |= {f"{prefix}.{alias.name}" for alias in node.names}
    return found


def train_path_imports() -> set[str]:
    """The top-level names of every non-standard module that ``python -m common train`` can
    import: read from the source, from the CLI's own imports, ``common.training.steps`` and each
    project's modules that training uses, through every ``common``/``projects`` module they
    import, anywhere in those modules (imports inside functions too)."""
    first_party = ("common", "projects")
    todo = [("common.__main__", True), ("common.training.steps", False)]
    for name in registry.project_names():
        for part in ("", ".settings", ".data", ".model", ".evaluate", ".augment"):
            todo.append((f"projects.{name}{part}", False))
    seen: set[str] = set()
    third_party: set[str] = set()
    while todo:
        module, top_level_only = todo.pop()
        if module in seen:
            continue
        path = _module_file(module)
        if path is None:
            continue  # A name imported from a module, or a project without that module.
        seen.add(module)
        for imported in _imports(path, module, top_level_only):
            top = imported.split(".")[0]
            if top in first_party:
                parts = imported.split(".")
                todo += [(".".join(parts[:end]), False) for end in range(1, len(parts) + 1)]
            elif top not in sys.stdlib_module_names:
                third_party.add(top)
    assert {"common.training.steps", "projects.mnist.data", "common.training.devices"} <= seen
    return third_party


def test_the_wheels_cover_every_third_party_import_of_the_training() -> None:
    lists = prepare_lists()
    declared = lists["CARRIED"] | lists["ON_IMAGE"] | lists["NOT_CARRIED"]
    providers = importlib.metadata.packages_distributions()
    imports = train_path_imports()
    assert {"keras", "numpy", "pandas", "tomli_w", "cv2"} <= imports  # The scan sees them.
    uncovered = {}
    for name in sorted(imports):
        distributions = {normalise(distribution) for distribution in providers.get(name, [])}
        if not distributions and normalise(name) in declared:
            continue  # An optional backend (jax, torch) that `make test-scaling` installs; declared.
        assert distributions, f"{name} is imported on the training path but not installed here"
        if not distributions & declared:
            uncovered[name] = sorted(distributions)
    assert not uncovered, (
        f"imported on the training path, and in none of bench/device_prepare.sh's lists: {uncovered}; "
        "add each to CARRIED (a wheel in .whl/) or, if the GPU machine's image has it, ON_IMAGE"
    )


def test_each_carried_wheel_finds_what_it_needs_there() -> None:
    """The wheels are installed with --no-deps: what each one needs is carried too or on the image."""
    lists = prepare_lists()
    available = lists["CARRIED"] | lists["ON_IMAGE"]
    there = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux"}
    there |= {"platform_system": "Linux", "platform_machine": "x86_64", "extra": ""}
    for distribution in sorted(lists["CARRIED"]):
        for line in importlib.metadata.requires(distribution) or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(there):
                continue
            assert normalise(requirement.name) in available, f"{distribution} needs {requirement.name}"


@needs_bash
def test_the_scripts_are_valid_bash() -> None:
    for script in (SCRIPT, PREPARE):
        checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


# --- bench/device.sh: what it installs, and TensorFlow only where it imports ---------------------


def fake_python(folder: Path, tensorflow: bool) -> Path:
    """A ``python`` for the script: real for its Keras check, ``import tensorflow`` failing (or
    not), and ``pip`` and ``bench.device`` only printing how they were called and with what path."""
    tensorflow_probe = (
        "exit 0" if tensorflow else "echo \"ModuleNotFoundError: No module named 'tensorflow'\" >&2; exit 1"
    )
    wrapper = folder / "python"
    wrapper.write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1" = -c ] && [ "$2" = "import tensorflow" ]; then {tensorflow_probe}; fi\n'
        'if [ "$1" = -m ] && [ "$2" = pip ]; then echo "PIP: ${*:3}"; exit 0; fi\n'
        'if [ "$1" = -m ] && [ "$2" = bench.device ]; then\n'
        '    printf "DEVICE:"; printf " [%s]" "${@:3}"; echo; echo "PYTHONPATH=$PYTHONPATH"\n'
        '    echo "KERAS_BACKEND=$KERAS_BACKEND"; exit 0\n'
        "fi\n"
        f'exec {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def run_script(tmp_path: Path, *args: str, tensorflow: bool, wheels: Path | None = None):
    env = {
        **os.environ,
        "PYTHON": str(fake_python(tmp_path, tensorflow)),
        "DEVICE_WHEELS": str(wheels or tmp_path / "no-wheels"),
        "DEVICE_SITE": str(tmp_path / "site"),
    }
    env.pop("KERAS_BACKEND", None)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60
    )


@needs_bash
def test_without_tensorflow_one_line_says_so_and_only_jax_is_measured(tmp_path: Path) -> None:
    completed = run_script(tmp_path, "--budget", "400", tensorflow=False)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    skipped = [line for line in lines if "TensorFlow" in line and not line.startswith("DEVICE:")]
    assert skipped == [
        "TensorFlow skipped: 'import tensorflow' fails here (ModuleNotFoundError: No module named "
        "'tensorflow'); JAX is measured alone"
    ]
    [handed] = [line for line in lines if line.startswith("DEVICE:")]
    assert handed == f"DEVICE: [--write] [--backends] [jax] [--note] [{skipped[0]}] [--budget] [400]"
    assert "KERAS_BACKEND=jax" in lines  # bench.device's own Keras import needs no TensorFlow.
    assert not any(line.startswith("PIP:") for line in lines)  # No wheels, nothing installed.


@needs_bash
def test_with_tensorflow_both_backends_and_the_wheels_installed_offline(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "keras-3.15.1-py3-none-any.whl").touch()
    completed = run_script(tmp_path, "--dry-run", tensorflow=True, wheels=wheels)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert not any("skipped" in line for line in lines)
    [pip] = [line for line in lines if line.startswith("PIP:")]
    site = tmp_path / "site"
    assert pip.startswith("PIP: install -q --no-index --no-deps") and f"--target {site}" in pip
    assert pip.endswith(f"{wheels}/keras-3.15.1-py3-none-any.whl")
    assert "DEVICE: [--write] [--backends] [jax,tensorflow] [--dry-run]" in lines
    [path] = [line for line in lines if line.startswith("PYTHONPATH=")]
    assert path.startswith(f"PYTHONPATH={ROOT}:{site}")  # The repository, then the wheels.


# --- bench/device.py ----------------------------------------------------------------------------


def test_without_a_gpu_make_bench_gets_one_line_and_nothing_written(monkeypatch, capsys) -> None:
    """``make bench`` runs every bench module with --write: on a CPU this one passes over itself."""
    monkeypatch.setattr(device, "nvidia_gpus", lambda: [])
    before = results_snapshot()
    assert device.main(["--write"]) == 0
    printed = capsys.readouterr()
    assert len(printed.out.splitlines()) == 1 and "no GPU here" in printed.out and "--dry-run" in printed.out
    assert printed.err == ""
    assert results_snapshot() == before and not device.RESULTS.exists()


def test_missing_data_is_one_line_saying_how_to_prepare_it(tmp_path: Path) -> None:
    with pytest.raises(device.UserError, match="bench/device_prepare.sh"):
        device.check_data(["mnist"], tmp_path)


def test_the_plan_trains_each_project_three_ways_per_backend(tmp_path: Path) -> None:
    options = device.argparse.Namespace(
        backends=["jax", "torch"], projects=["mnist", "stock"], data=tmp_path, epochs=3, dry_run=False
    )
    entries = device.plan(options)
    assert [(e["backend"], e["project"], e["kind"]) for e in entries] == [
        ("jax", "mnist", "plain"),
        ("jax", "mnist", "template"),
        ("jax", "stock", "plain"),
        ("jax", "stock", "template"),
        ("jax", "mnist", "data_parallel"),  # Last: the first to go when the budget runs short.
        ("jax", "stock", "data_parallel"),
        ("torch", "mnist", "plain"),  # Keras has no data-parallel training under PyTorch.
        ("torch", "mnist", "template"),
        ("torch", "stock", "plain"),
        ("torch", "stock", "template"),
    ]
    assert f"data.path={tmp_path / 'mnist' / 'mnist.npz'}" in entries[0]["settings"]
    assert "train.epochs=3" in entries[0]["settings"]
    command = device.template_command(entries[4])
    assert command.startswith("KERAS_BACKEND=jax python -m common train mnist --set train.epochs=3")
    assert command.endswith("--set train.distribution=data_parallel")


def row(kind: str, seconds: list[float], **extra) -> dict:
    return {
        "backend": "jax",
        "project": "mnist",
        "kind": kind,
        "n_train": 1000,
        "epoch_seconds": seconds,
        "device": "gpu",
        "replicas": 1,
        "device_name": "NVIDIA H100 80GB HBM3 (gpu)",
        **extra,
    }


def table_rows(lines: list[str]) -> list[list[str]]:
    rows = [line for line in lines if line.startswith("| ")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip("|"))] for line in rows]


def meta(**changes) -> dict:
    return {
        "dry_run": False,
        "command": "bash bench/device.sh",
        "date": "2026-11-27 12:00",
        "gpus": ["NVIDIA H100 80GB HBM3, 81559 MiB, driver 580.159.04"],
        "versions": "Python 3.12.3, Keras 3.15.1, JAX 0.11.2",
        "cpus": 16,
        "epochs": 3,
        "data": ".device-data",
        "notes": ["TensorFlow skipped: ..."],
        "commands": ["KERAS_BACKEND=jax python -m common train mnist --set train.epochs=3"],
        **changes,
    }


def test_the_report_is_one_table_row_per_run_with_the_speed_beside_plain() -> None:
    rows = [
        row("plain", [9.0, 1.0, 1.0]),
        row("template", [10.0, 1.25, 1.25]),
        {"backend": "jax", "project": "mnist", "kind": "data_parallel", "error": "error: out of | memory"},
        {
            "backend": "jax",
            "project": "stock",
            "kind": "plain",
            "error": "stopped after 9 s",
            "stopped": True,
        },
    ]
    lines = device.render(rows, meta())
    header, plain, template, failed, stopped = table_rows(lines)
    assert len(header) == 10 and all(len(cells) == 10 for cells in (plain, template, failed, stopped))
    assert stopped[1:4] == ["stock (windows)", "plain `model.fit`", "not finished: stopped after 9 s"]
    assert plain[:6] == ["jax", "mnist (images)", "plain `model.fit`", "gpu (1)", "1,000", "3"]
    assert plain[6:] == ["9.00", "1.00", "**1,000**", ""]
    assert template[2] == "template (`python -m common train`)" and template[8:] == ["**800**", "0.80"]
    assert failed[3] == "failed: error: out of \\| memory"
    text = "\n".join(lines)
    assert "- TensorFlow skipped: ..." in text and "NVIDIA H100 80GB HBM3 (gpu)" in text
    assert "`KERAS_BACKEND=jax python -m common train mnist --set train.epochs=3`" in text
    assert "DRY RUN" not in text and "DRY RUN" in device.render(rows, meta(dry_run=True))[0]
    assert "Computed on the CPU" not in text
    on_cpu = "\n".join(device.render([row("plain", [2.0, 1.0], device="cpu")], meta()))
    assert "**Computed on the CPU** under jax although nvidia-smi lists a GPU" in on_cpu


@pytest.fixture
def tiny_stock(tmp_path) -> list[str]:
    csv = device.write_tiny_data(tmp_path / "data", ("stock",)) / device.DATA_FILES["stock"]
    return ["train.epochs=2", *device.COMMON_SETTINGS, f"data.path={csv}", *TINY_STOCK]


def test_a_plain_measurement_times_each_epoch_and_makes_its_row(tiny_stock, models_dir) -> None:
    """Stock, tiny, 2 epochs, in this process under this backend."""
    plain = device.measure("plain", "stock", tiny_stock)
    assert plain["n_train"] == 222 and len(plain["epoch_seconds"]) == 2
    assert plain["replicas"] == 1 and plain["device"] == "cpu" and device.speed(plain) > 0
    assert not models_dir.exists()  # A plain fit writes no run folder.
    [_, plain_row] = table_rows(device.render([plain], meta(dry_run=True)))
    assert plain_row[1:5] == ["stock (windows)", "plain `model.fit`", "cpu (1)", "222"]
    # The template's epochs are timed by a callback added where the workflow makes its own.
    assert "*_callbacks(config, run.run_dir" in inspect.getsource(steps.fit_model)


@pytest.mark.slow
def test_a_template_measurement_is_a_whole_run_beside_the_plain_one(tiny_stock, models_dir) -> None:
    plain = device.measure("plain", "stock", tiny_stock)
    template = device.measure("template", "stock", tiny_stock)
    assert template["n_train"] == 222 and len(template["epoch_seconds"]) == 2
    assert template["replicas"] == 1 and template["train_seconds"] >= 0 and device.speed(template) > 0
    assert (models_dir / "stock" / "latest" / "metrics.json").is_file()
    assert steps._callbacks.__name__ == "_callbacks"  # Put back.
    _, plain_row, template_row = table_rows(device.render([plain, template], meta(dry_run=True)))
    assert template_row[2] == "template (`python -m common train`)" and template_row[4] == "222"
    assert float(template_row[9]) > 0


@needs_bash
@pytest.mark.slow
def test_the_dry_run_end_to_end_writes_the_report_to_out(tmp_path: Path) -> None:
    """``bash bench/device.sh --dry-run`` on this CPU, for stock (the quickest): every run in its
    own process, the data-parallel one on two logical CPU devices, and the report and log in $OUT."""
    pytest.importorskip("jax")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE_WHEELS": str(tmp_path / "none"), "OUT": str(out)}
    before = results_snapshot()
    completed = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--projects", "stock", "--backends", "jax"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert sorted(path.name for path in out.iterdir()) == ["device.log", "gpu-dry-run.md"]
    report = (out / "gpu-dry-run.md").read_text()
    _, plain, template, parallel = table_rows(report.splitlines())
    assert [cells[2] for cells in (plain, template, parallel)] == [
        "plain `model.fit`",
        "template (`python -m common train`)",
        "template, `train.distribution=data_parallel`",
    ]
    assert plain[3] == template[3] == "cpu (1)" and parallel[3] == "cpu (2)"
    assert "Command: `bash bench/device.sh --dry-run --projects stock --backends jax`" in report
    assert results_snapshot() == before
