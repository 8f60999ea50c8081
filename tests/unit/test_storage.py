"""The storage layer (no Spark): local paths and a real S3 server on 127.0.0.1 (SeaweedFS)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tfos_facecnn import storage
from tfos_facecnn.config import ConfigError, TrainConfig, resolve_config
from tfos_facecnn.export import is_complete, publish, write_json
from tfos_facecnn.progress import fingerprint
from tfos_facecnn.spark_env import parse_master, session_settings
from tfos_facecnn.storage.access import check_readable, check_writable, prepare_storage
from tfos_facecnn.storage.mirror import LocalMirror
from tfos_facecnn.storage.publish import publish_tree
from tfos_facecnn.storage.shard_cache import ShardCache

pytestmark = pytest.mark.timeout(120)


def test_reads_writes_lists_and_walks_objects(s3):
    root = f"{s3.url}/data"
    storage.write_bytes_atomic(f"{root}/faces/a.jpg", b"a")
    storage.write_bytes_atomic(f"{root}/faces/sub/b.jpg", b"bb")
    storage.write_bytes_atomic(f"{root}/comics/c.png", b"ccc")
    assert storage.exists(f"{root}/faces/a.jpg") and not storage.exists(f"{root}/faces/zz.jpg")
    assert storage.isdir(f"{root}/faces") and not storage.isdir(f"{root}/faces/a.jpg")
    assert storage.listdir(root) == ["comics", "faces"]
    assert list(storage.walk_files(f"{root}/faces")) == ["a.jpg", "sub/b.jpg"]
    assert storage.read_bytes(f"{root}/faces/sub/b.jpg") == b"bb"
    assert storage.glob(f"{root}/*/*.png") == [f"{root}/comics/c.png"]
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(f"{root}/missing.jpg")
    storage.remove_tree(f"{root}/faces")
    assert list(storage.walk_files(root)) == ["comics/c.png"]


def test_configuring_again_takes_a_changed_endpoint(s3, monkeypatch):
    """s3fs reads AWS_ENDPOINT_URL once per filesystem and fsspec reuses filesystems: after configure()
    the next request goes to the endpoint set now, not to the one of an earlier store."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the discard port: nothing answers S3 there
    storage.configure({})
    stale, _ = storage.filesystem(s3.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.server.endpoint)
    storage.configure({})
    fresh, _ = storage.filesystem(s3.url)
    assert fresh is not stale
    storage.write_bytes_atomic(f"{s3.url}/again.txt", b"here")
    assert storage.read_bytes(f"{s3.url}/again.txt") == b"here"


def test_makedirs_never_creates_a_bucket(s3):
    storage.makedirs("s3://no-such-bucket-here/x")
    assert not s3.fs.exists("no-such-bucket-here")


def test_writing_uploads_only_a_finished_file(s3, tmp_path):
    target = f"{s3.url}/out/shard.tfrecord"
    with pytest.raises(RuntimeError):
        with storage.writing(target, scratch=str(tmp_path)) as local:
            Path(local).write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert not storage.exists(target) and not list(tmp_path.iterdir())
    with storage.writing(target, scratch=str(tmp_path)) as local:
        Path(local).write_bytes(b"whole")
    assert storage.read_bytes(target) == b"whole" and not list(tmp_path.iterdir())


def test_publish_by_copy_replaces_an_old_export_and_writes_the_marker_last(s3):
    export = f"{s3.url}/export"
    for name, run in (("old", "r1"), ("new", "r2")):
        staging = f"{export}.staging-{run}"
        storage.write_bytes_atomic(f"{staging}/model.keras", name.encode())
        storage.write_bytes_atomic(f"{staging}/{name}.json", b"{}")
        publish(staging, export, run)
    assert s3.keys("export") == ["_SUCCESS", "model.keras", "new.json"]  # the old export's files are gone
    assert storage.read_bytes(f"{export}/model.keras") == b"new"
    assert not s3.keys("export.staging-r2") and is_complete(export)


def test_publish_without_the_marker_in_staging_leaves_the_target_incomplete(s3):
    staging, export = f"{s3.url}/e.staging-x", f"{s3.url}/e"
    storage.write_bytes_atomic(f"{staging}/model.keras", b"m")
    with pytest.raises(FileNotFoundError, match="_SUCCESS"):
        publish_tree(staging, export, "_SUCCESS", "x")
    assert not is_complete(export)


