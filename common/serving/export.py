"""Taking a trained model out of the template: a TensorFlow SavedModel (TF Serving), ONNX (ONNX
Runtime, in any language) or LiteRT (phones, microcontrollers; optionally int8), each checked in
its own runtime before it is kept.

``python -m common export mnist --format onnx [--model RUN] [--quantize int8] [--out DIR]``

What is exported is the model as ``predict`` queries it: raw inputs in (preprocessing is inside
the model), the project's serving views included (emojify's mirror average), in inference mode
(augmentation and dropout off). Every artifact is written beside its final place, loaded in its
own runtime and run on real inputs (the project's test split, or its stand-in); its outputs are
compared with Keras' on the same inputs. A float artifact is kept only if it gives the same label
for every example and no output differs by more than :data:`TOLERANCE`; otherwise it is deleted
and the command says by how much it disagreed. An int8 LiteRT model is reported beside the float
model: its accuracy (or error) on the whole test split and its size.

ONNX goes through the SavedModel (``tf2onnx``), which freezes every constant, LSTM loops
included; LiteRT through Keras' own ``model.export(format="litert")`` with LiteRT's built-in
operations only, so a plain LiteRT interpreter runs it (no TensorFlow ops inside). A model whose
loop LiteRT cannot take with a free batch size (an LSTM) is exported for one example at a time.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from common.core import files, runs
from common.core.errors import UserError
from common.core.project import Project
from common.kit.splits import count, is_structured, take

log = logging.getLogger(__name__)

FORMATS = ("tf_saved_model", "onnx", "litert")
# The largest difference allowed between a float artifact's outputs and Keras' own.
TOLERANCE = 1e-4
# Examples compared for agreement (the whole test split is used for the int8 scores).
CHECKED_EXAMPLES = 256
# Training examples LiteRT calibrates int8 activations on.
CALIBRATION_EXAMPLES = 200
_NEEDS = {"onnx": ("tf2onnx", "onnx"), "litert": ("ai_edge_litert",)}
_ARTIFACT = {"tf_saved_model": "saved_model", "onnx": "model.onnx", "litert": "model.tflite"}


def export(
    project: Project,
    model_arg: str | None,
    fmt: str,
    quantize: str | None = None,
    out: Path | None = None,
    overrides: list[str] | None = None,
) -> dict:
    """Exports a saved model, checks the artifact in its runtime, and returns the report also
    written to ``export.json`` beside it.

    Raises:
        UserError: a format, option or dependency missing, a conversion that fails (naming what
            the format could not express), or an artifact that disagrees with Keras.
    """
    from common.serving import loading

    check_request(fmt, quantize)
    if keras.backend.backend() != "tensorflow":
        raise UserError(
            "export runs under the TensorFlow backend: unset KERAS_BACKEND (a model trained under JAX or "
            "PyTorch loads there as it is)"
        )
    model, config, model_file = loading.load_saved(project, model_arg, overrides)
    folder = Path(out) if out else default_folder(project.name, model_file, fmt, quantize)
    check_empty_folder(folder)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # "Assets written to ..."
    splits = project.functions.load_data(config, need_training=quantize is not None)
    x_test, y_test = splits.test
    if not is_structured(x_test) and np.asarray(x_test[:1]).dtype.kind not in "OUS":
        x_test = np.asarray(x_test, dtype="float32")  # Numbers in, as float32: pixels, prices...
    checked = take(x_test, slice(0, CHECKED_EXAMPLES))
    graph = inference_graph(served_model(project, model, config), example=checked)
    check_takes(fmt, graph, project.name)
    expected = _numpy(graph.predict_on_batch(checked))

    work = _work_folder_beside(folder)
    try:
        artifact = work / _ARTIFACT[fmt]
        calibration = None
        if quantize:
            x_train = np.asarray(splits.train[0][:CALIBRATION_EXAMPLES], dtype="float32")
            calibration = x_train
        batch = write_artifact(graph, fmt, artifact, calibration)
        answers = run_artifact(fmt, artifact, checked, batch)
        report = compare_outputs(expected, answers)
        problem = non_finite(report, artifact=f"the {fmt} export")
        if problem is not None:
            raise UserError(f"{problem} on {splits.source}, so no check can pass; nothing was kept")
        report.update(
            format=fmt + ("-int8" if quantize else ""),
            model=runs.short_path(model_file),
            data_source=splits.source,
            examples=count(checked),
            batch_size="any" if batch is None else batch,
            bytes=size_of(artifact),
            input_shape=_input_shapes(graph, batch),
            **described_io(project, config, splits.info, graph, batch),
        )
        if quantize:
            report["quantized"] = "weights" if batch is not None else "weights and activations"
            report.update(scores_of_int8(graph, artifact, x_test, np.asarray(y_test), batch))
        elif disagrees(report):
            raise UserError(
                f"the {fmt} export disagrees with the Keras model on {splits.source}: largest difference "
                f"{report['largest_difference']:.2e} (allowed {TOLERANCE:.0e}), "
                f"{report.get('labels_differ', 0)} of {count(checked)} labels differ; nothing was kept"
            )
        files.write_json(report, work / "export.json")
        os.chmod(work, 0o755)  # mkdtemp's folder is its owner's alone; an export is for sharing.
        try:
            # One step: an empty folder is replaced, one another export filled meanwhile is not.
            os.rename(work, folder)
        except OSError as error:
            raise UserError(
                f"--out {folder}: could not put the export there ({error.strerror or error}; another "
                "export into the same folder?); nothing of this one was kept"
            ) from None
        report["path"] = str(folder / _ARTIFACT[fmt])
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_empty_folder(folder: Path) -> None:
    """The export's folder is absent or empty, not a file, and not under one."""
    if folder.is_file() or folder.is_symlink() and not folder.is_dir():
        raise UserError(f"--out {folder}: is a file; name a folder for the export")
    for parent in folder.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"--out {folder}: {parent} is a file, so nothing can be written under it")
    if folder.is_dir() and any(folder.iterdir()):
        raise UserError(f"{folder} is not empty; give another --out, or remove it first")


