"""Comparing experiments: the runs table and side-by-side comparison, read from run folders."""

from __future__ import annotations

import importlib.util
import inspect
import json
import subprocess
import sys

import pytest
from PIL import Image

from common.core import runs
from tests.conftest import ROOT, assert_one_line_error
from tests.test_registry_and_runs import TOY, toy_project  # noqa: F401  (the fixture)


def test_runs_lists_every_run_with_its_score_and_changed_keys(toy_project, models_dir, cli):  # noqa: F811
    assert cli("train", TOY, "--name", "small", "--set", "model.units=2").code == 0
    assert cli("train", TOY, "--name", "wide", "--set", "model.units=16", "--set", "train.epochs=3").code == 0
    result = cli("runs", TOY, "--json")
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
        recorded = json.loads((models_dir / TOY / row["name"] / "metrics.json").read_text())
        assert row["value"] == recorded["test_accuracy"] and row["baseline"] == recorded["baseline_accuracy"]
        assert row["data_source"] == "toy points" and row["backend"] == "tensorflow"
    assert wide["epochs"] == 3 and small["epochs"] == 2

    table = cli("runs", TOY).stdout
    assert "model.units=16, train.epochs=3" in table and "test_accuracy" in table


def test_runs_shows_what_each_run_changed_from_the_defaults_it_recorded(toy_project, models_dir, cli):  # noqa: F811
    """Editing the project's config.toml after a run leaves that run's changed keys as they were."""
    assert cli("train", TOY, "--name", "before").code == 0
    config_file = toy_project / "config.toml"
    config_file.write_text(config_file.read_text().replace("units = 4", "units = 8"))
    assert cli("train", TOY, "--name", "after", "--set", "model.units=4").code == 0

    def rows() -> dict[str, dict]:
        return {row["name"].split("-")[-1]: row for row in json.loads(cli("runs", TOY, "--json").stdout)}

    before, after = rows()["before"], rows()["after"]
    assert before["changed"] == {} and after["changed"] == {"model.units": 4}
    assert before["changed_against"] == after["changed_against"] == "recorded defaults"
    recorded = json.loads((models_dir / TOY / after["name"] / runs.SOURCES_FILE).read_text())
    assert recorded["sources"]["model.units"] == "--set" and recorded["sources"]["train.epochs"] == "project"
    assert recorded["defaults"]["model.units"] == 8
    table = cli("runs", TOY).stdout
    assert "model.units=4" in table and "*" not in table

    # A run from before runs recorded their defaults is compared with today's, and marked so.
    (models_dir / TOY / before["name"] / runs.SOURCES_FILE).unlink()
    before = rows()["before"]
    assert before["changed"] == {"model.units": 4} and before["changed_against"] == "today's defaults"
    table = cli("runs", TOY).stdout
    assert "model.units=4 *" in table and "* recorded no defaults" in table

    # Sorted by a metric: the better (higher) accuracy first; an unknown one is one line.
    ordered = json.loads(cli("runs", TOY, "--json", "--sort", "test_accuracy").stdout)
    values = [row["metrics"]["test_accuracy"] for row in ordered]
    assert values == sorted(values, reverse=True)
    assert_one_line_error(cli("runs", TOY, "--sort", "accuracyy"), "--sort accuracyy")


def test_a_runs_files_are_shown_never_obeyed_by_the_terminal(toy_project, models_dir, cli):  # noqa: F811
    assert cli("train", TOY).code == 0
    run_dir = runs.latest_run(TOY)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["data_source"] = "\x1b[2J\x1b[31mcleared"
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    shown = cli("runs", TOY)
    assert shown.code == 0 and "\x1b" not in shown.stdout
    assert "\\x1b[2J\\x1b[31mcleared" in shown.stdout


def test_an_interrupted_run_is_listed_as_such(toy_project, models_dir, cli):  # noqa: F811
    assert cli("train", TOY).code == 0
    run_dir = runs.latest_run(TOY)
    runs.set_state(run_dir, runs.INTERRUPTED)
    [row] = json.loads(cli("runs", TOY, "--json").stdout)
    assert row["state"] == "interrupted"


