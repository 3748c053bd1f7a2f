"""The broker connection: one paho client, its lifecycle, status with Last Will, and command intake.

paho's network loop runs on its own thread (I/O); everything it receives is handed to the main loop
through a queue, so the inference loop stays the only thread that touches pipeline state.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import ssl
import threading
from collections import deque
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import Config
from edge.mqtt.credentials import broker_password, check_tls_files

log = logging.getLogger(__name__)
paho_log = logging.getLogger("edge.mqtt.paho")


class _AfterOwnDisconnect(logging.Filter):
    """paho 2.x's network thread may poll once more after a clean disconnect has closed the socket and log
    "Client is not connected" as an ERROR (7 of 60 stops here). On our own stop that is no error, and an
    operator should not find one in the journal after a restart."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Client is not connected")


@dataclass(frozen=True)
class Command:
    name: str
    payload: bytes
    response_topic: str | None
    correlation: bytes | None


def make_client(config: Config, client_id: str) -> mqtt.Client:
    """A paho client with the configured protocol, credentials and TLS (files checked first)."""
    m = config.mqtt
    check_tls_files(m)
    password = broker_password(m)
    v5 = m.protocol == "5"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, clean_session=None if v5 else False)
    if m.username or password:
        client.username_pw_set(m.username or "", password)
    if m.tls is not None:
        client.tls_set(ca_certs=str(m.tls.ca_file), certfile=str(m.tls.cert_file) if m.tls.cert_file else None,
                       keyfile=str(m.tls.key_file) if m.tls.key_file else None, cert_reqs=ssl.CERT_REQUIRED)
        client.tls_insecure_set(m.tls.insecure_skip_verify)
    return client


def connect_blocking(client: mqtt.Client, config: Config, timeout: float = 10.0) -> None:
    """Connect and start the network loop; raise ConnectionError with the reason if refused or silent."""
    done, result = threading.Event(), {}

    def on_connect(_client, _userdata, _flags, reason_code, _properties):
        result["rc"] = reason_code
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(config.mqtt.host, config.mqtt.port, config.mqtt.keepalive_s)
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"{config.mqtt.host}:{config.mqtt.port}: {exc}") from None
    client.loop_start()
    if not done.wait(timeout):
        client.loop_stop()
        raise ConnectionError(f"{config.mqtt.host}:{config.mqtt.port}: no answer within {timeout:.0f}s")
    if result["rc"].is_failure:
        client.loop_stop()
        raise ConnectionError(f"{config.mqtt.host}:{config.mqtt.port} refused: {result['rc']}")


class MqttLink:
    def __init__(self, config: Config):
        self.config = config
        self.mqtt = config.mqtt
        self.base = config.base_topic
        self.commands: queue.Queue[Command] = queue.Queue(maxsize=100)
        self.roster_topic = config.roster_topic
        self.roster_messages: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=20_000)
        self.connected = threading.Event()
        self.connections = 0
        # mids the broker acknowledged (PUBACK); filled by paho's thread, drained by the main loop.
        # deque.append/popleft are atomic, so no lock is held inside paho's own locked callback.
        self.acked_mids: deque[int] = deque()
        self.client = make_client(config, config.client_id)
        self.client.enable_logger(paho_log)
        self.client.will_set(self.topic("status"), "offline", qos=1, retain=True)
        self._set_backoff()
        self.client.max_inflight_messages_set(20)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = lambda client, userdata, mid, reason_code, properties: self.acked_mids.append(mid)

    def _set_backoff(self) -> None:
        """Reconnect back-off from reconnect_min_s doubling to reconnect_max_s, each scaled by a fresh random
        factor per outage so a fleet of doors does not reconnect in step when the broker returns."""
        self.client.reconnect_delay_set(self.mqtt.reconnect_min_s * random.uniform(0.5, 1.0),
                                        self.mqtt.reconnect_max_s * random.uniform(0.75, 1.0))

    def topic(self, suffix: str) -> str:
        return f"{self.base}/{suffix}"

    def start(self) -> None:
        kwargs = {}
        if self.mqtt.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.mqtt.session_expiry_s
            kwargs = {"clean_start": False, "properties": props}
        self.client.connect_async(self.mqtt.host, self.mqtt.port, self.mqtt.keepalive_s, **kwargs)
        self.client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Clean stop: `offline` (retained) goes out before the disconnect, so no Last Will fires."""
        if self.connected.is_set():
            info = self.client.publish(self.topic("status"), "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                log.warning("could not publish the offline status before stopping")
        quiet = _AfterOwnDisconnect()
        paho_log.addFilter(quiet)
        try:
            self.client.disconnect()
            self.client.loop_stop()
        finally:
            paho_log.removeFilter(quiet)

    def publish_json(self, suffix: str, body: dict, qos: int = 0, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(self.topic(suffix), json.dumps(body, separators=(",", ":")), qos=qos,
                                   retain=retain)

    def respond(self, command: Command, body: dict) -> None:
        """Answer on <base>/cmd/<name>/result, and on the MQTT 5 response topic when one was given."""
        payload = json.dumps(body, separators=(",", ":"))
        self.client.publish(self.topic(f"cmd/{command.name}/result"), payload, qos=1)
        if command.response_topic:
            props = None
            if command.correlation is not None and self.mqtt.protocol == "5":
                props = Properties(PacketTypes.PUBLISH)
                props.CorrelationData = command.correlation
            self.client.publish(command.response_topic, payload, qos=1, properties=props)

    # paho callbacks (network thread) ---------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s:%d refused the connection: %s", self.mqtt.host, self.mqtt.port, reason_code)
            return
        self.connections += 1
        log.info("connected to %s:%d (session present: %s)", self.mqtt.host, self.mqtt.port,
                 getattr(flags, "session_present", None))
        client.publish(self.topic("status"), "online", qos=1, retain=True)
        client.subscribe(self.topic("cmd/+"), qos=1)
        if self.roster_topic:
            client.subscribe(f"{self.roster_topic}/#", qos=1)
        if self.config.homeassistant.enabled:
            from edge.mqtt.homeassistant import announce

            client.subscribe(f"{self.config.homeassistant.discovery_prefix}/status", qos=1)
            announce(client, self.config)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self._set_backoff()
        if reason_code != 0:
            log.warning("disconnected from the broker (%s); reconnecting with back-off", reason_code)

    def _on_message(self, client, userdata, message) -> None:
        if self.roster_topic and message.topic.startswith(self.roster_topic + "/"):
            try:
                self.roster_messages.put_nowait((message.topic[len(self.roster_topic) + 1:], bytes(message.payload)))
            except queue.Full:
                log.warning("roster queue full; dropping %s (it is retained and comes again on reconnect)",
                            message.topic)
            return
        if self.config.homeassistant.enabled and message.topic == f"{self.config.homeassistant.discovery_prefix}/status":
            if message.payload == b"online":
                from edge.mqtt.homeassistant import announce

                log.info("Home Assistant is online; announcing the device again")
                announce(client, self.config)
            return
        name = message.topic.rsplit("/", 1)[-1]
        props = getattr(message, "properties", None)
        command = Command(name, bytes(message.payload), getattr(props, "ResponseTopic", None),
                          getattr(props, "CorrelationData", None))
        try:
            self.commands.put_nowait(command)
        except queue.Full:
            log.warning("command queue full; refusing %s", name)
            self.respond(command, {"ok": False, "error": "busy: too many commands queued"})