def _work_folder_beside(folder: Path) -> Path:
    """A hidden folder beside ``folder`` that the export is written in before it is renamed into
    place; one line when nothing can be written there (a read-only place)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    except OSError as error:
        raise UserError(f"--out {folder}: cannot write there ({error.strerror or error})") from None


def check_request(fmt: str, quantize: str | None) -> None:
    """The format and quantization asked for exist, and the packages they need are installed."""
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}; received: {fmt!r}")
    if quantize not in (None, "int8"):
        raise UserError(f"--quantize takes int8; received: {quantize!r}")
    if quantize and fmt != "litert":
        raise UserError("--quantize int8 is for --format litert (LiteRT runs int8 models on phones)")
    import importlib.util

    missing = [name for name in _NEEDS.get(fmt, ()) if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(
            f"the {fmt} export needs {', '.join(missing)}: make install-export, or pip install -e '.[export]'"
        )


def served_model(project: Project, model, config):
    """The model as ``predict`` queries it: the project's serving views when it has them."""
    serving = project.functions.serving_model
    return serving(model, config) if serving is not None else model


def inference_graph(model, example: Any = None):
    """A model that runs ``model`` in inference mode whatever its caller asks: a SavedModel's
    endpoint would otherwise call the augmentation layers as in training.

    Its inputs are shaped like ``example`` (a few inputs as ``predict`` gives them: an array, a
    dict of arrays by input name for a model with several inputs, texts as strings), or without
    one like the model's own float input; so a subclassed model, which records no input shape,
    is exported too."""
    if example is None:
        inputs: Any = keras.Input(shape=model.input_shape[1:], name="inputs")
        example = np.zeros((1, *[size or 1 for size in model.input_shape[1:]]), "float32")
    elif isinstance(example, dict):
        inputs = {name: _input_like(array, name) for name, array in example.items()}
    elif is_structured(example):
        inputs = [_input_like(array, f"input_{index}") for index, array in enumerate(example)]
    else:
        inputs = _input_like(example, "inputs")
    graph = keras.Model(inputs, model(inputs, training=False), name=f"{model.name}_inference")
    graph.predict_on_batch(take(example, slice(0, 1)))  # built
    return graph


