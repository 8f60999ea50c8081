import json
import socket

from tfos_facecnn.events import EventClient, EventServer


def test_events_reach_the_driver_and_strangers_are_dropped():
    seen = []
    server = EventServer("127.0.0.1", on_event=seen.append)
    try:
        with socket.create_connection(server.address) as conn:  # no token: dropped
            conn.sendall(json.dumps({"kind": "done", "node": "x"}).encode())
        client = EventClient(server.address, server.token, "chief:0")
        assert client.send("epoch", epoch=1, epochs=2, metrics={"loss": 0.5}, images_per_s=10.0)
        assert client.send("done", items_fed=4)
        assert server.wait_for(lambda s: "chief:0" in s.done, timeout_s=10)
        assert [e["kind"] for e in seen] == ["epoch", "done"]
        assert server.state.epochs[0]["metrics"] == {"loss": 0.5}
        assert "x" not in server.state.done
    finally:
        server.stop()


def test_a_failure_ends_the_wait_early():
    server = EventServer("127.0.0.1")
    try:
        EventClient(server.address, server.token, "worker:0").send("failed", error="boom", log_tail=[])
        assert server.wait_for(lambda s: len(s.done) == 2, timeout_s=30) is False
        assert server.state.failures[0]["error"] == "boom"
    finally:
        server.stop()


def test_client_never_raises_when_the_driver_is_gone():
    server = EventServer("127.0.0.1")
    address = server.address
    server.stop()
    assert EventClient(address, "t", "chief:0").send("epoch") is False
