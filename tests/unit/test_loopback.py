from pathlib import Path

from tfos_facecnn.loopback import relaunch_command


def test_the_relaunch_repeats_every_resolved_setting_the_script_and_its_arguments(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARK_HOME", str(tmp_path / "spark"))
    conf = {"spark.master": "local[*]", "spark.app.submitTime": "1", "spark.submit.deployMode": "client",
            "spark.ui.enabled": "false", "spark.executor.memory": "2g"}
    command = relaunch_command("local-cluster[2,1,1024]", conf, ["jobs/train.py", "--epochs", "2"])
    assert command == [
        str(tmp_path / "spark" / "bin" / "spark-submit"), "--master", "local-cluster[2,1,1024]",
        "--conf", "spark.executor.memory=2g", "--conf", "spark.ui.enabled=false",
        str(Path("jobs/train.py").resolve()), "--epochs", "2",
    ]
