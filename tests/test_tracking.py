"""Optional MLflow tracking: parameters, per-epoch metrics and the run folder, in a local store."""

from __future__ import annotations

import pytest

from common.core import runs
from tests.conftest import assert_one_line_error

mlflow = pytest.importorskip("mlflow", reason="MLflow is an optional extra: pip install -e '.[mlflow]'")


def test_a_run_with_mlflow_on_is_logged_with_params_metrics_and_files(models_dir, cli, tmp_path, monkeypatch):
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # the template allows the file store
    result = cli("train", "stock", "--set", "train.epochs=2", "--set", "train.mlflow=true")
    assert result.code == 0, result.stderr
    run_dir = runs.latest_run("stock")

    mlflow.set_tracking_uri(store.as_uri())
    [logged] = mlflow.search_runs(experiment_names=["stock"], output_format="list")
    assert logged.info.status == "FINISHED" and logged.info.run_name == run_dir.name
    assert logged.data.params["train.epochs"] == "2" and logged.data.params["train.mlflow"] == "True"
    assert "final_rmse_ratio" in logged.data.metrics
    client = mlflow.MlflowClient()
    assert len(client.get_metric_history(logged.info.run_id, "val_loss")) == 2  # one per epoch
    artifacts = {item.path for item in client.list_artifacts(logged.info.run_id)}
    assert {"metrics.json", "config.toml", "history.csv"} <= artifacts
    assert runs.read_state(run_dir)["mlflow_run_id"] == logged.info.run_id


def test_mlflow_asked_for_but_missing_is_one_line_before_any_data(models_dir, cli, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name == "mlflow":
            raise ImportError("No module named 'mlflow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    assert_one_line_error(cli("train", "stock", "--set", "train.mlflow=true"), "pip install -e '.[mlflow]'")
    assert not models_dir.exists() or not any(models_dir.rglob("*"))
