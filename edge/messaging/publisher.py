"""Publishes outbox events in seq order at QoS 1 and forgets each one only once the broker acknowledged it.

Each pending event is handed to paho once per process; paho resends un-acknowledged messages after a
reconnect, and the outbox replays everything still pending after a restart or kill -9. Acknowledgements
arrive as mids from paho's thread and are matched to events here, in the main loop.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from edge.messaging.link import MqttLink
from edge.messaging.outbox import Outbox

log = logging.getLogger(__name__)


class OutboxPublisher:
    def __init__(self, outbox: Outbox, link: MqttLink, window: int = 500):
        self.outbox = outbox
        self.link = link
        self.window = window
        self._inflight: dict[int, tuple[int, float]] = {}  # mid -> (seq, submitted at)
        self._submitted_seq = 0
        self.acked = 0
        self.ack_latency_ms: deque[float] = deque(maxlen=1000)

    def _reap(self) -> None:
        now = time.monotonic()
        acked = self.link.acked_mids
        while acked:
            entry = self._inflight.pop(acked.popleft(), None)
            if entry is None:
                continue  # a status or command result, not an event
            seq, submitted = entry
            self.outbox.ack(seq)
            self.acked += 1
            self.ack_latency_ms.append((now - submitted) * 1000)

    def pump(self) -> int:
        """Forget acknowledged events, then hand pending ones to paho within the window: the new ones, and with
        nothing in flight every pending one. An event already handed over that is still pending with nothing in
        flight was dropped by paho without an acknowledgement (seen across broker restarts): it is handed over
        again rather than left to the next start; the backend deduplicates by event_id."""
        self._reap()
        room = self.window - len(self._inflight)
        if room <= 0:
            return 0
        after = self._submitted_seq if self._inflight else 0
        events = self.outbox.pending(after_seq=after, limit=room)
        if events and events[0].seq <= self._submitted_seq:
            log.warning("event #%d was handed to the MQTT client but never acknowledged; publishing from it again",
                        events[0].seq)
        for event in events:
            info = self.link.client.publish(self.link.topic("events"), event.to_json(), qos=1)
            self._inflight[info.mid] = (event.seq, time.monotonic())
            self._submitted_seq = max(self._submitted_seq, event.seq)
        return len(events)

    def inflight(self) -> int:
        return len(self._inflight)

    def drain(self, timeout: float) -> bool:
        """Publish until the outbox is empty (or timeout); True when no event is left in it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if self.outbox.depth() == 0:
                return True
            time.sleep(0.01)
        return self.outbox.depth() == 0
