"""The FER2013 recipe for a GPU (``bench/fer_gpu.sh``, ``bench/fer_gpu.py``), checked on the CPU:
the packed data, the plan that fits the budget, the report, and the whole script at its tiny size."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import RESULTS_DIR, fer_gpu
from common.core import registry
from projects.emojify.classes import CLASS_NAMES
from projects.emojify.synthetic import synthetic_faces
from tests.conftest import ROOT

SCRIPT = ROOT / "bench" / "fer_gpu.sh"
HEADER = [
    "model",
    "test accuracy",
    "majority-class baseline",
    "macro F1",
    "epochs",
    "training (s)",
    "process (s)",
    "weights",
]

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def write_faces(folder: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """Kaggle's layout, ``train/<emotion>/NNNN.jpg``, of generated faces: ``counts[emotion]`` each."""
    most = max(counts.values())
    faces, labels = synthetic_faces(most, seed)
    for index, emotion in enumerate(CLASS_NAMES):
        (folder / "train" / emotion).mkdir(parents=True)
        for number, face in enumerate(faces[labels == index][: counts[emotion]]):
            Image.fromarray(face).save(folder / "train" / emotion / f"{number:04d}.jpg", quality=90)
    return folder


def table_rows(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))] for line in rows]


# --- The data: packed as its JPEG files, unpacked the same -----------------------------------------


def test_the_archive_unpacks_to_the_same_files_and_only_once(tmp_path: Path) -> None:
    source = write_faces(tmp_path / "fer2013", dict.fromkeys(CLASS_NAMES, 3))
    archive = tmp_path / "packed" / "fer2013.tar.gz"
    size = fer_gpu.pack(source, archive)
    assert size == archive.stat().st_size > 0
    unpacked = fer_gpu.unpack(archive, tmp_path / "work" / "data")
    assert unpacked == tmp_path / "work" / "data" / "fer2013"
    files = sorted(path.relative_to(source) for path in source.rglob("*.jpg"))
    assert (
        len(files) == 21 and sorted(path.relative_to(unpacked) for path in unpacked.rglob("*.jpg")) == files
    )
    assert all((unpacked / name).read_bytes() == (source / name).read_bytes() for name in files)
    # The same archive again: what is there is used as it is (a second run on a warm machine).
    marker = unpacked / "train" / "happy" / "kept.txt"
    marker.write_text("")
    assert fer_gpu.unpack(archive, tmp_path / "work" / "data") == unpacked and marker.exists()


def test_a_damaged_archive_is_one_line_saying_to_pack_again(tmp_path: Path) -> None:
    archive = tmp_path / "fer2013.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08 not really gzip")
    with pytest.raises(fer_gpu.UserError, match=r"not a readable \(gzipped\) tar archive; pack it again$"):
        fer_gpu.unpack(archive, tmp_path / "data")


def test_tiny_takes_the_first_faces_of_each_emotion(tmp_path: Path) -> None:
    source = write_faces(tmp_path / "fer2013", {**dict.fromkeys(CLASS_NAMES, 23), "disgust": 5})
    tiny = fer_gpu.tiny_copy(source, tmp_path / "tiny")
    counts = {folder.name: len(list(folder.iterdir())) for folder in (tiny / "train").iterdir()}
    assert counts == {**dict.fromkeys(CLASS_NAMES, fer_gpu.TINY_PER_CLASS), "disgust": 5}
    assert sorted(path.name for path in (tiny / "train" / "sad").iterdir())[-1] == "0019.jpg"


