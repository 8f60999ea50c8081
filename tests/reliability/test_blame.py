"""The right node blamed on local-cluster[2,1,1024]: a chief killed as it saves the trained model is
named, not "a peer" of the worker whose save it left waiting. (A worker whose executor is killed is named
first, not the chief nor TFoS's 'No executor_id file found': test_failures.py, in both input modes.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.reliability.test_failures import error_block, run_with_fault

pytestmark = pytest.mark.spark


@pytest.mark.timeout(600)
def test_a_chief_killed_while_saving_is_named_not_the_worker_it_left_waiting(tmp_path: Path):
    result = run_with_fault(tmp_path, "chief:0@save:kill")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    error = error_block(output)
    assert re.match(r"error: TF node chief:0 on \S+ was lost: its TF process exited \(", error), error
    assert not error.startswith("error: TF node worker:0")
    # All 12 epochs ran, but Keras deletes its backup when training ends: the run starts again.
    assert error.endswith("run the same command to resume from epoch 1 of 12"), error