def test_a_mirror_uploads_changes_and_deletions_and_restores_elsewhere(s3):
    target = f"{s3.url}/model/backup"
    mirror = LocalMirror(target, "backup")
    try:
        Path(mirror.local, "chief").mkdir()
        Path(mirror.local, "chief", "ckpt-1.index").write_bytes(b"1")
        Path(mirror.local, "checkpoint").write_text("model_checkpoint_path: 'ckpt-1'")
        assert mirror.push() == 2
        assert mirror.push() == 0  # nothing changed: nothing uploaded
        os.remove(os.path.join(mirror.local, "chief", "ckpt-1.index"))
        Path(mirror.local, "chief", "ckpt-2.index").write_bytes(b"2")
        assert mirror.push() == 1
        assert s3.keys("model/backup") == ["checkpoint", "chief/ckpt-2.index"]
    finally:
        mirror.cleanup()
    assert not os.path.exists(mirror.local)
    restored = LocalMirror(target, "backup")
    try:
        assert restored.pull() == 2
        assert Path(restored.local, "chief", "ckpt-2.index").read_bytes() == b"2"
    finally:
        restored.cleanup()


def test_a_mirror_of_a_local_folder_is_the_folder(tmp_path):
    mirror = LocalMirror(str(tmp_path / "backup"))
    assert mirror.local == str(tmp_path / "backup") and mirror.pull() == 0 and mirror.push() == 0


def test_the_shard_cache_fetches_every_shard_once_and_cleans_up(s3):
    shards = [f"{s3.url}/prepared/train/part-{i}.tfrecord" for i in range(5)]
    for i, path in enumerate(shards):
        storage.write_bytes_atomic(path, bytes([i]) * (1000 + i))
    cache = ShardCache(shards, limit_mb=0)
    try:
        assert cache.bytes == sum(1000 + i for i in range(5))
        for i, path in enumerate(shards):
            local = cache.local(path)
            assert Path(local).read_bytes() == bytes([i]) * (1000 + i)
            assert cache.local(path) == local  # reused: one download per shard
    finally:
        folder = cache.dir
        cache.close()
    assert cache.dir is None and not os.path.exists(folder)


def test_the_shard_cache_refuses_a_share_over_its_limit(s3):
    path = f"{s3.url}/big/train/part-0.tfrecord"
    storage.write_bytes_atomic(path, b"x" * (2 * 2**20 + 1))
    with pytest.raises(RuntimeError, match="over shard_cache_mb 2: raise shard_cache_mb"):
        ShardCache([path], limit_mb=2)


def test_local_shards_are_read_in_place(tmp_path):
    shard = tmp_path / "part-0.tfrecord"
    shard.write_bytes(b"x")
    cache = ShardCache([str(shard)], limit_mb=1)
    assert cache.local(str(shard)) == str(shard) and cache.dir is None


def test_checks_name_a_missing_bucket_a_missing_path_and_a_file_for_a_folder(s3):
    with pytest.raises(ConfigError, match=r"--data-dir 's3://nobucket-x/data': bucket 'nobucket-x' does not exist"):
        check_readable("s3://nobucket-x/data", "--data-dir")
    with pytest.raises(ConfigError, match=r"--data-dir 's3://t-.*/nothing' does not exist; check the URI"):
        check_readable(f"{s3.url}/nothing", "--data-dir")
    storage.write_bytes_atomic(f"{s3.url}/afile", b"x")
    with pytest.raises(ConfigError, match=r"--model-dir 's3://t-.*/afile' is a file, not a folder"):
        check_writable(f"{s3.url}/afile", "--model-dir")
    check_writable(f"{s3.url}/run/model", "--model-dir")
    assert s3.keys() == ["afile"] and not storage.exists(f"{s3.url}/run/model")  # the probe is gone


def test_wrong_credentials_are_one_line_naming_the_uri(s3):
    storage.configure({"s3": {"key": s3.server.access_key, "secret": "wrong-secret"}})
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        check_writable(f"{s3.url}/model", "--model-dir")
    message = str(caught.value)
    assert message.startswith(f"--model-dir: could not reach the bucket of {s3.url}/model: access denied")
    assert "AWS_ACCESS_KEY_ID" in message and "\n" not in message and "wrong-secret" not in message
    assert time.monotonic() - started < 30