def test_missing_data_is_one_line_saying_how_to_pack_it(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(fer_gpu, "ARCHIVE", tmp_path / "absent.tar.gz")
    monkeypatch.setenv("SHARED_DATA", str(tmp_path / "nothing"))
    assert fer_gpu.run(fer_gpu.main, ["--tiny", "--work", str(tmp_path / "work")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: no FER2013 at") and "bash bench/device_prepare.sh --fer2013" in line
    assert fer_gpu.run(fer_gpu.main, ["--tiny", "--data", str(tmp_path / "gone")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --data {tmp_path / 'gone'}: no such file or folder"
    ]


def test_without_a_gpu_one_line_and_nothing_written(monkeypatch, capsys) -> None:
    monkeypatch.setattr(fer_gpu, "nvidia_gpus", lambda: [])
    monkeypatch.setattr(fer_gpu, "jax_gpus", lambda: [])
    before = sorted(RESULTS_DIR.iterdir())
    assert fer_gpu.main(["--write"]) == 0
    printed = capsys.readouterr()
    assert len(printed.out.splitlines()) == 1 and "no GPU here" in printed.out and "--tiny" in printed.out
    assert sorted(RESULTS_DIR.iterdir()) == before and not fer_gpu.RESULTS.exists()


def test_a_gpu_that_only_jax_sees_counts_as_one(monkeypatch) -> None:
    """A machine without nvidia-smi: JAX is asked in a process of its own, never in this one."""
    asked = []

    def fake_run(command, **kwargs):
        asked.append(command)
        return subprocess.CompletedProcess(command, 0, stdout="NVIDIA H100 80GB HBM3\n", stderr="")

    monkeypatch.setattr(fer_gpu.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(fer_gpu.subprocess, "run", fake_run)
    assert fer_gpu.jax_gpus() == ["NVIDIA H100 80GB HBM3 (seen by JAX; nvidia-smi lists none)"]
    [command] = asked
    assert command[:2] == [sys.executable, "-c"] and "jax.devices()" in command[2]
    monkeypatch.setattr(fer_gpu.importlib.util, "find_spec", lambda name: None)
    assert fer_gpu.jax_gpus() == [] and len(asked) == 1


# --- The plan: what fits the budget after the first member ----------------------------------------


def test_the_plan_fits_members_then_the_student_into_what_is_left() -> None:
    costs = fer_gpu.Costs(overhead=20.0, epoch=2.0)  # A member of 40 epochs: 100 s.
    # Two more members (200 s) and the ensemble (20 s) leave 200 s: a student of 40 epochs with a
    # teacher of three members costs 2 * 20 + 40 * 2 * (1 + 3/3) = 200 s.
    assert costs.student(40, 3) == 200.0
    assert fer_gpu.plan_rest(costs, 420, members=3, epochs=40, student_epochs=40) == (3, 40)
    # A student shorter than asked when that is what fits, down to half of it.
    assert fer_gpu.plan_rest(costs, 380, members=3, epochs=40, student_epochs=40) == (3, 30)
    # With a third member, only 10 student epochs would fit: two members and a whole student.
    assert fer_gpu.plan_rest(costs, 300, members=3, epochs=40, student_epochs=40) == (2, 40)
    assert fer_gpu.plan_rest(costs, 150, members=3, epochs=40, student_epochs=40) == (2, 0)
    assert fer_gpu.plan_rest(costs, 100, members=3, epochs=40, student_epochs=40) == (1, 0)
    assert fer_gpu.plan_rest(costs, 1000, members=3, epochs=40, student_epochs=0) == (3, 0)


def test_the_costs_come_from_the_first_members_run() -> None:
    costs = fer_gpu.measured_costs(100.0, {"train_seconds": 80.0, "epochs_run": 40})
    assert costs == fer_gpu.Costs(overhead=20.0, epoch=2.0)
    assert costs.member(40) == 100.0 and costs.student(40, 3) == 200.0


def test_a_step_after_the_budget_is_spent_is_not_started(monkeypatch) -> None:
    monkeypatch.setattr(fer_gpu.subprocess, "run", lambda *args, **kwargs: pytest.fail("started"))
    row = fer_gpu.run_step("student", ["distill", "emojify"], fer_gpu.time.monotonic() - 5, [])
    assert row == {"label": "student", "error": "the budget was spent", "stopped": True}


# --- The report ------------------------------------------------------------------------------------


def metrics(accuracy: float, **extra) -> dict:
    return {
        "test_accuracy": accuracy,
        "baseline_accuracy": 0.2515,
        "baseline_class": "happy",
        "macro_f1": accuracy - 0.02,
        "epochs_run": 40,
        "train_seconds": 80.04,
        "parameters": 4957767,
        "keras_backend": "jax",
        "device": "gpu",
        "data_source": "FER2013 train split at data; test = held-out 10% of train",
        "n_train": 23253,
        "n_validation": 2584,
        "n_test": 2872,
        **extra,
    }


def meta(**changes) -> dict:
    return {
        "tiny": False,
        "command": "bash bench/fer_gpu.sh",
        "date": "2026-11-27 12:00",
        "gpus": ["NVIDIA H100 80GB HBM3, 81559 MiB, driver 580.159.04"],
        "versions": "Python 3.12.3, Keras 3.15.1, JAX 0.11.2",
        "budget": 480.0,
        "plan": "the first member took 100 s (2.0 s an epoch), so 2 members of 40 epochs were planned",
        "notes": [],
        **changes,
    }


def test_the_report_is_one_row_per_step_beside_the_baseline() -> None:
    rows = [
        {
            "label": "member 1 (seed 1)",
            "command": "python -m common train a",
            "metrics": metrics(0.6812),
            "process_seconds": 101.26,
        },
        {
            "label": "member 2 (seed 2)",
            "command": "python -m common train b",
            "error": "error: out of | memory",
            "process_seconds": 3.0,
        },
        fer_gpu.not_run("member 3 (seed 3)", "the budget left no room for it"),
        {
            "label": "ensemble of 2 members",
            "command": "python -m common ensemble c",
            "stopped": True,
            "error": "stopped after 9 s, at the end of the budget",
            "process_seconds": 9.0,
        },
    ]
    text = "\n".join(fer_gpu.render(rows, meta()))
    header, member, failed, skipped, stopped = table_rows(text)
    assert header == HEADER
    assert member == [
        "member 1 (seed 1)",
        "**0.6812**",
        "0.2515",
        "0.6612",
        "40",
        "80.0",
        "101.3",
        "4,957,767",
    ]
    assert failed[:2] == ["member 2 (seed 2)", "failed: error: out of \\| memory"] and len(failed) == 8
    assert skipped[:2] == ["member 3 (seed 3)", "not run: the budget left no room for it"]
    assert stopped[1] == "not finished: stopped after 9 s, at the end of the budget"
    assert "always answers 'happy' (the most frequent emotion in training): 0.2515 of the test split" in text
    assert "23,253 faces to train, 2,584 to validate (the best epoch), 2,872 to test" in text
    assert "- Computed by: jax on gpu; Python 3.12.3" in text
    assert "- `python -m common ensemble c`" in text and "TINY" not in text
    assert "TINY on CPU" in fer_gpu.render(rows, meta(tiny=True))[0]


# --- The whole script, tiny, on this CPU ---------------------------------------------------------


@needs_bash
def test_the_script_is_valid_bash() -> None:
    checked = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


@needs_bash
@pytest.mark.slow
def test_the_tiny_recipe_end_to_end_reports_each_step_by_value(tmp_path: Path, models_dir: Path) -> None:
    """``bash bench/fer_gpu.sh --tiny`` on an archive of generated faces: two members, their
    ensemble and the student, each a real run of the template, each row the run's own score."""
    source = write_faces(tmp_path / "fer2013", {**dict.fromkeys(CLASS_NAMES, 24), "disgust": 8})
    archive = tmp_path / "fer2013.tar.gz"
    fer_gpu.pack(source, archive)
    out = tmp_path / "out"
    out.mkdir()
    work = tmp_path / "work"
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE_WHEELS": str(tmp_path / "none"), "OUT": str(out)}
    results_before = sorted((path.name, path.read_bytes()) for path in RESULTS_DIR.iterdir())
    arguments = ["--tiny", "--data", str(archive), "--work", str(work)]
    completed = subprocess.run(
        ["bash", str(SCRIPT), *arguments], cwd=ROOT, capture_output=True, text=True, env=env, timeout=900
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = (out / "fer-gpu-tiny.md").read_text()
    assert report.startswith("# FER2013 on a GPU") and "TINY on CPU" in report
    assert f"Command: `bash bench/fer_gpu.sh {' '.join(arguments)}`" in report
    header, *rows = table_rows(report)
    assert header == HEADER
    assert [row[0] for row in rows] == [
        "member 1 (seed 1)",
        "member 2 (seed 2)",
        "ensemble of 2 members",
        "student of 2 members (distilled from the ensemble)",
    ]
    # Each row is its run's metrics.json; the runs went to this test's MODELS_DIR.
    runs = {
        path.name.split("-", 2)[2]: path
        for path in (models_dir / "emojify").iterdir()
        if not path.is_symlink()
    }
    assert sorted(runs) == ["ensemble", "member-1", "member-2", "student"]
    saved = {name: json.loads((run / "metrics.json").read_text()) for name, run in runs.items()}
    assert sorted(path.name for path in (out / "fer-gpu-runs").iterdir()) == sorted(
        f"{run.name}.json" for run in runs.values()
    )
    for row, name in zip(rows, ["member-1", "member-2", "ensemble", "student"], strict=True):
        accuracy = float(row[1].strip("*"))
        assert 0 <= accuracy <= 1 and accuracy == round(saved[name]["test_accuracy"], 4)
        assert (
            row[2] == f"{saved[name]['baseline_accuracy']:.4f}" and row[7] == f"{saved[name]['parameters']:,}"
        )
    assert [row[4] for row in rows] == ["1", "1", "", "1"]  # An ensemble trains no epoch.
    assert saved["student"]["distilled_from"] == str(runs["ensemble"] / "model.keras")
    assert "so 2 members of 1 epoch and a student of 1 epoch were planned" in report
    # The baseline, from the faces themselves: the tiny copy (20 a class, 8 of disgust) split by
    # the project as every step split it; the majority class of training, scored on the test part.
    project = registry.get_project("emojify")
    config = project.load_config(
        ROOT / fer_gpu.VARIANT, [f"data.path={work / 'tiny' / 'fer2013'}", *fer_gpu.TINY_SETTINGS]
    )
    splits = project.functions.load_data(config)
    majority = np.bincount(splits.train[1]).argmax()
    baseline = float(np.mean(splits.test[1] == majority))
    assert 0 < baseline < 1 and {row[2] for row in rows} == {f"{baseline:.4f}"}
    assert sum(splits.sizes().values()) == 6 * 20 + 8
    assert f"{splits.sizes()['n_test']:,} to test" in report
    assert sorted(path.name for path in out.iterdir()) == ["fer-gpu-runs", "fer-gpu-tiny.md", "fer-gpu.log"]
    assert sorted((path.name, path.read_bytes()) for path in RESULTS_DIR.iterdir()) == results_before
