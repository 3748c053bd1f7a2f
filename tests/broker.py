"""A real mosquitto on a loopback port per test, and a real paho subscriber that records everything."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def mosquitto_binary() -> str:
    path = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if path is None:
        pytest.fail("mosquitto is not installed: scripts/test installs it (apt-get install mosquitto)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, workdir: Path, extra_conf: str = "", port: int | None = None):
        self.workdir = workdir
        self.port = port or free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # As root mosquitto would drop to user "mosquitto", which cannot write the persistence file here.
            + ("user root\n" if os.geteuid() == 0 else "")
            + f"persistence true\npersistence_location {workdir}/\nautosave_interval 1\n"
            "log_dest stderr\nlog_type error\nlog_type warning\n"
            + (extra_conf or "allow_anonymous true\n")
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


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

    def events(self, topic: str) -> list[dict]:
        return [json.loads(p) for p in self.on(topic)]

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.kill()
