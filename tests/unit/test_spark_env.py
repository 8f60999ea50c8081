import pytest

from tfos_facecnn.config import ConfigError, TrainConfig
from tfos_facecnn.spark_env import bind_address, expected_nodes, parse_master, session_settings


def test_parse_masters():
    assert parse_master("local[3]").executors == 1 and parse_master("local[3]").cores_per_executor == 3
    cluster = parse_master("local-cluster[2,1,1024]")
    assert (cluster.kind, cluster.executors, cluster.cores_per_executor) == ("local-cluster", 2, 1)
    assert parse_master("spark://127.0.0.1:7077").is_local_machine
    assert not parse_master("spark://10.1.2.3:7077").is_local_machine
    assert parse_master("yarn").kind == "yarn"


def test_local_refuses_more_than_one_node():
    with pytest.raises(ConfigError, match=r"has one executor .* 'local-cluster\[2,1,2048\]'"):
        expected_nodes(TrainConfig(cluster_size=2), parse_master("local[*]"), {})


def test_more_nodes_than_executors_fails_fast():
    with pytest.raises(ConfigError, match="more than the 2 executors"):
        expected_nodes(TrainConfig(cluster_size=3), parse_master("local-cluster[2,1,1024]"), {})


def test_node_count_from_spark_conf():
    yarn = parse_master("yarn")
    assert expected_nodes(TrainConfig(), yarn, {"spark.executor.instances": "4"}) == 4
    standalone = parse_master("spark://h:7077")
    assert expected_nodes(TrainConfig(), standalone, {"spark.cores.max": "6", "spark.executor.cores": "2"}) == 3
    with pytest.raises(ConfigError, match="pass --cluster-size"):
        expected_nodes(TrainConfig(), standalone, {})


def test_loopback_on_local_masters_and_user_settings_win():
    assert bind_address(TrainConfig().bind_address, parse_master("local-cluster[2,1,1024]")) == "127.0.0.1"
    assert bind_address(TrainConfig().bind_address, parse_master("yarn")) is None
    assert bind_address(TrainConfig(bind_address="10.0.0.5").bind_address, parse_master("yarn")) == "10.0.0.5"
    settings = session_settings(parse_master("local[*]"), "127.0.0.1", {"spark.task.maxFailures": "4"})
    assert "spark.task.maxFailures" not in settings
    assert settings["spark.driver.bindAddress"] == "127.0.0.1"


def test_tf_threads_follow_the_executors_cores():
    from tfos_facecnn.spark_env import node_threads, parse_master

    assert node_threads(parse_master("local-cluster[2,3,2048]"), {"spark.executor.cores": "8"}) == 3
    assert node_threads(parse_master("local[2]"), {}) == 2
    assert node_threads(parse_master("spark://10.0.0.1:7077"), {"spark.executor.cores": "4"}) == 4
    assert node_threads(parse_master("yarn"), {}) == 0  # unknown: TF's default
    assert node_threads(parse_master("yarn"), {"spark.executor.cores": " "}) == 0
