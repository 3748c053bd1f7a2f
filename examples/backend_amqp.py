#!/usr/bin/env python3
"""Example backend for a RabbitMQ cluster: FaceCheck events from a durable quorum queue, stored exactly once.

RabbitMQ's MQTT plugin publishes every door message to the `amq.topic` exchange, with the MQTT topic's `/`
turned into `.` (facecheck/door-1/events -> facecheck.door-1.events). This backend reads two quorum queues
bound there, which survive any one node of three dying:

- `<queue>` (events): competing consumers. Run as many copies as the load needs; each event goes to one,
  is stored in SQLite (event_id is the primary key, so a redelivery changes nothing) and only then acked.
- `<queue>.doors` (status and health): single active consumer, so one worker at a time sees a door's
  online/offline/health in the order the doors sent them; the other takes over if it dies. RabbitMQ 3.10
  keeps retained messages per node, so this, not a retained `status`, is how a backend learns every door's
  state whatever node it is on.

    pip install "facecheck-edge[examples]"    # pika, only for the backend: never on a door
    python examples/backend_amqp.py --db attendance.sqlite --node 10.0.0.1:5672 --node 10.0.0.2:5672 \
        --node 10.0.0.3:5672     # a second copy on another machine splits the load

The queues are declared on start (idempotent), so start a backend before the doors: RabbitMQ drops (and
PUBACKs) an MQTT message that no queue is bound for.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pika
from pika.exceptions import AMQPError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backend_subscriber import AttendanceStore

log = logging.getLogger("backend-amqp")

EVENTS = ("facecheck.*.events",)
DOORS = ("facecheck.*.status", "facecheck.*.health")

DOORS_SCHEMA = """
CREATE TABLE IF NOT EXISTS doors (
    device_id TEXT PRIMARY KEY,
    status TEXT,
    status_at REAL,
    health TEXT,
    health_at REAL
);
"""


class DoorStore:
    """Last status and health per door, beside the attendance table (same SQLite file)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(DOORS_SCHEMA)

    def note(self, device_id: str, kind: str, payload: bytes) -> None:
        if kind == "status":
            self.db.execute("INSERT INTO doors (device_id, status, status_at) VALUES (?, ?, ?) ON CONFLICT"
                            "(device_id) DO UPDATE SET status = excluded.status, status_at = excluded.status_at",
                            (device_id, payload.decode(errors="replace"), time.time()))
        else:
            json.loads(payload)  # raises for a malformed health payload, which is then dropped
            self.db.execute("INSERT INTO doors (device_id, health, health_at) VALUES (?, ?, ?) ON CONFLICT"
                            "(device_id) DO UPDATE SET health = excluded.health, health_at = excluded.health_at",
                            (device_id, payload.decode(), time.time()))


def parse_nodes(nodes: list[str], username: str, password: str, heartbeat: int) -> list[pika.ConnectionParameters]:
    credentials = pika.PlainCredentials(username, password)
    params = []
    for node in nodes:
        host, _, port = node.rpartition(":")
        params.append(pika.ConnectionParameters(host.strip("[]") or node, int(port or 5672), credentials=credentials,
                                                heartbeat=heartbeat, connection_attempts=1, socket_timeout=3,
                                                blocked_connection_timeout=30))
    return params


def declare(channel, queue: str) -> None:
    """Both quorum queues and their bindings; declaring what exists already is a no-op."""
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_declare(f"{queue}.doors", durable=True,
                          arguments={"x-queue-type": "quorum", "x-single-active-consumer": True})
    for key in EVENTS:
        channel.queue_bind(queue, "amq.topic", routing_key=key)
    for key in DOORS:
        channel.queue_bind(f"{queue}.doors", "amq.topic", routing_key=key)


class Worker:
    """One consumer of both queues; reconnects to the next node when its node goes away. Each message is
    acked only after the store has it, so a worker or node dying mid-way means a redelivery, never a loss."""

    def __init__(self, db: Path, nodes: list[pika.ConnectionParameters], queue: str, prefetch: int = 100):
        self.attendance = AttendanceStore(db)
        self.doors = DoorStore(db)
        self.nodes = nodes
        self.queue = queue
        self.prefetch = prefetch
        self.stopping = threading.Event()
        self.received = self.new = self.reconnects = 0

    def _handle(self, routing_key: str, body: bytes) -> None:
        parts = routing_key.split(".")
        if len(parts) != 3:
            log.warning("ignored a message on %s", routing_key)
            return
        _, device_id, kind = parts
        try:
            if kind == "events":
                self.received += 1
                self.new += self.attendance.store(body)
            else:
                self.doors.note(device_id, kind, body)
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("dropped a malformed message on %s: %s", routing_key, exc)

    def _consume(self, connection) -> None:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=self.prefetch)
        declare(channel, self.queue)

        def on_message(ch, method, _properties, body):
            self._handle(method.routing_key, body)
            ch.basic_ack(method.delivery_tag)

        channel.basic_consume(self.queue, on_message)
        channel.basic_consume(f"{self.queue}.doors", on_message)
        while not self.stopping.is_set():
            connection.process_data_events(time_limit=0.5)
        channel.close()

    def run(self) -> None:
        attempt = 0
        while not self.stopping.is_set():
            node = self.nodes[attempt % len(self.nodes)]
            attempt += 1
            try:
                connection = pika.BlockingConnection(node)
            except AMQPError as exc:
                log.warning("cannot reach %s:%d (%s); trying the next node", node.host, node.port, exc)
                self.stopping.wait(0.5 if attempt % len(self.nodes) else 2.0)
                continue
            log.info("consuming on %s:%d", node.host, node.port)
            try:
                self._consume(connection)
                connection.close()
            except AMQPError as exc:
                self.reconnects += 1
                log.warning("lost %s:%d (%s); reconnecting to the next node", node.host, node.port, exc or
                            type(exc).__name__)


def report(worker: Worker, every_s: float = 10.0) -> None:
    while not worker.stopping.wait(every_s):
        log.info("received %d, stored %d new", worker.received, worker.new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node", action="append", default=[], help="host:port of an AMQP listener (repeat per "
                        "cluster node; default 127.0.0.1:5672)")
    parser.add_argument("--db", type=Path, default=Path("attendance.sqlite"))
    parser.add_argument("--queue", default="facecheck.attendance")
    parser.add_argument("--username", default="guest")
    parser.add_argument("--password", default="guest")
    parser.add_argument("--prefetch", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # every lost node is one warning line of ours
    worker = Worker(args.db, parse_nodes(args.node or ["127.0.0.1:5672"], args.username, args.password, 10),
                    args.queue, args.prefetch)
    signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stopping.set())
    threading.Thread(target=report, args=(worker,), daemon=True).start()
    worker.run()
    log.info("stopped: received %d, stored %d new, %d reconnects", worker.received, worker.new, worker.reconnects)


if __name__ == "__main__":
    main()
