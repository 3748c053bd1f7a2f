"""Publish throughput through the durable outbox and the added latency from decision to PUBACK.

    .venv/bin/python -m bench.outbox_mqtt [--events 2000]

Starts its own mosquitto on a loopback port (Debian's package), drives the real Outbox (SQLite WAL,
fsync per event) and the real MQTT publisher at QoS 1. Prints numbers; writes bench/results/outbox_mqtt.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import machine, write
from edge.config import config_from_dict
from edge.events import Decision
from edge.mqtt.link import MqttLink
from edge.mqtt.publisher import OutboxPublisher
from edge.outbox import Outbox
from edge.mqtt.embedded import Broker


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--latency-samples", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker").start()
        try:
            config = config_from_dict({"device_id": "bench", "mqtt": {"port": broker.port},
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
        finally:
            broker.kill()
    lat = np.array(latencies)
    app = np.array(append_only)
    result = {
        "machine": machine(), "events": args.events,
        "throughput_events_per_s": round(throughput, 1),
        "append_phase_s": round(append_done - start, 3),
        "decision_to_puback_ms": {"p50": round(float(np.percentile(lat, 50)), 3),
                                  "p95": round(float(np.percentile(lat, 95)), 3), "n": len(lat)},
        "outbox_append_fsync_ms": {"p50": round(float(np.percentile(app, 50)), 3),
                                   "p95": round(float(np.percentile(app, 95)), 3), "n": len(app)},
    }
    print(f"throughput through outbox + QoS 1: {result['throughput_events_per_s']} events/s "
          f"({args.events} events)")
    print(f"decision -> PUBACK (outbox delete): p50 {result['decision_to_puback_ms']['p50']} ms, "
          f"p95 {result['decision_to_puback_ms']['p95']} ms")
    print(f"outbox append (fsync'd commit): p50 {result['outbox_append_fsync_ms']['p50']} ms, "
          f"p95 {result['outbox_append_fsync_ms']['p95']} ms")
    print(f"wrote {write('outbox_mqtt', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
