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
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import Config
from edge.security.secrets import broker_password, check_tls_files

log = logging.getLogger(__name__)
paho_log = logging.getLogger("edge.messaging.paho")


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


ClientT = TypeVar("ClientT", bound=mqtt.Client)


class FailoverClient(mqtt.Client):
    """paho's client, connecting to the brokers of mqtt.hosts in turn: each (re)connect attempt goes to the next.

    paho keeps one host and its public setters refuse a change while its reconnect cycle runs, so the broker
    is chosen where paho reads it, at each reconnect() (the override paho's own maintainers suggest for
    clusters). The outbox holds every event not yet acknowledged, so whichever node is reached gets them."""

    brokers: Sequence[tuple[str, int]] = ()  # mqtt.brokers(), set on each instance after make_client
    attempts = 0

    def next_broker(self) -> tuple[str, int]:
        return self.brokers[self.attempts % len(self.brokers)]

    def reconnect(self) -> mqtt.MQTTErrorCode:
        if self.brokers:
            self._host, self._port = self.next_broker()
            self.attempts += 1
        return super().reconnect()


def make_client(config: Config, client_id: str, client_class: type[ClientT], persistent: bool = False) -> ClientT:
    """A paho client with the configured protocol, credentials and TLS (files checked first). persistent: a
    session the broker keeps across disconnects (the door's own; on MQTT 5 the expiry is set at connect). A
    short-lived tool's client is clean, so it leaves no session queue behind on the broker."""
    m = config.mqtt
    check_tls_files(m)
    password = broker_password(m)
    v5 = m.protocol == "5"
    client = client_class(CallbackAPIVersion.VERSION2, client_id=client_id,
                          protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, clean_session=None if v5 else not persistent)
    if m.username or password:
        client.username_pw_set(m.username or "", password)
    if m.tls is not None:
        client.tls_set(ca_certs=str(m.tls.ca_file), certfile=str(m.tls.cert_file) if m.tls.cert_file else None,
                       keyfile=str(m.tls.key_file) if m.tls.key_file else None, cert_reqs=ssl.CERT_REQUIRED)
        client.tls_insecure_set(m.tls.insecure_skip_verify)
    return client


def connect_blocking(client: mqtt.Client, config: Config, timeout: float = 10.0,
                     brokers: list[tuple[str, int]] | None = None) -> tuple[str, int]:
    """Connect to the first broker (of brokers, default mqtt.brokers()) that accepts and start the network
    loop; the (host, port) in use. ConnectionError with each broker's reason if none accepts within timeout
    (per broker)."""
    failures = []
    for host, port in brokers or config.mqtt.brokers():
        done, result = threading.Event(), dict[str, ReasonCode]()  # result["rc"]: the CONNACK's reason code, set by on_connect

        def on_connect(_client, _userdata, _flags, reason_code, _properties, result=result, done=done):
            result["rc"] = reason_code
            done.set()

        client.on_connect = on_connect
        try:
            client.connect(host, port, config.mqtt.keepalive_s)
        except (OSError, ValueError) as exc:
            failures.append(f"{host}:{port}: {exc}")
            continue
        client.loop_start()
        if not done.wait(timeout):
            client.loop_stop()
            failures.append(f"{host}:{port}: no answer within {timeout:.0f}s")
        elif result["rc"].is_failure:
            client.loop_stop()
            failures.append(f"{host}:{port} refused: {result['rc']}")
        else:
            return host, port
    raise ConnectionError("; ".join(failures))