def _input_like(array: Any, name: str):
    """A symbolic input for examples like ``array``: its shape past the batch, its kind of values."""
    array = np.asarray(array)
    if array.dtype.kind in "OUS":
        dtype = "string"
    elif array.dtype.kind in "iub":
        dtype = str(array.dtype)
    else:
        dtype = "float32"
    return keras.Input(shape=array.shape[1:], dtype=dtype, name=name)


def check_takes(fmt: str, graph, project: str) -> None:
    """ONNX and LiteRT take a model of one numeric input and one output; one line otherwise,
    naming the format that can take it (a SavedModel takes texts and several of each)."""
    if fmt == "tf_saved_model":
        return
    inputs, outputs = graph.inputs, graph.outputs
    texts = [tensor.name for tensor in inputs if keras.backend.standardize_dtype(tensor.dtype) == "string"]
    if len(inputs) > 1 or len(outputs) > 1:
        reason = f"takes {len(inputs)} inputs and gives {len(outputs)} outputs"
    elif texts:
        reason = "reads text (a string input)"
    else:
        return
    raise UserError(
        f"the {fmt} export takes a model of one numeric input and one output; {project}'s model {reason}: "
        "export it with --format tf_saved_model (TensorFlow Serving), which takes it"
    )


def _input_shapes(graph, batch: int | None) -> Any:
    """The artifact's input shape, ``None`` where any size goes; by name for several inputs."""
    shapes = {tensor.name: [batch, *tensor.shape[1:]] for tensor in graph.inputs}
    return shapes if len(shapes) > 1 else next(iter(shapes.values()))


def described_io(project: Project, config, info: dict, graph, batch: int | None) -> dict:
    """What a user of the exported file needs to call it: ``input`` and ``output`` (shape, type,
    meaning) and ``classes``, from the project's ``describe_io`` hook where it has one.

    Without the hook, only what the export knows: the shapes and types, and the data's
    ``info["class_names"]`` as classes when the output gives one value per name."""
    hook = project.functions.describe_io
    described = hook(config) if hook is not None else None
    outputs = [[batch, *tensor.shape[1:]] for tensor in graph.outputs]
    names = info.get("class_names")
    if described is not None:
        classes = list(described.classes)
    elif isinstance(names, list) and len(outputs) == 1 and outputs[0][1:] == [len(names)]:
        classes = [str(name) for name in names]
    else:
        classes = []
    dtypes = [keras.backend.standardize_dtype(tensor.dtype) for tensor in graph.inputs]
    if described is not None:
        input_meaning, output_meaning = described.input, described.output
    else:
        input_meaning = (
            "what the project's predict gives the model after reading its files; that reading, and "
            "any preparation outside the model, is in the project's predict.py"
        )
        output_meaning = (
            "one score per class, in the order of classes; the highest is the answer"
            if classes
            else "the model's output, as the project's predict reads it"
        )
    return {
        "input": {
            "shape": _input_shapes(graph, batch),
            "dtype": dtypes[0] if len(set(dtypes)) == 1 else dtypes,
            "meaning": input_meaning,
        },
        "output": {"shape": outputs[0] if len(outputs) == 1 else outputs, "meaning": output_meaning},
        "classes": classes,
    }


def _numpy(outputs: Any) -> Any:
    """A model's outputs as NumPy arrays, in their structure (one array, or a dict by output)."""
    return keras.tree.map_structure(np.asarray, outputs)


