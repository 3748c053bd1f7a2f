"""MQTT end to end against a real mosquitto: status and Last Will, events, commands, TLS + password,
and fault tests that count every event through broker restarts and daemon kill -9."""

import base64
import json
import subprocess
import time
from pathlib import Path

import pytest

from edge.messaging.outbox import Outbox
from edge.samples import sample
from testkit.brokers import Broker, Subscriber
from testkit.doors import BASE, DaemonProcess, assert_every_event_once_in_order, looping, signed
from tests.conftest import command, validate, write_yaml


def test_events_status_and_health_reach_a_subscriber(mqtt_config, tmp_path, broker, mobilefacenet_model):
    """The door's default identity (FaceNet fused with MobileFaceNet) end to end."""
    mqtt_config["embedder"] = {"model": mqtt_config["embedder"]["model"], "fuse_with": [str(mobilefacenet_model)]}
    sub = Subscriber(broker.port, [f"{BASE}/#"])
    daemon = DaemonProcess(mqtt_config, tmp_path)
    assert daemon.wait(120) == 0, (tmp_path / "daemon.log").read_text()
    assert sub.wait_for(lambda: len(sub.on(f"{BASE}/events")) >= 4)
    events = sub.events(f"{BASE}/events")
    assert [(e["type"], e["name"]) for e in events] == [
        ("check_in", "Barack Obama"), ("unknown_face", None), ("check_in", "Joe Biden"), ("unknown_face", None)]
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    for event in events:
        validate(event, "event")
    assert sub.on(f"{BASE}/status")[0] == b"online" and sub.on(f"{BASE}/status")[-1] == b"offline"
    for status in sub.on(f"{BASE}/status"):
        validate(status.decode(), "status")
    health = sub.events(f"{BASE}/health")
    assert health, "a health message was published"
    validate(health[-1], "health")
    assert {"fps", "latency_ms", "outbox_depth", "uptime_s", "models"} <= set(health[-1])
    assert health[-1]["models"]["embedder"].startswith("fusion:facenet-keras-ms1m-int8full-")
    assert "+mobilefacenet-" in health[-1]["models"]["embedder"]
    matcher = health[-1]["matcher"]
    assert matcher["operating_point"]["model_id"] == health[-1]["models"]["embedder"]
    assert matcher["threshold"] <= matcher["photo_threshold"] <= matcher["operating_point"]["threshold"]
    assert 0 < matcher["operating_point"]["stranger_far_bound"] < 0.05
    assert Outbox(tmp_path / "state" / "outbox.sqlite", "x").depth() == 0, "every event was acknowledged"
    sub.close()


def test_last_will_says_offline_after_kill_9_and_online_after_restart(mqtt_config, tmp_path, broker):
    sub = Subscriber(broker.port, [f"{BASE}/status"])
    daemon = DaemonProcess(looping(mqtt_config), tmp_path)
    assert sub.wait_for(lambda: sub.on(f"{BASE}/status")[-1:] == [b"online"], 60)
    daemon.kill()
    assert sub.wait_for(lambda: sub.on(f"{BASE}/status")[-1:] == [b"offline"], 20), "Last Will not delivered"
    daemon = DaemonProcess(looping(mqtt_config), tmp_path)
    assert sub.wait_for(lambda: sub.on(f"{BASE}/status")[-1:] == [b"online"], 60)
    assert daemon.terminate() == 0
    assert sub.wait_for(lambda: sub.on(f"{BASE}/status")[-1:] == [b"offline"], 10)
    sub.close()


def test_no_event_lost_while_the_broker_restarts_three_times(mqtt_config, tmp_path, broker):
    sub = Subscriber(broker.port, [f"{BASE}/events", f"{BASE}/status"])
    daemon = DaemonProcess(looping(mqtt_config), tmp_path)
    assert sub.wait_for(lambda: len(sub.on(f"{BASE}/events")) >= 3, 60)
    for _ in range(3):
        online = sub.live_online(BASE)
        broker.stop()
        time.sleep(2.0)  # the daemon keeps deciding events into its outbox meanwhile
        broker.start()
        # The door itself is back (its live `online`), not merely the broker replaying what it had queued
        # for this subscriber: counting events alone let the stop below come during the door's back-off.
        assert sub.wait_for(lambda: sub.live_online(BASE) > online, 60), "the door reconnected"
        before = len(sub.on(f"{BASE}/events"))
        assert sub.wait_for(lambda: len(sub.on(f"{BASE}/events")) > before + 2, 60)
    assert daemon.terminate() == 0, (tmp_path / "daemon.log").read_text()
    outbox = Outbox(tmp_path / "state" / "outbox.sqlite", "x")
    last_seq = outbox.last_seq()
    assert outbox.depth() == 0
    assert sub.wait_for(lambda: {e["seq"] for e in sub.events(f"{BASE}/events")} >= set(range(1, last_seq + 1)))
    assert_every_event_once_in_order(sub.events(f"{BASE}/events"), last_seq)
    assert last_seq >= 10
    sub.close()


