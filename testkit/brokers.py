"""A real paho subscriber that records everything, beside the private mosquitto it listens to."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.cli.local_broker import Broker, BrokerUnavailable, mosquitto_binary

__all__ = ["Broker", "BrokerUnavailable", "Subscriber", "mosquitto_binary", "wait_until"]


def wait_until(predicate, timeout: float = 20.0, every: float = 0.02) -> bool:
    """Poll predicate until it holds or timeout passes; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


class Subscriber:
    """Records (topic, payload, retain) of every message; persistent session so outages lose nothing."""

    def __init__(self, port: int, topics: list[str], client_id: str = "test-subscriber", tls: dict | None = None,
                 auth: tuple[str, str] | None = None):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.topics = topics
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if tls:
            self.client.tls_set(**tls)
        if auth:
            self.client.username_pw_set(*auth)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.reconnect_delay_set(1, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async("127.0.0.1", port, 10, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.connected.wait(10), "subscriber could not connect"

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            for topic in self.topics:
                client.subscribe(topic, qos=1)
            time.sleep(0.1)
            self.connected.set()

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def live_online(self, base: str) -> int:
        """How many live (not retained) `online` statuses the door at `base` has sent: one per connection. The
        sign that the door itself is back after a broker restart; more events arriving is not, since the
        broker also replays what it queued for this persistent subscriber before it went down."""
        with self.lock:
            return sum(1 for t, p, retained in self.messages if t == f"{base}/status" and p == b"online" and not retained)

    def events(self, topic: str) -> list[dict]:
        return [json.loads(p) for p in self.on(topic)]

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        return wait_until(predicate, timeout, 0.05)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