def compare_outputs(expected: Any, answers: Any) -> dict:
    """:func:`compare` for each output of a model with several (their largest difference, the
    labels that differ in all), or for its one output."""
    expected_outputs, answer_outputs = keras.tree.flatten(expected), keras.tree.flatten(_numpy(answers))
    if len(expected_outputs) != len(answer_outputs):
        raise UserError(f"the export gives {len(answer_outputs)} outputs, Keras {len(expected_outputs)}")
    reports = [compare(np.asarray(mine), theirs) for mine, theirs in zip(expected_outputs, answer_outputs)]
    # NaN-aware: a NaN difference of any output is the whole comparison's (max() would skip it).
    report: dict[str, Any] = {
        "largest_difference": float(np.max([part["largest_difference"] for part in reports]))
    }
    for key in ("non_finite_keras", "non_finite_export", "labels_differ"):
        if any(key in part for part in reports):
            report[key] = sum(part.get(key, 0) for part in reports)
    return report


def onnx_runner(model: Any, checked: int = 16) -> Callable[[np.ndarray], np.ndarray]:
    """``model``'s batched call (``predict_on_batch``) answered by ONNX Runtime instead of Keras:
    the model, in inference mode, converted to ONNX as ``export --format onnx`` converts it, and
    checked on ``checked`` random inputs against Keras before it is used, by the rule an export is
    kept by (:func:`disagrees`).

    Raises:
        UserError: the export extra is missing, the model cannot be converted, or the converted
            model disagrees with Keras.
    """
    check_request("onnx", None)
    graph = inference_graph(model)
    tensorflow_log = logging.getLogger("tensorflow")
    level = tensorflow_log.level
    tensorflow_log.setLevel(logging.WARNING)  # Not "Assets written to /tmp/...", once per model.
    try:
        with tempfile.TemporaryDirectory(prefix="onnx-") as folder:
            artifact = Path(folder) / _ARTIFACT["onnx"]
            write_artifact(graph, "onnx", artifact, None)
            session = onnx_session(artifact)  # It holds the model in memory: the file can go.
    finally:
        tensorflow_log.setLevel(level)
    input_name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {input_name: np.asarray(x, np.float32)})[0])

    shape = [size or 1 for size in model.input_shape[1:]]
    x = np.random.default_rng(0).uniform(0, 255, (checked, *shape)).astype(np.float32)
    expected = np.asarray(graph.predict_on_batch(x))
    report = compare(expected, run(x))
    problem = non_finite(report, model=f"{model.name} in Keras", artifact=f"{model.name} converted to ONNX")
    if problem is not None:
        raise UserError(f"{problem} on {checked} random inputs; serve it with --runtime keras")
    if disagrees(report):
        raise UserError(
            f"{model.name} converted to ONNX answers unlike Keras (largest difference "
            f"{report['largest_difference']:.2e}, {report.get('labels_differ', 0)} of {checked} labels "
            "differ); serve it with --runtime keras"
        )
    return run


def default_folder(project: str, model_file: Path, fmt: str, quantize: str | None) -> Path:
    """``models/<project>/exports/<run>-<format>[-int8]/``."""
    run = model_file.parent.name
    return runs.models_dir() / project / "exports" / f"{run}-{fmt}{'-int8' if quantize else ''}"


def write_artifact(graph, fmt: str, artifact: Path, calibration: np.ndarray | None) -> int | None:
    """Writes the artifact; returns the batch size it takes (``None``: any)."""
    try:
        if fmt == "tf_saved_model":
            graph.export(str(artifact), format="tf_saved_model", verbose=False)
        elif fmt == "onnx":
            _write_onnx(graph, artifact)
        else:
            return _write_litert(graph, artifact, calibration)
    except UserError:
        raise
    except Exception as error:  # The converters raise many types; the first line names the op.
        raise UserError(f"could not export to {fmt}: {_first_line(error)}") from None
    return None


def _write_onnx(graph, artifact: Path) -> None:
    import tf2onnx
    from tf2onnx import tf_loader

    # tf2onnx reports every step at INFO; its warnings and errors still show.
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as saved:
        graph.export(saved, format="tf_saved_model", verbose=False)
        graph_def, inputs, outputs = tf_loader.from_saved_model(
            saved, None, None, "serve", ["serving_default"]
        )
    with native_output_captured():
        tf2onnx.convert.from_graph_def(
            graph_def, input_names=inputs, output_names=outputs, opset=17, output_path=str(artifact)
        )


