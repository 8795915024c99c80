"""Comparing experiments: the runs table and side-by-side comparison, read from run folders."""

from __future__ import annotations

import json

from PIL import Image

from common import runs
from tests.conftest import assert_one_line_error
from tests.test_registry_and_runs import toy_project  # noqa: F401  (the fixture)


def test_runs_lists_every_run_with_its_score_and_changed_keys(toy_project, models_dir, cli):  # noqa: F811
    assert cli("train", "toy", "--name", "small", "--set", "model.units=2").code == 0
    assert (
        cli("train", "toy", "--name", "wide", "--set", "model.units=16", "--set", "train.epochs=3").code == 0
    )
    result = cli("runs", "toy", "--json")
    assert result.code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["name"].split("-")[-1] for row in rows] == ["wide", "small"]  # newest first
    small, wide = rows[1], rows[0]
    assert small["changed"] == {"model.units": 2} and wide["changed"] == {
        "model.units": 16,
        "train.epochs": 3,
    }
    for row in rows:
        assert row["state"] == "completed" and row["metric"] == "test_accuracy"
        assert 0 <= row["value"] <= 1 and 0 <= row["baseline"] <= 1
        assert row["data_source"] == "toy points" and row["backend"] == "tensorflow"
    assert wide["epochs"] == 3 and small["epochs"] == 2

    table = cli("runs", "toy").stdout
    assert "model.units=16, train.epochs=3" in table and "test_accuracy" in table

    # Sorted by a metric: the better (higher) accuracy first; an unknown one is one line.
    ordered = json.loads(cli("runs", "toy", "--json", "--sort", "test_accuracy").stdout)
    values = [row["metrics"]["test_accuracy"] for row in ordered]
    assert values == sorted(values, reverse=True)
    assert_one_line_error(cli("runs", "toy", "--sort", "accuracyy"), "--sort accuracyy")


def test_an_interrupted_run_is_listed_as_such(toy_project, models_dir, cli):  # noqa: F811
    assert cli("train", "toy").code == 0
    run_dir = runs.latest_run("toy")
    runs.set_state(run_dir, runs.INTERRUPTED)
    [row] = json.loads(cli("runs", "toy", "--json").stdout)
    assert row["state"] == "interrupted"


def test_compare_shows_differing_keys_scores_and_writes_the_curves(toy_project, models_dir, cli, tmp_path):  # noqa: F811
    assert cli("train", "toy", "--name", "a", "--set", "model.units=2").code == 0
    assert cli("train", "toy", "--name", "b", "--set", "model.units=8").code == 0
    names = [path.name for path in sorted((models_dir / "toy").iterdir()) if path.name[0].isdigit()]
    out = tmp_path / "curves.png"
    result = cli("compare", "toy", *names, "--out", out)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    [units] = [line for line in lines if line.startswith("model.units")]
    assert units.split()[1:] == ["2", "8"]
    assert not any(line.startswith("train.epochs") for line in lines)  # the same in both
    assert any(line.startswith("test_accuracy") for line in lines)
    with Image.open(out) as picture:
        assert picture.width > 600
    assert_one_line_error(cli("compare", "toy", names[0]), "two or more runs")
    assert_one_line_error(cli("compare", "toy", names[0], "nonesuch"), "nonesuch: not a run folder")
