"""Publish throughput through the durable outbox and the added latency from decision to PUBACK.

    .venv/bin/python -m bench.outbox_mqtt [--events 2000] [--broker mosquitto|rabbitmq-cluster]

Starts its own broker on loopback ports (Debian's mosquitto, or three RabbitMQ nodes with quorum queues,
the door on MQTT 3.1.1 with every node in mqtt.hosts and the AMQP example backend's queues declared, so
each PUBACK means the event is replicated to a majority), drives the real Outbox (SQLite WAL, fsync per
event) and the real MQTT publisher at QoS 1. Prints numbers; writes bench/results/outbox_mqtt.json (or
outbox_rabbitmq.json).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import SMOKE_HELP, machine, smoke_mode, write
from edge.cli.local_broker import Broker
from edge.config import config_from_dict
from edge.events import Decision
from edge.messaging.link import MqttLink
from edge.messaging.outbox import Outbox
from edge.messaging.publisher import OutboxPublisher


class Mosquitto(Broker):
    def close(self) -> None:
        self.kill()


def start_broker(kind: str, work: Path):
    """The broker and the door's mqtt config for it."""
    if kind == "mosquitto":
        broker = Mosquitto(work / "broker").start()
        return broker, {"port": broker.port}
    import pika

    from examples.backend_amqp import declare
    from testkit.cluster import RabbitCluster

    cluster = RabbitCluster(work / "cluster").start()
    cluster.wait_formed()
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", cluster.nodes[1].amqp_port))
    declare(connection.channel(), "facecheck.attendance")
    connection.close()
    return cluster, {"protocol": "3.1.1", "hosts": [n.hostport for n in cluster.nodes]}


def broker_rate(config, publishers: int = 20, seconds: float = 10.0, payload_bytes: int = 300) -> float:
    """What the broker itself takes: `publishers` connections (spread over the nodes) each keeping 20 QoS 1
    event-sized messages in flight for `seconds`; PUBACKs per second in all. The doors' outbox is not in
    this figure: it is the broker's side of the sizing."""
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    hosts = config.mqtt.brokers()
    protocol = paho.MQTTv311 if config.mqtt.protocol == "3.1.1" else paho.MQTTv5
    acked, lock, clients = [0], threading.Lock(), []
    body = b"x" * payload_bytes
    for i in range(publishers):
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"rate-{i}", protocol=protocol)
        client.max_inflight_messages_set(20)

        def on_publish(c, userdata, mid, reason_code, properties):
            with lock:
                acked[0] += 1
            c.publish(f"facecheck/rate-{userdata}/events", body, qos=1)

        client.user_data_set(i)
        client.on_publish = on_publish
        client.connect(*hosts[i % len(hosts)])
        client.loop_start()
        clients.append(client)
    start_count, start = acked[0], time.perf_counter()
    for i, client in enumerate(clients):
        for _ in range(20):
            client.publish(f"facecheck/rate-{i}/events", body, qos=1)
    time.sleep(seconds)
    rate = (acked[0] - start_count) / (time.perf_counter() - start)
    for client in clients:
        client.disconnect()
        client.loop_stop()
    return rate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--broker", choices=["mosquitto", "rabbitmq-cluster"], default="mosquitto")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    if smoke_mode(args.smoke):
        args.events, args.latency_samples = 50, 10
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker, mqtt = start_broker(args.broker, work)
        try:
            config = config_from_dict({"device_id": "bench", "mqtt": mqtt,
                                       "confirmation": {"require_gesture": False}}, base_dir=work)
            outbox = Outbox(work / "outbox.sqlite", "bench")
            link = MqttLink(config)
            publisher = OutboxPublisher(outbox, link)
            link.start()
            if not link.connected.wait(10):
                print("could not connect to the bench broker", file=sys.stderr)
                return 1
            decision = Decision("check_in", "p1", "Ann", 0.9, "confirm")

            start = time.perf_counter()
            for _ in range(args.events):
                outbox.append(decision)
                publisher.pump()
            append_done = time.perf_counter()
            assert publisher.drain(60), "events left unacknowledged"
            total = time.perf_counter() - start
            throughput = args.events / total

            latencies = []
            for _ in range(args.latency_samples):
                t0 = time.perf_counter()
                outbox.append(decision)
                while outbox.depth():
                    publisher.pump()
                    time.sleep(0.0002)
                latencies.append((time.perf_counter() - t0) * 1000)
            append_only = []
            for _ in range(200):
                t0 = time.perf_counter()
                event = outbox.append(decision)
                append_only.append((time.perf_counter() - t0) * 1000)
                outbox.ack(event.seq)
            link.stop()
            rate = broker_rate(config)
        finally:
            broker.close()
    lat = np.array(latencies)
    app = np.array(append_only)
    result = {
        "machine": machine(), "broker": args.broker, "events": args.events,
        "throughput_events_per_s": round(throughput, 1),
        "append_phase_s": round(append_done - start, 3),
        "broker_acks_per_s_20_publishers": round(rate, 1),
        "decision_to_puback_ms": {"p50": round(float(np.percentile(lat, 50)), 3),
                                  "p95": round(float(np.percentile(lat, 95)), 3), "n": len(lat)},
        "outbox_append_fsync_ms": {"p50": round(float(np.percentile(app, 50)), 3),
                                   "p95": round(float(np.percentile(app, 95)), 3), "n": len(app)},
    }
    print(f"throughput through outbox + QoS 1: {result['throughput_events_per_s']} events/s "
          f"({args.events} events)")
    print(f"decision -> PUBACK (outbox delete): p50 {result['decision_to_puback_ms']['p50']} ms, "
          f"p95 {result['decision_to_puback_ms']['p95']} ms")
    print(f"the broker alone, 20 QoS 1 publishers of 300-byte messages: {result['broker_acks_per_s_20_publishers']}"
          " PUBACKs/s")
    print(f"outbox append (fsync'd commit): p50 {result['outbox_append_fsync_ms']['p50']} ms, "
          f"p95 {result['outbox_append_fsync_ms']['p95']} ms")
    print(f"wrote {write('outbox_mqtt' if args.broker == 'mosquitto' else 'outbox_rabbitmq', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
