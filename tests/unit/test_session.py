"""The job's own session on an interrupt: Spark's console goes quiet before Spark stops (the job has
already said where it stopped), and stops either way. No JVM: the session builder is a stand-in."""

from __future__ import annotations

import pytest

from tfos_facecnn import session as session_module
from tfos_facecnn.session import JobSession
from tfos_facecnn.spark_env import parse_master


class FakeContext:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def setLogLevel(self, level: str) -> None:  # noqa: N802 - pyspark's name
        self.calls.append(f"level {level}")


class FakeSpark:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.sparkContext = FakeContext(calls)

    def stop(self) -> None:
        self.calls.append("stop")


class FakeBuilder:
    def __init__(self, spark: FakeSpark) -> None:
        self.spark = spark

    def appName(self, _name: str) -> FakeBuilder:  # noqa: N802
        return self

    def master(self, _url: str) -> FakeBuilder:
        return self

    def config(self, _key: str, _value: str) -> FakeBuilder:
        return self

    def getOrCreate(self) -> FakeSpark:  # noqa: N802
        return self.spark


@pytest.fixture
def job_session(monkeypatch: pytest.MonkeyPatch) -> tuple[JobSession, list[str]]:
    from pyspark.sql import SparkSession

    calls: list[str] = []
    monkeypatch.setattr(SparkSession, "builder", FakeBuilder(FakeSpark(calls)))
    monkeypatch.setattr(session_module, "preflight", lambda *_: None)
    source = JobSession.__new__(JobSession)  # without joining a JVM
    source.master, source.conf = parse_master("local[*]"), {}
    return source, calls


def test_an_interrupt_quiets_sparks_console_before_spark_stops(job_session):
    source, calls = job_session
    with pytest.raises(KeyboardInterrupt), source.open("app", None, {}):
        raise KeyboardInterrupt
    assert calls == ["level WARN", "level OFF", "stop"]


def test_a_failure_leaves_sparks_errors_on_the_console(job_session):
    source, calls = job_session
    with pytest.raises(RuntimeError), source.open("app", None, {}):
        raise RuntimeError("a node failed")
    assert calls == ["level WARN", "stop"]