def _write_litert(graph, artifact: Path, calibration: np.ndarray | None) -> int | None:
    import tensorflow as tf

    options: dict[str, Any] = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    batch = 1 if recurrent(graph) else None
    if calibration is not None:
        # Weights and activations in int8, calibrated on training examples; inputs and outputs
        # stay float, so it is fed exactly as the float model is. For a recurrent model the
        # weights only ("dynamic range"): calibrating LiteRT's LSTM crashes its converter.
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
        if batch is None:
            options["representative_dataset"] = lambda: ([example[None]] for example in calibration)
    if batch is not None:
        # LiteRT's built-in LSTM needs every shape fixed: one example at a time.
        options["input_signature"] = [keras.InputSpec(shape=(1, *graph.input_shape[1:]), dtype="float32")]
    with native_output_captured() as captured:
        try:
            graph.export(str(artifact), format="litert", verbose=False, **options)
        except Exception as error:
            reason = _first_error_line(captured.read_text(errors="replace")) or _first_line(error)
            raise UserError(f"could not export to litert with its built-in operations: {reason}") from None
    return batch


def recurrent(model) -> bool:
    """Whether a recurrent layer (a loop over time) is anywhere inside the model."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.RNN):
            return True
    return False


class native_output_captured:
    """Sends what the converters' C++ code prints (its progress, MLIR diagnostics) to a file for
    the duration, so the command prints its own lines only; ``.read_text()`` gives it back."""

    def __enter__(self):
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        self._file = tempfile.NamedTemporaryFile(prefix="export-", suffix=".log", delete=False)
        self._saved = [os.dup(1), os.dup(2)]
        os.dup2(self._file.fileno(), 1)
        os.dup2(self._file.fileno(), 2)
        return self

    def read_text(self, errors: str = "strict") -> str:
        return Path(self._file.name).read_text(errors=errors)

    def __exit__(self, *exc) -> None:
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._file.close()
        os.unlink(self._file.name)


def _first_error_line(text: str) -> str:
    for line in text.splitlines():
        if "error:" in line:
            return " ".join(line.split("error:", 1)[1].split())[:300]
    return ""


def run_artifact(fmt: str, artifact: Path, x: np.ndarray, batch: int | None) -> np.ndarray:
    """The artifact's outputs for ``x``, computed by its own runtime (not by Keras)."""
    if fmt == "tf_saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(artifact))  # Kept: its functions need its variables.
        return _numpy(loaded.serve(keras.tree.map_structure(tf.constant, x)))
    if fmt == "onnx":
        session = onnx_session(artifact)
        return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])
    from ai_edge_litert.interpreter import Interpreter

    with native_output_captured():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
        interpreter = Interpreter(model_path=str(artifact))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    chunks = [x] if batch is None else [x[i : i + batch] for i in range(0, len(x), batch)]
    if batch is None:
        interpreter.resize_tensor_input(source["index"], x.shape)
    interpreter.allocate_tensors()
    outputs = []
    for chunk in chunks:
        interpreter.set_tensor(source["index"], chunk)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_tensor(target["index"])))
    return np.concatenate(outputs)