def test_a_door_fails_over_to_the_next_broker_and_loses_nothing(mqtt_config, tmp_path, broker):
    """mqtt.hosts: two independent brokers (as two nodes of a site would be); the one in use is killed with
    -9, twice over (first one, then the other after the first is back): every event reaches a subscriber of
    one broker or the other, health names the node in use, and the door publishes again within 5 s."""
    other = Broker(tmp_path / "broker-2").start()
    try:
        config = looping(mqtt_config)
        config["mqtt"] = dict(config["mqtt"], hosts=[f"127.0.0.1:{broker.port}", f"127.0.0.1:{other.port}"])
        subs = {broker.port: Subscriber(broker.port, [f"{BASE}/events", f"{BASE}/health"], "sub-1"),
                other.port: Subscriber(other.port, [f"{BASE}/events", f"{BASE}/health"], "sub-2")}

        def events() -> list[dict]:
            return sorted((e for sub in subs.values() for e in sub.events(f"{BASE}/events")), key=lambda e: e["seq"])

        daemon = DaemonProcess(config, tmp_path)
        assert wait_until_events(events, 3, 60)
        def broker_in_health(port: int) -> str | None:
            health = subs[port].events(f"{BASE}/health")
            return health[-1]["broker"] if health else None

        assert subs[broker.port].wait_for(lambda: broker_in_health(broker.port) == f"127.0.0.1:{broker.port}", 10)
        for dying, surviving in ((broker, other), (other, broker)):
            dying.kill()
            killed_at, before = time.monotonic(), len(subs[surviving.port].events(f"{BASE}/events"))
            assert subs[surviving.port].wait_for(
                lambda: len(subs[surviving.port].events(f"{BASE}/events")) > before, 30), "no failover"
            assert time.monotonic() - killed_at < 5.0, "the door published again within 5 s of its node dying"
            assert subs[surviving.port].wait_for(
                lambda: broker_in_health(surviving.port) == f"127.0.0.1:{surviving.port}", 10), "health names the node"
            assert subs[surviving.port].wait_for(
                lambda: len(subs[surviving.port].events(f"{BASE}/events")) > before + 3, 30)
            dying.start()
            assert subs[dying.port].wait_for(lambda: subs[dying.port].connected.is_set(), 30)
        assert daemon.terminate() == 0, (tmp_path / "daemon.log").read_text()
        outbox = Outbox(tmp_path / "state" / "outbox.sqlite", "x")
        last_seq = outbox.last_seq()
        assert outbox.depth() == 0 and last_seq >= 10
        assert wait_until_events(events, last_seq, 30)
        assert sorted({e["seq"] for e in events()}) == list(range(1, last_seq + 1)), "an event was lost"
        log = (tmp_path / "daemon.log").read_text()
        assert f"disconnected from 127.0.0.1:{broker.port}" in log and f"reconnecting to 127.0.0.1:{other.port}" in log
        for sub in subs.values():
            sub.close()
    finally:
        other.kill()


def wait_until_events(events, count: int, timeout: float) -> bool:
    from testkit.brokers import wait_until

    return wait_until(lambda: len({e["seq"] for e in events()}) >= count, timeout, 0.05)


def test_no_event_lost_when_the_daemon_is_killed_mid_publish(mqtt_config, tmp_path, broker):
    sub = Subscriber(broker.port, [f"{BASE}/events", f"{BASE}/status"])
    for round_ in range(3):
        daemon = DaemonProcess(looping(mqtt_config), tmp_path)
        before = len(sub.on(f"{BASE}/events"))
        assert sub.wait_for(lambda: len(sub.on(f"{BASE}/events")) >= before + 3, 60)
        time.sleep(0.1 * round_)
        daemon.kill()
    broker.stop()  # events decided while the broker is down and the daemon restarts
    daemon = DaemonProcess(looping(mqtt_config), tmp_path)
    time.sleep(3)
    before, online = len(sub.on(f"{BASE}/events")), sub.live_online(BASE)
    broker.start()
    assert sub.wait_for(lambda: sub.live_online(BASE) > online, 60), "the door connected"
    assert sub.wait_for(lambda: len(sub.on(f"{BASE}/events")) >= before + 10, 60), "the backlog arrives"
    assert daemon.terminate() == 0
    outbox = Outbox(tmp_path / "state" / "outbox.sqlite", "x")
    last_seq = outbox.last_seq()
    assert outbox.depth() == 0
    assert sub.wait_for(lambda: {e["seq"] for e in sub.events(f"{BASE}/events")} >= set(range(1, last_seq + 1)))
    assert_every_event_once_in_order(sub.events(f"{BASE}/events"), last_seq)
    sub.close()


