"""Experiment tracking's settings (tracking.py, config's `tracking:` section): off by default, checked before
Spark starts, storage options never logged."""

from __future__ import annotations

import sys

import pytest

from tfos_facecnn.cli import parse_train_args
from tfos_facecnn.config import ConfigError, TrainConfig, resolve_config
from tfos_facecnn.tracking import check_tracking, flat_params


def test_tracking_is_off_by_default_and_set_by_yaml_or_options(tmp_path):
    assert TrainConfig().tracking.mlflow_uri is None
    cfg = resolve_config({"tracking": {"mlflow_uri": "http://mlflow:5000", "experiment": "faces"}}, {})
    assert (cfg.tracking.mlflow_uri, cfg.tracking.experiment) == ("http://mlflow:5000", "faces")
    config = tmp_path / "c.yaml"
    config.write_text("tracking:\n  experiment: from-yaml\n")
    cfg, _ = parse_train_args(["--config", str(config), "--mlflow-uri", "file:///tmp/mlruns"])
    assert (cfg.tracking.mlflow_uri, cfg.tracking.experiment) == ("file:///tmp/mlruns", "from-yaml")
    with pytest.raises(ConfigError, match="unknown config key 'tracking.uri'; known keys: experiment, mlflow_uri"):
        resolve_config({"tracking": {"uri": "x"}}, {})


def test_params_are_flat_and_never_hold_storage_options():
    cfg = TrainConfig(storage={"s3": {"key": "AKIA", "secret": "s3cr3t"}})
    params = flat_params(cfg.to_dict())
    assert params["augment.flip"] == "horizontal" and params["epochs"] == "50"
    assert not [key for key in params if key.startswith("storage")] and "s3cr3t" not in str(params)


def test_tracking_without_mlflow_installed_stops_before_spark(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the [mlflow] extra were not installed
    check_tracking(TrainConfig())  # off: nothing needed
    with pytest.raises(ConfigError, match=r"--mlflow-uri \(tracking.mlflow_uri\) needs MLflow on the driver .* "
                       r"pip install 'tfos-facecnn\[mlflow\]'"):
        check_tracking(TrainConfig().__class__(tracking=resolve_config(
            {"tracking": {"mlflow_uri": "http://x"}}, {}).tracking))
