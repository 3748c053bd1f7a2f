#!/usr/bin/env python3
"""Example backend: stores FaceCheck attendance events in SQLite, exactly once per event_id.

Delivery from the devices is at-least-once, so the store is idempotent (event_id is the primary key).
Several copies of this program can split the load through an MQTT 5 shared subscription:

    python examples/backend_subscriber.py --db attendance.sqlite --group attendance
    python examples/backend_subscriber.py --db attendance.sqlite --group attendance   # a second worker

Each event goes to one worker of the group. Use a persistent session (the default here) so events
published while a worker is down are queued for it by the broker.

Capture events carry the face's embedding only when the door is told to (confirmation.
include_embedding_on_capture), and then sealed to this backend's X25519 public key
(privacy.backend_public_key_file on the door; make the pair with `facecheck keys generate backend --out
backend.key`). `open_embedding` below is the whole recipe to read it (needs the `cryptography` package);
the store keeps the payload as it came, sealed.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sqlite3
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger("backend")

SCHEMA = """
CREATE TABLE IF NOT EXISTS attendance (
    event_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    person_id TEXT,
    name TEXT,
    score REAL,
    gesture TEXT,
    ts TEXT NOT NULL,
    payload TEXT NOT NULL,
    stored_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS attendance_device_seq ON attendance (device_id, seq);
"""

REQUIRED = ("event_id", "seq", "type", "device_id", "person_id", "name", "score", "gesture", "ts")


class AttendanceStore:
    def __init__(self, path: Path):
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        # Switching a new file to WAL takes an exclusive lock that SQLite's busy timeout does not wait for: two
        # consumers opening one store at once (the AMQP example's competing consumers) saw "database is
        # locked" here. Wait for the other opener instead, up to the same 30 s.
        deadline = time.monotonic() + 30
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def store(self, payload: bytes) -> bool:
        """True if the event is new; False for a redelivery. Raises ValueError for a malformed payload."""
        event = json.loads(payload)
        if not isinstance(event, dict) or any(k not in event for k in REQUIRED):
            raise ValueError("not a FaceCheck event")
        with self.lock:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO attendance (event_id, device_id, seq, type, person_id, name, score, gesture,"
                " ts, payload, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event["event_id"], event["device_id"], event["seq"], event["type"], event["person_id"],
                 event["name"], event["score"], event["gesture"], event["ts"], payload.decode(), time.time()))
            return cursor.rowcount == 1

    def count(self) -> int:
        with self.lock:
            return self.db.execute("SELECT count(*) FROM attendance").fetchone()[0]


def open_embedding(event: dict, private_key: bytes) -> list[float]:
    """The capture's embedding from `embedding_sealed` (alg X25519-HKDF-SHA256-AES256GCM): an X25519
    exchange of this backend's private key (32 raw bytes: base64-decode backend.key) with the door's
    ephemeral key `epk`, HKDF-SHA256 (no salt, info b"facecheck capture embedding") to a 32-byte key, then
    AES-256-GCM with `nonce`, `epk` as associated data; the plaintext is little-endian float32s."""
    import base64
    import struct

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    sealed = event["embedding_sealed"]
    if sealed.get("alg") != "X25519-HKDF-SHA256-AES256GCM":
        raise ValueError(f"unknown embedding seal {sealed.get('alg')!r}")
    epk = base64.b64decode(sealed["epk"])
    shared = X25519PrivateKey.from_private_bytes(private_key).exchange(X25519PublicKey.from_public_bytes(epk))
    key = HKDF(hashes.SHA256(), 32, salt=None, info=b"facecheck capture embedding").derive(shared)
    raw = AESGCM(key).decrypt(base64.b64decode(sealed["nonce"]), base64.b64decode(sealed["ciphertext"]), epk)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


class Worker:
    def __init__(self, store: AttendanceStore, host: str, port: int, group: str, topic: str, client_id: str):
        self.store = store
        self.received = 0
        self.new = 0
        self.subscribed = threading.Event()
        self.filter = f"$share/{group}/{topic}" if group else topic
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(host, port, 30, clean_start=False, properties=props)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe(self.filter, qos=1)

    def _on_message(self, client, userdata, message):
        self.received += 1
        try:
            if self.store.store(message.payload):
                self.new += 1
        except (ValueError, json.JSONDecodeError) as exc:
            log.warning("ignored a malformed message on %s: %s", message.topic, exc)

    def start(self) -> Worker:
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--db", type=Path, default=Path("attendance.sqlite"))
    parser.add_argument("--group", default="attendance", help="shared-subscription group ('' = no sharing)")
    parser.add_argument("--topic", default="facecheck/+/events")
    parser.add_argument("--client-id", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    worker = Worker(AttendanceStore(args.db), args.host, args.port, args.group, args.topic,
                    args.client_id or f"facecheck-backend-{threading.get_native_id()}").start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(10):
        log.info("received %d, stored %d new, %d in the store", worker.received, worker.new, worker.store.count())
    worker.stop()


if __name__ == "__main__":
    main()