@contextmanager
def each_broker(config: Config, client_id: str):
    """A connected clean client on every broker of mqtt.brokers() (one client id per broker: a cluster tracks
    ids cluster-wide), as (clients, unreachable): host:port -> client, host:port -> why not. All are
    disconnected on leaving. For tools that must reach every node, such as the roster's publisher."""
    clients, unreachable = {}, {}
    try:
        for i, broker in enumerate(config.mqtt.brokers()):
            name = f"{broker[0]}:{broker[1]}"
            client = make_client(config, f"{client_id}-{i}", mqtt.Client)
            try:
                connect_blocking(client, config, brokers=[broker])
            except ConnectionError as exc:
                unreachable[name] = f"unreachable: {exc}"
                continue
            clients[name] = client
        yield clients, unreachable
    finally:
        for client in clients.values():
            client.disconnect()
            client.loop_stop()


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
        self.stopping = False
        # mids the broker acknowledged (PUBACK); filled by paho's thread, drained by the main loop.
        # deque.append/popleft are atomic, so no lock is held inside paho's own locked callback.
        self.acked_mids: deque[int] = deque()
        self.client = make_client(config, config.client_id, FailoverClient, persistent=True)
        self.client.brokers = self.mqtt.brokers()
        self.client.enable_logger(paho_log)
        self.client.will_set(self.topic("status"), "offline", qos=1, retain=True)
        self._set_backoff()
        self.client.max_inflight_messages_set(20)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self.client.on_publish = lambda client, userdata, mid, reason_code, properties: self.acked_mids.append(mid)

    def _set_backoff(self) -> None:
        """Reconnect back-off from reconnect_min_s doubling to reconnect_max_s, each scaled by a fresh random
        factor per outage so a fleet of doors does not reconnect in step when the broker returns."""
        # paho's annotation says int; it computes with whatever number it is given (fractions of a second).
        self.client.reconnect_delay_set(self.mqtt.reconnect_min_s * random.uniform(0.5, 1.0),  # type: ignore[arg-type]
                                        self.mqtt.reconnect_max_s * random.uniform(0.75, 1.0))  # type: ignore[arg-type]

    @property
    def node(self) -> str:
        """host:port of the broker in use (or last tried), for health and logs."""
        return f"{self.client.host or self.client.brokers[0][0]}:{self.client.port}"

    def topic(self, suffix: str) -> str:
        return f"{self.base}/{suffix}"

    def is_connected(self) -> bool:
        """paho's own view of the connection: what decides whether to publish health or wait for a drain.
        (`connected` is for waiting on the first connection; the state is paho's.)"""
        return self.client.is_connected()

    def start(self) -> None:
        host, port = self.client.next_broker()
        if self.mqtt.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.mqtt.session_expiry_s
            self.client.connect_async(host, port, self.mqtt.keepalive_s, clean_start=False, properties=props)
        else:
            self.client.connect_async(host, port, self.mqtt.keepalive_s)
        self.client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Clean stop: `offline` (retained) goes out before the disconnect, so no Last Will fires."""
        if self.is_connected():
            info = self.client.publish(self.topic("status"), "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                log.warning("could not publish the offline status before stopping")
        self.stopping = True
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

    def subscribe_roster_chunks(self, count: int) -> None:
        """Subscribe to chunk/0 .. chunk/count-1 of the site roster (again, if already): the broker sends each
        one's retained copy, and later versions' chunks as they are published."""
        topics = [(f"{self.roster_topic}/chunk/{i}", 1) for i in range(count)]
        for start in range(0, len(topics), 100):
            self.client.subscribe(topics[start:start + 100])

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
            log.error("broker %s refused the connection: %s", self.node, reason_code)
            return
        self.connections += 1
        log.info("connected to %s (session present: %s)", self.node, getattr(flags, "session_present", None))
        # Subscribe first, announce after: the broker handles one connection's packets in order, so whoever sees
        # "online" can send a command at once and it is heard (announced first, a command sent on seeing it could
        # reach the broker before the subscription and be dropped: seen in a loaded test run).
        client.subscribe(self.topic("cmd/+"), qos=1)
        if self.roster_topic:
            # Exact topics, never roster/#: RabbitMQ sends no retained message to a wildcard subscription.
            # The chunks are subscribed once a manifest names how many there are (subscribe_roster_chunks).
            client.subscribe(f"{self.roster_topic}/manifest", qos=1)
        if self.config.homeassistant.enabled:
            from edge.messaging.homeassistant import announce

            client.subscribe(f"{self.config.homeassistant.discovery_prefix}/status", qos=1)
            announce(client, self.config)
        client.publish(self.topic("status"), "online", qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self._set_backoff()
        if not self.stopping:  # a lost connection can come with any reason code, "Success" included
            log.warning("disconnected from %s (%s); reconnecting to %s:%d with back-off", self.node, reason_code,
                        *self.client.next_broker())

    def _on_connect_fail(self, client, userdata) -> None:
        if len(self.client.brokers) > 1:
            log.warning("could not connect to %s; trying %s:%d next", self.node, *self.client.next_broker())

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
                from edge.messaging.homeassistant import announce

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