def test_compare_shows_differing_keys_scores_and_writes_the_curves(toy_project, models_dir, cli, tmp_path):  # noqa: F811
    assert cli("train", TOY, "--name", "a", "--set", "model.units=2").code == 0
    assert cli("train", TOY, "--name", "b", "--set", "model.units=8").code == 0
    names = [path.name for path in sorted((models_dir / TOY).iterdir()) if path.name[0].isdigit()]
    out = tmp_path / "curves.png"
    result = cli("compare", TOY, *names, "--out", out)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    [units] = [line for line in lines if line.startswith("model.units")]
    assert units.split()[1:] == ["2", "8"]
    assert not any(line.startswith("train.epochs") for line in lines)  # the same in both
    assert any(line.startswith("test_accuracy") for line in lines)
    with Image.open(out) as picture:
        assert picture.width > 600
    assert_one_line_error(cli("compare", TOY, names[0]), "two or more runs")
    assert_one_line_error(cli("compare", TOY, names[0], "nonesuch"), "nonesuch: not a run folder")
    assert_one_line_error(cli("compare", TOY, *names, "--out", tmp_path / "x.txt"), "x.txt", "name a .png")
    assert not (tmp_path / "x.txt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("like", ["mnist", "stock", "text", "tabular"])
def test_new_writes_a_project_that_trains_predicts_and_passes_its_own_test(
    like, tmp_path, monkeypatch, models_dir, cli
):
    assert_new_project_passes_its_own_test(like, tmp_path, monkeypatch, models_dir, cli)


@pytest.mark.parametrize("like", ["text", "tabular"])
def test_a_new_text_or_tabular_project_is_clean_and_passes_its_own_test(
    like, tmp_path, monkeypatch, models_dir, cli
):
    """The quick templates, in every run of the suite: their generated tests train for two
    epochs on small offline data, a few seconds each."""
    assert_new_project_passes_its_own_test(like, tmp_path, monkeypatch, models_dir, cli)


def assert_new_project_passes_its_own_test(like, tmp_path, monkeypatch, models_dir, cli) -> None:
    """``new fresh_<like> --like <like>`` writes files that pass ruff's lint and format check, a
    project that ``list`` shows, and a test file whose test passes with this suite's fixtures."""
    import projects
    from common import scaffold

    plugins, tests_dir = tmp_path / "plugins", tmp_path / "tests"
    plugins.mkdir()
    tests_dir.mkdir()
    name = f"fresh_{like}"
    written = scaffold.create_project(name, like, projects_dir=plugins, tests_dir=tests_dir)
    monkeypatch.setattr(projects, "__path__", [*projects.__path__, str(plugins)])
    try:
        # The house style: what the generator writes passes the project's own lint and format.
        ruff = [sys.executable, "-m", "ruff"]
        files = [str(path) for path in written if path.suffix == ".py"]
        checked = subprocess.run([*ruff, "check", *files], capture_output=True, text=True, cwd=ROOT)
        assert checked.returncode == 0, checked.stdout
        formatted = subprocess.run(
            [*ruff, "format", "--check", *files], capture_output=True, text=True, cwd=ROOT
        )
        assert formatted.returncode == 0, formatted.stdout

        assert name in cli("list").stdout
        # The generated test, run with this suite's fixtures.
        spec = importlib.util.spec_from_file_location(f"test_{name}", tests_dir / f"test_{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        [test] = [getattr(module, attribute) for attribute in dir(module) if attribute.startswith("test_")]
        parameters = inspect.signature(test).parameters
        test(
            **{
                key: value
                for key, value in {"models_dir": models_dir, "cli": cli, "tmp_path": tmp_path}.items()
                if key in parameters
            }
        )
        assert cli("runs", name).code == 0
    finally:
        for module_name in [key for key in sys.modules if key.startswith(f"projects.{name}")]:
            del sys.modules[module_name]


def test_new_refuses_a_bad_or_taken_name(cli):
    assert_one_line_error(cli("new", "My-Project"), "lowercase Python name")
    assert_one_line_error(cli("new", "mnist"), "already exists")
    assert_one_line_error(cli("new", "class"), "lowercase Python name")
    for taken in ("projects", "pretrained"):
        assert_one_line_error(cli("new", taken), f"new {taken}: the name is taken by the template's own")
    assert (
        not (ROOT / "projects" / "projects").exists() and not (ROOT / "tests" / "test_pretrained.py").exists()
    )


@pytest.mark.parametrize("verb", ["list", "train", "runs", "new"])
def test_new_refuses_a_name_that_is_a_command(cli, verb):
    assert_one_line_error(cli("new", verb), f"new {verb}: '{verb}' is a command of python -m common", "list")
    assert not (ROOT / "projects" / verb).exists() and not (ROOT / "tests" / f"test_{verb}.py").exists()


def test_new_writes_nothing_through_a_symlink_left_at_its_test_file(tmp_path):
    from common import scaffold
    from common.core.errors import UserError

    plugins, tests_dir, outside = tmp_path / "plugins", tmp_path / "tests", tmp_path / "outside.py"
    tests_dir.mkdir()
    (tests_dir / "test_sensors.py").symlink_to(outside)  # dangling: exists() would say no
    with pytest.raises(UserError, match="test_sensors.py already exists"):
        scaffold.create_project("sensors", "mnist", projects_dir=plugins, tests_dir=tests_dir)
    assert not outside.exists() and not (plugins / "sensors").exists()


def test_a_new_project_that_cannot_be_written_whole_leaves_nothing(tmp_path, monkeypatch):
    """All or nothing: a failure midway (here the test file's folder is missing) removes what
    was written, so the name is free to try again."""
    from common import scaffold
    from common.core.errors import UserError

    plugins, tests_dir = tmp_path / "plugins", tmp_path / "no-such-tests-folder"
    with pytest.raises(UserError, match="could not write the project"):
        scaffold.create_project("sensors", "stock", projects_dir=plugins, tests_dir=tests_dir)
    assert list(plugins.iterdir()) == []
    tests_dir.mkdir()
    written = scaffold.create_project("sensors", "stock", projects_dir=plugins, tests_dir=tests_dir)
    assert sorted(path.name for path in (plugins / "sensors").iterdir()) == sorted(
        path.name for path in written if path.parent == plugins / "sensors"
    )
    assert (tests_dir / "test_sensors.py") in written and len(written) == 9


@pytest.mark.parametrize(
    ("metrics", "said"),
    [
        (
            {"test_accuracy": 0.1, "baseline_accuracy": 0.1, "n_test": 500},
            "within two standard errors, 0.0268, on 500",
        ),
        (
            {"test_accuracy": 0.126, "baseline_accuracy": 0.1, "n_test": 500},
            "test_accuracy 0.1260 is no better",
        ),
        (
            {"test_accuracy": 0.05, "baseline_accuracy": 0.1, "n_test": 500},
            "than the trivial baseline's 0.1000",
        ),
        ({"test_accuracy": 0.13, "baseline_accuracy": 0.1, "n_test": 500}, ""),  # 0.1 + 0.0268 < 0.13
        ({"test_accuracy": 0.9, "baseline_accuracy": 0.1, "n_test": 10_000}, ""),
        ({"test_accuracy": 0.1, "baseline_accuracy": 0.1}, ""),  # no test size: no claim
    ],
)
def test_a_score_within_noise_of_its_baseline_is_said_to_be_no_better(metrics, said):
    from common.core.project import Headline

    warning = Headline("test_accuracy", baseline="baseline_accuracy").no_better(metrics)
    assert (said in warning) if said else warning == ""


def test_a_ratio_to_the_baselines_error_is_no_better_at_or_above_it():
    from common.core.project import Headline

    headline = Headline("rmse_ratio", baseline_value=1.0)
    assert headline.no_better({"rmse_ratio": 1.02}).startswith(
        "rmse_ratio 1.0200 is no better than the trivial"
    )
    assert headline.no_better({"rmse_ratio": 0.98}) == ""


def test_a_run_no_better_than_its_baseline_says_so(toy_project, models_dir, cli):  # noqa: F811
    from common.__main__ import _headline
    from common.core import registry
    from common.core import runs as run_folders

    assert cli("train", TOY, "--promote").code == 0
    run_dir = run_folders.latest_run(TOY)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["test_accuracy"] = 1.0
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    assert "no better than it" not in cli("runs", TOY).stdout
    metrics["test_accuracy"] = metrics["baseline_accuracy"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    assert "no better than it" in cli("runs", TOY).stdout
    project = registry.get_project(TOY)
    assert "\nwarning: test_accuracy" in _headline(project, metrics)
    described = run_folders.describe_model(project, run_dir / "model.keras", chosen_by_default=True)
    assert described[1].startswith("warning: test_accuracy")
