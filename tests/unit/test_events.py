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


def test_silent_and_stalled_nodes_are_found():
    import time

    server = EventServer("127.0.0.1")
    try:
        quiet = EventClient(server.address, server.token, "worker:0")
        stuck = EventClient(server.address, server.token, "chief:0")
        quiet.send("started")
        stuck.send("started")
        stuck.send("heartbeat", batches=7, phase="train")
        assert server.wait_for(lambda s: "chief:0" in s.progress, timeout_s=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not server.stalled_nodes(0.3):
            stuck.send("heartbeat", batches=7, phase="train")  # alive, but the count does not move
        sent = time.monotonic()
        stuck.send("heartbeat", batches=7, phase="train")
        assert server.wait_for(lambda s: s.last_seen["chief:0"] >= sent, timeout_s=10)
        assert [node for node, _, _ in server.silent_nodes(0.3)] == ["worker:0"]
        assert [(node, batches) for node, batches, _ in server.stalled_nodes(0.3)] == [("chief:0", 7)]
        stuck.send("heartbeat", batches=8, phase="train")
        assert server.wait_for(lambda s: s.progress["chief:0"][0] == 8, timeout_s=10)
        assert server.stalled_nodes(5) == []
    finally:
        server.stop()


def test_a_client_sending_a_byte_at_a_time_stalls_no_heartbeat_and_is_dropped_at_its_deadline(monkeypatch, caplog):
    import logging
    import time

    from tfos_facecnn import events

    monkeypatch.setattr(events, "EVENT_DEADLINE_S", 3.0)
    server = EventServer("127.0.0.1")
    try:
        slow = socket.create_connection(server.address)
        client = EventClient(server.address, server.token, "chief:0")
        with caplog.at_level(logging.WARNING, logger="tfos_facecnn.events"):
            for batches in range(1, 6):  # heartbeats every 0.5 s while the slow client trickles bytes
                slow.sendall(b"{")
                started = time.monotonic()
                assert client.send("heartbeat", batches=batches, phase="train")
                assert server.wait_for(lambda s, b=batches: s.progress.get("chief:0", (0,))[0] == b, timeout_s=2)
                assert time.monotonic() - started < 2
                time.sleep(0.5)  # the pace of the trickle, not a wait for the server
            deadline = time.monotonic() + 5
            while "incomplete after 3.0 s" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)  # polls the server's log for the drop, under a deadline
        assert "dropped a node event incomplete after 3.0 s" in caplog.text
        slow.settimeout(5)
        assert slow.recv(1) == b""  # the server closed it
        slow.close()
    finally:
        server.stop()
