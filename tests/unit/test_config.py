import pytest

from tfos_facecnn.cli import parse_train_args
from tfos_facecnn.config import ConfigError, TrainConfig, load_yaml, resolve_config


def test_defaults_are_the_reference_choices():
    cfg = TrainConfig()
    assert (cfg.image_size, cfg.batch_size, cfg.epochs, cfg.learning_rate) == (350, 32, 50, 1e-3)
    assert (cfg.val_fraction, cfg.test_fraction_of_val) == (0.3, 0.2)


def test_cli_overrides_yaml_overrides_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nbatch_size: 16\naugment:\n  rotation: 0.1\n")
    cfg, master = parse_train_args(["--config", str(path), "--epochs", "5", "--master", "local[1]"])
    assert (cfg.epochs, cfg.batch_size, cfg.augment.rotation, cfg.image_size) == (5, 16, 0.1, 350)
    assert master == "local[1]"


def test_shipped_yaml_resolves_to_the_defaults():
    cfg, _ = parse_train_args([])
    assert cfg == TrainConfig()


@pytest.mark.parametrize("values,message", [
    ({"epoch": 3}, "unknown config key 'epoch'"),
    ({"augment": {"spin": 1}}, "unknown config key 'augment.spin'"),
    ({"steps_safety": 0.9}, "config key 'steps_safety' was removed: every epoch now trains on every training image"),
    ({"epochs": "ten"}, "'epochs': expected a whole number"),
    ({"epochs": 0}, "'epochs': 0 is out of range"),
    ({"batch_size": -4}, "'batch_size': -4 is out of range"),
    ({"variant": "huge"}, "'variant': 'huge' is not one of base, l1, l2, dropout"),
    ({"input_mode": "magic"}, "'input_mode'"),
    ({"feed_cache": "memory"}, "'feed_cache': 'memory' is not one of memory_and_disk, disk_only"),
    ({"learning_rate": True}, "'learning_rate': expected a number"),
    ({"augment": {"flip": "diagonal"}}, "'flip'"),
    ({"image_size": 38}, "'image_size': 38 is out of range \\[39, 4096\\]"),
    ({"report": "yes"}, "'report': expected true or false"),
    ({"executor_timeout": 0}, "'executor_timeout': 0 is out of range \\[1, 86400\\]"),
])
def test_bad_values_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(values, {})


def test_bad_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: 3\n  batch: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml' is not valid YAML at line"):
        load_yaml(str(path))


def test_missing_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(str(tmp_path / "none.yaml"))


def test_cli_rejects_unknown_choices(capsys):
    with pytest.raises(SystemExit):
        parse_train_args(["--variant", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_every_feed_cache_setting_names_a_spark_storage_level():
    from pyspark import StorageLevel

    from tfos_facecnn.config import FEED_CACHES
    from tfos_facecnn.modes.spark import FEED_STORAGE_LEVELS

    assert set(FEED_STORAGE_LEVELS) == set(FEED_CACHES)
    levels = {name: getattr(StorageLevel, level) for name, level in FEED_STORAGE_LEVELS.items()}
    assert levels["disk_only"].useMemory is False and levels["memory_and_disk"].useMemory is True
