"""What a killed multi-host cluster leaves behind (namespaces, links, the bridge) does not block the next one:
`create_network` removes it when nothing runs there, and refuses, naming the PIDs, while something does.
Real namespaces, no Spark: a few seconds."""

from __future__ import annotations

import subprocess

import pytest

from tests.multihost import require_netns, wait_until
from tfos_facecnn import netns

pytestmark = [pytest.mark.multihost, pytest.mark.timeout(120)]
GONE_S = 15  # for a SIGKILLed process to leave its namespace


def test_a_killed_clusters_leftovers_are_removed_unless_something_still_runs_there():
    require_netns()
    left = netns.create_network(2)  # a cluster whose launcher was killed: never destroyed
    sleeper = subprocess.Popen(netns.host_command(left.hosts[1], ["sleep", "600"]))
    try:
        assert wait_until(lambda: sleeper.pid in netns.pids(left.hosts[1]), GONE_S) is not None
        with pytest.raises(RuntimeError) as refused:
            netns.create_network(3)
        assert str(refused.value) == (f"a multi-host cluster already runs on this machine (tfmh2: pid {sleeper.pid}); "
                                      "stop it first: python -m tfos_facecnn.cluster stop --state-dir DIR "
                                      "(the cluster's)")
        assert sorted(netns.leftovers()) == ["tfmh1", "tfmh1r", "tfmh2", "tfmh2r", "tfmhbr"], "a refusal removed them"
        sleeper.kill()
        sleeper.wait(timeout=GONE_S)
        assert wait_until(lambda: not netns.pids(left.hosts[1]), GONE_S) is not None
        said: list[str] = []
        network = netns.create_network(3, say=said.append)
        try:
            assert said == ["removed what an earlier multi-host cluster left behind, with nothing running in it: "
                            "tfmh1, tfmh1r, tfmh2, tfmh2r, tfmhbr"]
            assert [h.name for h in network.hosts] == ["tfmh1", "tfmh2", "tfmh3"]
            shown = subprocess.run(["ip", "-n", "tfmh3", "-br", "addr", "show", "eth0"], capture_output=True,
                                   text=True, timeout=30)
            assert "10.231.0.3/24" in shown.stdout, shown.stdout + shown.stderr
        finally:
            netns.destroy_network(network)
        assert netns.leftovers() == []
    finally:
        sleeper.kill()
        netns.destroy_leftovers()