def onnx_session(artifact: Path) -> Any:
    """An ONNX Runtime session for ``artifact`` on the CPU, its threads sleeping between calls
    rather than spinning (a server's request threads need the cores meanwhile)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])


def disagrees(report: dict) -> bool:
    """Whether a float artifact's :func:`compare` report rules it out: an output (Keras' or the
    artifact's) is NaN or infinite, a label differs, or an output is further than :data:`TOLERANCE`
    from Keras'. Written so that NaN fails: ``nan > TOLERANCE`` is false, and a diverged model whose
    export answers NaN as well would otherwise pass its own check."""
    return (
        non_finite(report) is not None
        or not report["largest_difference"] <= TOLERANCE
        or report.get("labels_differ", 0) > 0
    )


def non_finite(report: dict, model: str = "the Keras model", artifact: str = "the export") -> str | None:
    """What of a :func:`compare` report's outputs is NaN or infinite, in words (``model`` and
    ``artifact`` name the two sides), or ``None`` when every output is a number."""
    problems = [
        f"{name} gives {count} non-finite output{'s' if count > 1 else ''} (NaN or infinity)"
        for name, count in (
            (model, report.get("non_finite_keras", 0)),
            (artifact, report.get("non_finite_export", 0)),
        )
        if count
    ]
    return "; ".join(problems) or None


def compare(expected: np.ndarray, answers: np.ndarray) -> dict:
    """How far the artifact's outputs are from Keras': the largest difference, how many outputs of
    either side are not finite (``non_finite_keras``, ``non_finite_export``, when any is) and, for
    a classifier (several outputs per example), how many labels differ."""
    if answers.shape != expected.shape:
        raise UserError(f"the export gives outputs of shape {answers.shape}, Keras {expected.shape}")
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, reported below
        report: dict[str, Any] = {"largest_difference": float(np.max(np.abs(answers - expected)))}
    for side, outputs in (("keras", expected), ("export", answers)):
        count = int(outputs.size - np.count_nonzero(np.isfinite(outputs)))
        if count:
            report[f"non_finite_{side}"] = count
    if expected.ndim == 2 and expected.shape[1] > 1:
        report["labels_differ"] = int(np.sum(answers.argmax(axis=1) != expected.argmax(axis=1)))
    return report


def scores_of_int8(graph, artifact: Path, x: np.ndarray, y: np.ndarray, batch: int | None) -> dict:
    """The int8 model beside the float one on the whole test split: accuracy for a classifier,
    the mean absolute error of the outputs otherwise."""
    float_outputs = np.asarray(graph.predict(x, batch_size=256, verbose=0))
    int8_outputs = run_artifact("litert", artifact, x, batch)
    if float_outputs.ndim == 2 and float_outputs.shape[1] > 1:
        labels = y.reshape(-1)
        return {
            "test_examples": len(labels),
            "float_accuracy": float(np.mean(float_outputs.argmax(axis=1) == labels)),
            "int8_accuracy": float(np.mean(int8_outputs.argmax(axis=1) == labels)),
        }
    target = y.reshape(float_outputs.shape)
    return {
        "test_examples": len(target),
        "float_mean_absolute_error": float(np.mean(np.abs(float_outputs - target))),
        "int8_mean_absolute_error": float(np.mean(np.abs(int8_outputs - target))),
    }


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def format_report(report: dict) -> str:
    """The lines the command prints."""
    lines = [f"exported {report['format']} to {report['path']} ({report['bytes'] / 2**20:.2f} MB)"]
    if "quantized" in report:
        lines.append(f"int8: {report['quantized']} (inputs and outputs stay float)")
    agreement = f"checked on {report['examples']} examples of {report['data_source']}: largest difference "
    agreement += f"{report['largest_difference']:.2e}"
    if "labels_differ" in report:
        same = report["examples"] - report["labels_differ"]
        agreement += f", labels identical for {same} of {report['examples']}"
    lines.append(agreement)
    if "int8_accuracy" in report:
        lines.append(
            f"test accuracy on {report['test_examples']} examples: int8 {report['int8_accuracy']:.2%}, "
            f"float {report['float_accuracy']:.2%}"
        )
    elif "int8_mean_absolute_error" in report:
        lines.append(
            f"mean absolute error on {report['test_examples']} test examples: int8 "
            f"{report['int8_mean_absolute_error']:.6g}, float {report['float_mean_absolute_error']:.6g}"
        )
    if report["batch_size"] != "any":
        lines.append(f"takes batches of {report['batch_size']} (its loop over time needs fixed shapes)")
    return "\n".join(lines)


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]