def test_commands_are_validated_and_answered(mqtt_config, tmp_path, broker):
    sub = Subscriber(broker.port, [f"{BASE}/cmd/+/result", f"{BASE}/status", "backend/replies"])
    daemon = DaemonProcess(looping(mqtt_config), tmp_path)
    try:
        assert sub.wait_for(lambda: sub.on(f"{BASE}/status")[-1:] == [b"online"], 60)
        roster = command(sub, "roster", b"")
        assert roster["ok"] and sorted(p["name"] for p in roster["people"]) == ["Barack Obama", "Joe Biden"]
        assert command(sub, "reload", b"{}") == {"ok": True, "error": None, "people": 2,
                                                   "roster_version": roster["version"], "reloaded": []}
        # malformed, oversized, unknown, unsigned and wrong-shaped payloads are refused, never fatal
        bad = command(sub, "health", b"{not json")
        assert bad["ok"] is False and "not JSON" in bad["error"]
        big = command(sub, "enroll", b"x" * (mqtt_config["mqtt"].get("max_command_bytes", 4_000_000) + 1))
        assert big["ok"] is False and "exceeds" in big["error"]
        assert "unknown command" in command(sub, "selfdestruct", b"{}")["error"]
        assert "nests deeper" in command(sub, "health", b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}")["error"]
        assert "must be signed" in command(sub, "remove", b'{"person_id": "x"}')["error"]
        assert "must be signed" in command(sub, "enroll", b'{"name": "Eve", "images": ["AAAA"]}')["error"]
        assert "unknown field" in command(sub, "remove", signed("remove", {"person_id": "x", "force": True}))["error"]
        assert "no person" in command(sub, "remove", signed("remove", {"person_id": "nobody"}))["error"]
        assert "not allowed" in command(sub, "remove", signed("remove", {"person_id": "../../etc/passwd"}))["error"]
        assert "not a base64" in command(sub, "enroll", signed("enroll", {"name": "X", "images": ["!!!"]}))["error"]
        other_door = command(sub, "remove", signed("remove", {"person_id": "x"}, device="door-2"))
        assert "signature does not match" in other_door["error"]
        stale = command(sub, "snapshot", signed("snapshot", {}, ts=int(time.time()) - 3600))
        assert "from this door's clock" in stale["error"]
        # enrol Eileen Collins from a JPEG over MQTT; the reply also goes to the MQTT 5 response topic
        jpeg = base64.b64encode(sample("collins-1.jpg").read_bytes()).decode()
        request = {"name": "Eileen Collins", "images": [jpeg]}
        validate(request, "command", "enroll")
        envelope = signed("enroll", request)
        validate(json.loads(envelope), "command", "signed")
        enrolled = command(sub, "enroll", envelope, response_topic="backend/replies", correlation=b"req-42")
        assert enrolled["ok"], enrolled
        assert enrolled["people"] == 3
        assert sub.wait_for(lambda: sub.on("backend/replies"))
        assert json.loads(sub.on("backend/replies")[-1])["person_id"] == enrolled["person_id"]
        assert "replayed" in command(sub, "enroll", envelope)["error"], "the same signed request works once"
        removed = command(sub, "remove", signed("remove", {"person_id": enrolled["person_id"]}))
        assert removed["ok"] and removed["people"] == 2
        snap = command(sub, "snapshot", signed("snapshot", {}))
        assert snap["ok"] and snap["width"] == 640 and snap["height"] == 480
        assert base64.b64decode(snap["jpeg_base64"])[:2] == b"\xff\xd8"
        health = command(sub, "health", b"")
        assert health["ok"] and health["health"]["roster"]["people"] == 2
        assert health["health"]["roster"]["adapted"] == 0  # mqtt_config turns learning from visits off
        assert daemon.proc.poll() is None, "the daemon survived every bad command"
    finally:
        assert daemon.terminate() == 0
        sub.close()
    log = (tmp_path / "daemon.log").read_text()
    assert "command health refused: payload is not JSON" in log and "command remove: command 'remove' must be signed" in log


