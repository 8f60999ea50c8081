"""docker/Dockerfile and docker/docker-compose.yml, checked as files (no Docker engine needed)."""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath

import pytest
import yaml

from tests.conftest import REPO

DOCKER = REPO / "docker"
SERVICES = ("spark-master", "spark-worker-1", "spark-worker-2", "train")


def setup_version() -> str:
    found = re.search(r'\bversion\s*=\s*"([^"]+)"', (REPO / "setup.py").read_text())
    assert found, "setup.py names no version"
    return found.group(1)


def spark_defaults() -> dict[str, str]:
    conf = {}
    for line in (REPO / "conf" / "spark-defaults.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split(None, 1)
            conf[key] = value.strip()
    return conf


def memory_mb(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([mg])", text.lower()).groups()
    return int(number) * (1024 if unit == "g" else 1)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.strip().startswith("#") or not (line.strip() or pending):
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            instructions.append((word.upper(), rest.strip()))
            pending = ""
    return instructions


def option(command: list[str], name: str) -> str:
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def master_url(compose: dict) -> str:
    master = compose["services"]["spark-master"]
    host = option(master["command"], "--host")
    assert host in (master.get("hostname"), "spark-master"), "workers must reach the master by that name"
    return f"spark://{host}:{option(master['command'], '--port')}"


def shared_mount(service: dict) -> tuple[str, PurePosixPath]:
    """(named volume, mount point) of the service's one named volume."""
    named = [v.split(":") for v in service["volumes"] if not v.startswith((".", "/"))]
    assert len(named) == 1, service["volumes"]
    return named[0][0], PurePosixPath(named[0][1])


def test_services_and_commands(compose: dict):
    services = compose["services"]
    assert set(SERVICES) <= set(services)
    assert "org.apache.spark.deploy.master.Master" in services["spark-master"]["command"]
    for name in ("spark-worker-1", "spark-worker-2"):
        assert "org.apache.spark.deploy.worker.Worker" in services[name]["command"]
    train = services["train"]["command"]
    assert train[0] == "spark-submit" and "jobs/train.py" in train


def test_workers_and_job_point_at_the_master(compose: dict):
    url = master_url(compose)
    for name in ("spark-worker-1", "spark-worker-2"):
        worker = compose["services"][name]
        assert worker["command"][-1] == url
        assert "spark-master" in worker["depends_on"]
    train = compose["services"]["train"]
    assert option(train["command"], "--master") == url
    assert {"spark-worker-1", "spark-worker-2", "spark-master"} <= set(train["depends_on"])


def test_web_ui_is_published(compose: dict):
    master = compose["services"]["spark-master"]
    ui_port = option(master["command"], "--webui-port")
    published = [str(p) for p in master["ports"]]
    assert any(p.split(":")[-1] == ui_port for p in published), published


def test_train_command_files_exist_and_are_in_the_image(compose: dict, dockerfile: list[tuple[str, str]]):
    command = compose["services"]["train"]["command"]
    files = ["jobs/train.py", option(command, "--properties-file")]
    copied = {src for word, args in dockerfile if word == "COPY" for src in shlex.split(args)[:-1]}
    workdir = [args for word, args in dockerfile if word == "WORKDIR"][-1]
    assert workdir.startswith("/")
    for relative in files:
        assert not relative.startswith("/"), "paths relative to WORKDIR, where the project is copied"
        assert (REPO / relative).is_file(), relative
        assert relative.split("/")[0] in copied, f"{relative} is not copied into the image"


def test_job_outputs_are_on_the_shared_volume(compose: dict):
    services = compose["services"]
    volume, mount = shared_mount(services["train"])
    assert volume in compose["volumes"], "a named volume, declared at the top level"
    command = services["train"]["command"]
    for name in ("--model-dir", "--export-dir"):
        path = PurePosixPath(option(command, name))
        assert path.is_absolute() and path.is_relative_to(mount), f"{name} {path} is not under {mount}"
    for name in SERVICES:
        assert shared_mount(services[name]) == (volume, mount), f"{name} does not mount the shared volume"


def test_job_binds_container_addresses(compose: dict):
    command = compose["services"]["train"]["command"]
    assert option(command, "--input-mode") in ("spark", "tensorflow")
    if "--bind-address" in command:
        assert option(command, "--bind-address") == "auto", "127.0.0.1 cannot reach the other containers"


def test_worker_sizes_match_spark_defaults(compose: dict):
    conf = spark_defaults()
    workers = [compose["services"][f"spark-worker-{n}"]["command"] for n in (1, 2)]
    cores = [int(option(w, "--cores")) for w in workers]
    assert cores == [int(conf["spark.executor.cores"])] * 2, "one executor, so one TF node, per worker"
    assert sum(cores) == int(conf["spark.cores.max"])
    assert conf["spark.task.cpus"] == conf["spark.executor.cores"]
    for w in workers:
        assert memory_mb(option(w, "--memory")) >= memory_mb(conf["spark.executor.memory"])


def test_dockerfile_base_jdk_and_install(dockerfile: list[tuple[str, str]]):
    base = [args for word, args in dockerfile if word == "FROM"]
    assert len(base) == 1 and base[0].startswith("python:3.11"), base
    runs = " ".join(args for word, args in dockerfile if word == "RUN")
    assert re.search(r"apt-get install .*openjdk-17-jre-headless", runs)
    assert re.search(r"pip install [^&;]*\s\.(\s|$)", runs), "installs the project itself: pip install ."
    copied = {src for word, args in dockerfile if word == "COPY" for src in shlex.split(args)[:-1]}
    # setup.py reads README.md; find_packages(include=["tfos_facecnn", ...]) needs the package dir
    assert {"setup.py", "README.md", "tfos_facecnn"} <= copied
    env = " ".join(args for word, args in dockerfile if word == "ENV")
    assert re.search(r"SPARK_HOME=/usr/local/lib/python3\.11/site-packages/pyspark\b", env)
    assert "PYSPARK_PYTHON=" in env and "TF_USE_LEGACY_KERAS=1" in env


def test_image_version_matches_setup_py(compose: dict, dockerfile: list[tuple[str, str]]):
    from tfos_facecnn import __version__

    version = setup_version()
    assert __version__ == version
    args = dict(a.split("=", 1) for word, a in dockerfile if word == "ARG" and "=" in a)
    assert args.get("VERSION") == version, "update ARG VERSION in docker/Dockerfile with setup.py's version"
    for name in SERVICES:
        assert compose["services"][name]["image"].endswith(f":{version}")