def test_an_unreachable_endpoint_fails_within_30_s(s3):
    import socket

    with socket.socket() as probe:  # a port with nothing behind it: a stopped server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    storage.configure({"s3": {"endpoint_url": f"http://127.0.0.1:{port}"}})
    started = time.monotonic()
    with pytest.raises(ConfigError, match=rf"could not reach the bucket of {s3.url}/d: EndpointConnectionError"):
        check_readable(f"{s3.url}/d", "--data-dir")
    assert time.monotonic() - started < 30


def test_a_missing_backend_names_its_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_gcsfs(name, *args, **kwargs):
        if name == "gcsfs":
            raise ImportError("No module named 'gcsfs'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gcsfs)
    with pytest.raises(ConfigError, match=r"pip install 'tfos-facecnn\[gcs\]' on the driver and every executor"):
        storage.require("gs://bucket/data")


def test_unknown_schemes_and_hdfs_without_its_client_are_named():
    with pytest.raises(ConfigError, match="storage scheme 'ftp://' is not supported"):
        storage.require("ftp://host/data")
    with pytest.raises(storage.StorageError) as caught:  # no Hadoop client here: libhdfs/libjvm do not load
        storage.exists("hdfs://127.0.0.1:8020/data")
    message = str(caught.value)
    assert message.startswith("could not open the filesystem of hdfs://127.0.0.1:8020/data")
    assert "libhdfs.so" in message and "CLASSPATH=$(hadoop classpath --glob)" in message


def test_storage_options_are_checked_travel_to_nodes_and_stay_out_of_outputs():
    cfg = resolve_config({"storage": {"s3": {"key": "AKIA", "secret": "s3cr3t", "client_kwargs": {"a": 1}}}}, {})
    assert cfg.to_dict()["storage"]["s3"]["secret"] == "s3cr3t"  # what the nodes get
    assert "storage" not in cfg.public_dict() and "storage" not in fingerprint(cfg, 1)
    with pytest.raises(ConfigError, match="config key 'storage.ftp': unknown storage scheme; known: s3, gs, abfs"):
        resolve_config({"storage": {"ftp": {}}}, {})
    with pytest.raises(ConfigError, match="config key 'storage.s3': expected a mapping"):
        resolve_config({"storage": {"s3": "key=x"}}, {})
    assert TrainConfig().storage == {}


def test_bad_storage_options_are_named(s3):
    storage.configure({"s3": {"no_such_option": 1}})
    with pytest.raises(ConfigError, match=r"bad option in the storage: s3: config section"):
        check_readable(f"{s3.url}/x", "--data-dir")


def test_credentials_set_on_the_driver_are_forwarded_to_remote_executors_only(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    env = prepare_storage({}, {}, {}) | storage.forwarded_env(["s3://bucket/x", "/local/path"])
    assert env["AWS_SECRET_ACCESS_KEY"] == "s3cr3t" and "AWS_SESSION_TOKEN" not in env
    assert storage.forwarded_env(["/local/only"]) == {}
    cluster = session_settings(parse_master("spark://10.0.0.1:7077"), None, {}, env)
    assert cluster["spark.executorEnv.AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert "secret" in cluster["spark.redaction.regex"]
    user_set = session_settings(parse_master("spark://10.0.0.1:7077"), None,
                                {"spark.executorEnv.AWS_ENDPOINT_URL": "http://other"}, env)
    assert "spark.executorEnv.AWS_ENDPOINT_URL" not in user_set  # the user's own setting wins
    local = session_settings(parse_master("local[2]"), None, {}, env)
    assert not any(key.startswith("spark.executorEnv.AWS") for key in local)  # same process: nothing to send


def test_local_paths_keep_working_as_before(tmp_path):
    folder = tmp_path / "out"
    storage.makedirs(str(folder))
    write_json(str(folder / "a.json"), {"x": 1})
    assert storage.listdir(f"file://{folder}") == ["a.json"]
    assert list(storage.walk_files(str(tmp_path))) == ["out/a.json"]
