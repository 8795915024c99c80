"""Optional experiment tracking with MLflow: ``train.mlflow = true`` (``pip install -e '.[mlflow]'``).

Each run becomes an MLflow run in the experiment named after the project: its parameters are the
resolved config, its metrics the per-epoch history and the final test scores, its artifacts the
run folder (plots, metrics, config; the model files too). The store is ``mlruns/`` at the
repository root unless ``MLFLOW_TRACKING_URI`` says otherwise (a server, a database). A resumed
run continues the same MLflow run. Nothing here is needed to train: it is off by default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras

from common.core import runs
from common.core.config import Config, uses_mlflow
from common.core.errors import UserError
from common.core.paths import ROOT


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise UserError(
            "train.mlflow = true needs MLflow: pip install -e '.[mlflow]' (or set train.mlflow=false)"
        ) from None
    return mlflow


def check_available(config: Config) -> None:
    """Fails before any data is read when MLflow is asked for but not installed."""
    if uses_mlflow(config):
        _mlflow()


def _flat(values: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class MLflowLogger(keras.callbacks.Callback):
    """Logs a run to MLflow: parameters at the start, metrics at every epoch's end."""

    def __init__(self, project: str, config: Config, run_dir: Path) -> None:
        super().__init__()
        self.mlflow = _mlflow()
        self.project, self.config, self.run_dir = project, config, run_dir

    def on_train_begin(self, logs: dict | None = None) -> None:
        mlflow = self.mlflow
        if not _uri_from_environment():
            mlflow.set_tracking_uri((ROOT / "mlruns").as_uri())
        if mlflow.get_tracking_uri().startswith("file:"):
            # MLflow 3 keeps its plain-folder store for those who ask; a database or server needs
            # more than the client this extra installs.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_experiment(self.project)
        run_id = runs.read_state(self.run_dir).get("mlflow_run_id")
        active = mlflow.start_run(run_id=run_id, run_name=None if run_id else self.run_dir.name)
        if run_id is None:
            runs.set_state(self.run_dir, runs.RUNNING, mlflow_run_id=active.info.run_id)
            mlflow.log_params({key: str(value)[:500] for key, value in _flat(self.config.to_dict()).items()})
            mlflow.set_tag("run_folder", str(self.run_dir))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {key: float(value) for key, value in (logs or {}).items()}
        self.mlflow.log_metrics(metrics, step=epoch)

    def on_train_end(self, logs: dict | None = None) -> None:
        # The run stays open for the final scores and files (see finish); a crash ends it as failed.
        pass


def finish(config: Config, run_dir: Path, metrics: dict) -> None:
    """Logs the final scores and the run folder's files, and ends the MLflow run."""
    if not uses_mlflow(config):
        return
    mlflow = _mlflow()
    if mlflow.active_run() is None:
        return
    mlflow.log_metrics({f"final_{key}": float(value) for key, value in metrics.items() if _is_number(value)})
    mlflow.log_artifacts(str(run_dir))
    mlflow.end_run()


def abort() -> None:
    """Ends an open MLflow run as failed (training stopped)."""
    try:
        import mlflow
    except ImportError:
        return
    if mlflow.active_run() is not None:
        mlflow.end_run(status="KILLED")


def _uri_from_environment() -> bool:
    return bool(os.environ.get("MLFLOW_TRACKING_URI"))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
