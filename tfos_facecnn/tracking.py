"""Experiment tracking with MLflow (the optional [mlflow] extra): each trained model becomes an MLflow run.

The driver logs it once the model is exported: the run's settings as parameters, every epoch's loss,
accuracy and rates as metrics at their epoch, the test metrics and the chosen epoch, and the export
folder (model.keras, history, metrics, the report) as artifacts. The driver holds the whole history
(history.json) and the export, so nothing runs in the TF nodes; a resumed run logs every epoch of it.
Credentials go in MLflow's own variables (MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME/PASSWORD),
not in the URI, which is written into config.json.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from .config import ConfigError, TrainConfig

if TYPE_CHECKING:
    from .driver import TrainResult

logger = logging.getLogger(__name__)
# MLflow 3 refuses its file store unless asked; a local folder is what a user without a server has, and
# what the tests use.
FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "images_per_s", "steady_images_per_s")
TEST_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "count")
MAX_PARAM_CHARS = 500  # MLflow's limit on a parameter value


def check_tracking(cfg: TrainConfig) -> None:
    """Before Spark starts: tracking asked for needs MLflow installed on the driver."""
    if cfg.tracking.mlflow_uri is None:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"--mlflow-uri (tracking.mlflow_uri) needs MLflow on the driver ({e}): pip install "
                          "'tfos-facecnn[mlflow]', or drop the setting") from e


def flat_params(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings -> MLflow parameters ('augment.flip': 'horizontal'); storage options never."""
    params: dict[str, str] = {}
    for key, value in values.items():
        if key == "storage" and not prefix:
            continue
        if isinstance(value, dict):
            params |= flat_params(value, f"{prefix}{key}.")
        else:
            params[f"{prefix}{key}"] = str(value)[:MAX_PARAM_CHARS]
    return params


def log_run(cfg: TrainConfig, result: TrainResult, nodes: int) -> str | None:
    """Logs one exported model as an MLflow run; returns its run id (None when tracking is off)."""
    if cfg.tracking.mlflow_uri is None:
        return None
    import mlflow

    from .storage.mirror import LocalMirror

    if cfg.tracking.mlflow_uri.startswith("file:") or "://" not in cfg.tracking.mlflow_uri:
        os.environ.setdefault(FILE_STORE_ENV, "true")
    mlflow.set_tracking_uri(cfg.tracking.mlflow_uri)
    mlflow.set_experiment(cfg.tracking.experiment)
    test = result.metrics.get("test", {})
    with mlflow.start_run(run_name=f"{cfg.variant}-{os.path.basename(cfg.model_dir.rstrip('/'))}") as run:
        mlflow.log_params({**flat_params(cfg.public_dict()), "nodes": str(nodes)})
        for row in result.history:
            metrics = {name: float(row[name]) for name in EPOCH_METRICS if row.get(name) is not None}
            mlflow.log_metrics(metrics, step=int(row["epoch"]))
        mlflow.log_metrics({f"test_{name}": float(test[name]) for name in TEST_METRICS
                            if isinstance(test.get(name), (int, float))})
        chosen = result.metrics.get("chosen_epoch") or {}
        if chosen.get("epoch") is not None:
            mlflow.log_metric("chosen_epoch", float(chosen["epoch"]))
        mlflow.set_tags({"model_dir": cfg.model_dir, "export_dir": cfg.export_dir, "input_mode": cfg.input_mode})
        export = LocalMirror(cfg.export_dir, "tracking")
        try:
            export.pull()  # a remote export comes down first; a local one is read where it is
            mlflow.log_artifacts(export.local, artifact_path="export")
        finally:
            export.cleanup()
        logger.info("logged the run to MLflow at %s: run %s", cfg.tracking.mlflow_uri, run.info.run_id)
        return run.info.run_id


def tracked_location(cfg: TrainConfig, run_id: str) -> str:
    return f"MLflow run {run_id} in experiment {cfg.tracking.experiment!r} at {cfg.tracking.mlflow_uri}"