def make_certs(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for localhost / 127.0.0.1, made with openssl for this test."""
    folder.mkdir(parents=True, exist_ok=True)
    run = lambda *args: subprocess.run(args, cwd=folder, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=facecheck-test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
        "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    return {name: folder / f"{name}" for name in ("ca.pem", "server.pem", "server.key")}


def test_tls_with_password_auth(mqtt_config, tmp_path):
    certs = make_certs(tmp_path / "certs")
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "door", "s3cret"], check=True,
                   capture_output=True)
    tls_broker = Broker(tmp_path / "tls-broker", extra_conf=(
        f"allow_anonymous false\npassword_file {passwords}\ncafile {certs['ca.pem']}\n"
        f"certfile {certs['server.pem']}\nkeyfile {certs['server.key']}\n")).start()
    try:
        secret = tmp_path / "mqtt-password"
        secret.write_text("s3cret\n")
        mqtt_config["mqtt"] = dict(mqtt_config["mqtt"], port=tls_broker.port, host="localhost", username="door",
                                   password_file=str(secret), tls={"ca_file": str(certs["ca.pem"])})
        sub = Subscriber(tls_broker.port, [f"{BASE}/#"], tls={"ca_certs": str(certs["ca.pem"])},
                         auth=("door", "s3cret"))
        daemon = DaemonProcess(mqtt_config, tmp_path)
        assert daemon.wait(120) == 0
        assert sub.wait_for(lambda: len(sub.on(f"{BASE}/events")) >= 4)
        sub.close()
        # a wrong password is refused by the broker: the daemon keeps its events in the outbox
        secret.write_text("wrong\n")
        daemon = DaemonProcess(mqtt_config, tmp_path, name="wrong.yaml")
        assert daemon.wait(120) == 0
        assert Outbox(tmp_path / "state" / "outbox.sqlite", "x").depth() == 4
        assert "refused the connection" in (tmp_path / "daemon.log").read_text()
    finally:
        tls_broker.kill()


def test_missing_tls_or_password_file_refuses_to_start(mqtt_config, tmp_path):
    from tests.conftest import run_cli

    mqtt_config["mqtt"] = dict(mqtt_config["mqtt"], tls={"ca_file": str(tmp_path / "missing-ca.pem")})
    result = run_cli("run", "-c", str(write_yaml(tmp_path / "c.yaml", mqtt_config)))
    assert result.returncode == 2
    assert "mqtt.tls.ca_file" in result.stderr and "missing-ca.pem" in result.stderr
    mqtt_config["mqtt"] = dict(mqtt_config["mqtt"], tls=None, password_file=str(tmp_path / "nopass"))
    result = run_cli("run", "-c", str(write_yaml(tmp_path / "c2.yaml", mqtt_config)))
    assert result.returncode == 2 and "mqtt.password_file" in result.stderr


def test_mqtt_3_1_1_works_too(mqtt_config, tmp_path, broker):
    mqtt_config["mqtt"] = dict(mqtt_config["mqtt"], protocol="3.1.1")
    sub = Subscriber(broker.port, [f"{BASE}/#"])
    daemon = DaemonProcess(mqtt_config, tmp_path)
    assert daemon.wait(120) == 0, (tmp_path / "daemon.log").read_text()
    assert sub.wait_for(lambda: len(sub.on(f"{BASE}/events")) >= 4)
    assert [e["seq"] for e in sub.events(f"{BASE}/events")] == [1, 2, 3, 4]
    assert sub.on(f"{BASE}/status")[-1] == b"offline"
    sub.close()


def test_a_clean_stop_logs_no_error(tmp_path, broker, caplog):
    """paho's network thread can poll once more after our own disconnect and log "Client is not connected"
    as an ERROR. An operator must not find errors in the journal after a clean restart, so 150
    connect/stop rounds log none. The race is timing-bound: without the link's filter this test failed
    3 of 5 runs here."""
    import logging

    from edge.config import config_from_dict
    from edge.messaging.link import MqttLink

    caplog.set_level(logging.DEBUG)  # paho's packet logging also widens the window: the race shows more often
    for round_ in range(150):
        link = MqttLink(config_from_dict({"device_id": f"door-{round_}", "mqtt": {"enabled": True, "port": broker.port}},
                                         base_dir=tmp_path))
        link.start()
        assert link.connected.wait(10), "the link connected"
        link.stop()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_an_event_the_client_dropped_unacknowledged_is_published_again(tmp_path, broker):
    """The outbox, not the publisher's bookkeeping, says what is delivered: an event handed to paho that never
    came back acknowledged is handed over again (seen after broker restarts: events left in the outbox
    until the next start). Here the publisher is told it handed over three events paho never saw."""
    from edge.config import config_from_dict
    from edge.events import Decision
    from edge.messaging.link import MqttLink
    from edge.messaging.publisher import OutboxPublisher

    config = config_from_dict({"device_id": "test-door", "mqtt": {"enabled": True, "port": broker.port}},
                              base_dir=tmp_path)
    sub = Subscriber(broker.port, [f"{BASE}/events"])
    outbox = Outbox(tmp_path / "outbox.sqlite", "test-door")
    for _ in range(3):
        outbox.append(Decision("check_in", "p1", "Ann", 0.9, "confirm"))
    link = MqttLink(config)
    publisher = OutboxPublisher(outbox, link)
    link.start()
    try:
        assert link.connected.wait(10)
        publisher._submitted_seq = 3  # handed over, as far as the publisher knows; paho never had them
        assert publisher.drain(10), "the strays were published again and acknowledged"
        assert outbox.depth() == 0
        assert sub.wait_for(lambda: sorted(e["seq"] for e in sub.events(f"{BASE}/events")) == [1, 2, 3])
    finally:
        link.stop()
        sub.close()


def test_a_stop_with_the_broker_away_says_how_many_events_stay(mqtt_config, tmp_path, broker):
    """A clean stop drains the outbox while the broker is reachable; when it is not, the log says exactly how
    many events stay in the outbox and why, and the next start publishes them."""
    sub = Subscriber(broker.port, [f"{BASE}/events"])
    daemon = DaemonProcess(looping(mqtt_config), tmp_path)
    assert sub.wait_for(lambda: len(sub.on(f"{BASE}/events")) >= 2, 60)
    broker.stop()
    time.sleep(3)  # the replay loops without pause: events pile up in the outbox meanwhile
    assert daemon.terminate() == 0
    outbox_path = tmp_path / "state" / "outbox.sqlite"
    left = Outbox(outbox_path, "x").depth()
    log = (tmp_path / "daemon.log").read_text()
    assert left >= 1
    assert f"stopping with {left} event(s) in the outbox: the broker 127.0.0.1:{broker.port} is not connected" in log
    broker.start()
    daemon = DaemonProcess(mqtt_config, tmp_path)  # the clip once more, then it ends
    assert daemon.wait(120) == 0
    last_seq = Outbox(outbox_path, "x").last_seq()
    assert Outbox(outbox_path, "x").depth() == 0
    assert sub.wait_for(lambda: {e["seq"] for e in sub.events(f"{BASE}/events")} >= set(range(1, last_seq + 1)))
    sub.close()


@pytest.mark.parametrize("identity", ["facenet alone", "default (fused)"])
def test_enroll_from_the_doors_own_camera_then_check_in_on_the_next_pass(mqtt_config, tmp_path, broker, identity,
                                                                          mobilefacenet_model):
    """The enroll command's camera form: whoever stands frontal in front of the door's camera (the looping demo
    clip: a replay camera, the camera node itself cannot run here) is enrolled from the frames the loop saw, and
    checked in as that name when the clip comes round again; with FaceNet alone and with the default identity (the
    camera enrolment then stores both models' templates). A second camera enrolment waits for the first."""
    if identity.startswith("default"):
        mqtt_config["embedder"] = {"model": mqtt_config["embedder"]["model"], "fuse_with": [str(mobilefacenet_model)]}
    sub = Subscriber(broker.port, [f"{BASE}/cmd/+/result", f"{BASE}/status", f"{BASE}/events"])
    mqtt_config["camera"] = dict(mqtt_config["camera"], realtime=True)
    daemon = DaemonProcess(looping(mqtt_config), tmp_path)
    try:
        assert sub.wait_for(lambda: sub.on(f"{BASE}/status")[-1:] == [b"online"], 60)
        request = {"name": "Door Visitor", "camera": {"frames": 1, "timeout_s": 30}}
        validate(request, "command", "enroll")
        assert "must be a whole number" in command(sub, "enroll", signed(
            "enroll", {"name": "X", "camera": {"frames": 0}}))["error"]
        enrolled = command(sub, "enroll", signed("enroll", request))
        assert enrolled["ok"], enrolled
        validate(enrolled, "command-result")
        assert enrolled["people"] == 3 and [f["pose"] for f in enrolled["frames"]] == ["frontal"]
        assert sub.wait_for(lambda: any(e["type"] == "check_in" and e["name"] == "Door Visitor"
                                        for e in sub.events(f"{BASE}/events")), 60), "not recognised on a later pass"
    finally:
        assert daemon.terminate() == 0
        sub.close()
