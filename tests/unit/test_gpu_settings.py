"""GPU amounts through Spark's resource scheduling: what is refused before any session starts, and what a
node records of the GPUs it was given."""

from __future__ import annotations

import pytest

from tfos_facecnn.config import ConfigError
from tfos_facecnn.node import visible_gpus
from tfos_facecnn.spark_env import EXECUTOR_GPUS, TASK_GPUS, check_gpu_amounts


@pytest.mark.parametrize("executor,task", [(None, None), ("1", "1"), ("4", "2"), ("2", "1"), ("1", "0.5"),
                                           ("2", "0.25"), (" 2 ", "2.0")])
def test_amounts_that_split_into_whole_tasks_pass(executor, task):
    conf = {key: value for key, value in ((EXECUTOR_GPUS, executor), (TASK_GPUS, task)) if value is not None}
    check_gpu_amounts({"spark.executor.cores": "1", **conf})


@pytest.mark.parametrize("executor,task,message", [
    ("1", "2", f"{TASK_GPUS}=2 is more than {EXECUTOR_GPUS}=1: no task could start; set {TASK_GPUS}=1"),
    ("3", "2", f"{EXECUTOR_GPUS}=3 does not split into tasks of {TASK_GPUS}=2: GPUs would sit idle; "
               f"set {TASK_GPUS}=3"),
    ("4", "1.5", f"{EXECUTOR_GPUS}=4 does not split into tasks of {TASK_GPUS}=1.5"),
    ("2", "0.75", f"{TASK_GPUS}=0.75: a task's share of a GPU must be at most 0.5 (or whole GPUs); "
                  f"set {TASK_GPUS}=2"),
    ("2", None, f"{EXECUTOR_GPUS}=2 without {TASK_GPUS}: Spark would give the TF node's task no GPU address; "
                f"set {TASK_GPUS}=2"),
    (None, "1", f"{TASK_GPUS}=1 needs {EXECUTOR_GPUS}: set it to the GPUs of each executor (a multiple of 1)"),
    ("1.5", "1", f"{EXECUTOR_GPUS}=1.5 must be a whole number of GPUs"),
    ("two", "1", f"{EXECUTOR_GPUS}=two is not a number; give the GPUs as a number, e.g. {EXECUTOR_GPUS}=1"),
    ("0", "1", f"{EXECUTOR_GPUS}=0 must be above 0; remove it to run without GPUs"),
])
def test_amounts_that_do_not_divide_are_one_line_naming_the_setting_and_the_fix(executor, task, message):
    conf = {key: value for key, value in ((EXECUTOR_GPUS, executor), (TASK_GPUS, task)) if value is not None}
    with pytest.raises(ConfigError) as caught:
        check_gpu_amounts(conf)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_node_records_the_addresses_it_was_given(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert visible_gpus() == ["1", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # TFoS's value when a node gets no GPU
    assert visible_gpus() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() is None  # not restricted: every GPU of the host
