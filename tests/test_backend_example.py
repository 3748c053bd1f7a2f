"""The example backend against a real mosquitto: idempotent by event_id, load split by a shared subscription."""

import json
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from backend_subscriber import AttendanceStore, Worker, open_embedding


def event(seq: int) -> dict:
    return {"event_id": str(uuid.uuid4()), "seq": seq, "type": "check_in", "device_id": "door-9", "person_id": "p",
            "name": "Ann", "score": 0.9, "gesture": "confirm", "ts": "2026-11-24T08:00:00.000Z"}


def test_store_is_idempotent_by_event_id(tmp_path):
    store = AttendanceStore(tmp_path / "a.sqlite")
    e = json.dumps(event(1)).encode()
    assert store.store(e) is True
    assert store.store(e) is False
    assert store.count() == 1


def test_the_backend_recipe_opens_a_capture_embedding_sealed_by_a_door(tmp_path):
    """The door's sealing (edge.security.sealing) and the example's self-contained recipe agree, with key files made by
    `facecheck keys generate backend`."""
    import base64

    import numpy as np

    from edge.config import config_from_dict
    from edge.recognition.decision import Observation
    from edge.security.sealing import generate
    from tests.conftest import ROOT

    key, pub = generate("backend", tmp_path / "backend.key")
    config = config_from_dict({"models": {"dir": str(ROOT / "models")},
                               "confirmation": {"include_embedding_on_capture": True, "require_gesture": True,
                                                "recognise_frames": 1, "hold_frames": 1},
                               "privacy": {"backend_public_key_file": str(pub)}, "liveness": {"policy": "off"}}, ROOT)
    from edge.service.assembly import build_confirmation

    machine = build_confirmation(config)
    vector = np.random.default_rng(0).normal(size=128).astype(np.float32)
    decisions = [d for i, gesture in enumerate((None, "capture"))
                 for d in machine.update(i / 10, [Observation(1, True, "p", "Ann", 0.9, gesture, vector)])]
    (capture,) = decisions
    event = {**capture.extra, "type": capture.type}
    opened = open_embedding(event, base64.b64decode(key.read_text()))
    assert np.allclose(opened, vector) and "embedding" not in event


def test_two_workers_in_a_share_group_split_the_events(tmp_path, broker):
    a = Worker(AttendanceStore(tmp_path / "a.sqlite"), "127.0.0.1", broker.port, "attendance",
               "facecheck/+/events", "worker-a").start()
    b = Worker(AttendanceStore(tmp_path / "b.sqlite"), "127.0.0.1", broker.port, "attendance",
               "facecheck/+/events", "worker-b").start()
    assert a.subscribed.wait(10) and b.subscribed.wait(10)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="door-9", protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    sent = [event(i) for i in range(1, 201)]
    for e in sent:
        publisher.publish("facecheck/door-9/events", json.dumps(e), qos=1).wait_for_publish(5)
    publisher.publish("facecheck/door-9/events", b"garbage", qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 20
    while a.store.count() + b.store.count() < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    ids_a = {r[0] for r in a.store.db.execute("SELECT event_id FROM attendance")}
    ids_b = {r[0] for r in b.store.db.execute("SELECT event_id FROM attendance")}
    assert ids_a and ids_b, "both workers took a share"
    assert not ids_a & ids_b, "no event went to both"
    assert ids_a | ids_b == {e["event_id"] for e in sent}, "together they stored every event"
    publisher.loop_stop()
    a.stop()
    b.stop()
