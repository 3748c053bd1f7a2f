"""The durable outbox: an event is on disk (SQLite WAL, fsync'd) before anyone hears of it.

It assigns the per-device `seq` (AUTOINCREMENT never reuses a number, across restarts and deletes)
and the `event_id`, and forgets an event only when a publisher acknowledges it (MQTT: PUBACK).
It never drops: past its size or age bounds it keeps everything and warns loudly.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from edge.events import Decision, Event
from edge.errors import BadInputError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    created REAL NOT NULL
);
"""


class OutboxError(BadInputError):
    """The outbox file cannot be opened or written; the message names the path."""


class Outbox:
    def __init__(self, path: Path, device_id: str, max_events: int = 100_000, max_age_days: float = 30.0):
        self.path = path
        self.device_id = device_id
        self.max_events = max_events
        self.max_age_s = max_age_days * 86400
        self._lock = threading.Lock()
        self._last_warning = 0.0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute("SELECT count(*) FROM events").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"{path}: cannot open the outbox ({exc}); check the path, permissions and free disk")

    def append(self, decision: Decision) -> Event:
        """Persist a decision as an event and return it; durable when this returns."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
                seq = (row[0] if row else 0) + 1
                event = Event.from_decision(decision, seq=seq, device_id=self.device_id)
                self._db.execute("INSERT INTO events (seq, event_id, payload, created) VALUES (?, ?, ?, ?)",
                                 (seq, event.event_id, event.to_json(), time.time()))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK") if self._db.in_transaction else None
                raise OutboxError(f"{self.path}: cannot store an event ({exc})") from exc
        self._check_bounds()
        return event

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[Event]:
        """Undelivered events in seq order."""
        with self._lock:
            rows = self._db.execute("SELECT payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (after_seq, limit)).fetchall()
        return [Event.from_json(r[0]) for r in rows]

    def ack(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM events WHERE seq = ?", (seq,))

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def oldest_age_s(self) -> float:
        with self._lock:
            row = self._db.execute("SELECT min(created) FROM events").fetchone()
        return 0.0 if row[0] is None else max(0.0, time.time() - row[0])

    def last_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
        return row[0] if row else 0

    def _check_bounds(self) -> None:
        now = time.monotonic()
        if now - self._last_warning < 60:
            return
        depth, age = self.depth(), self.oldest_age_s()
        if depth > self.max_events or age > self.max_age_s:
            self._last_warning = now
            log.warning("OUTBOX OVER ITS BOUND: %d undelivered events (limit %d), oldest %.1f days (limit %.1f); "
                        "nothing is dropped: check the broker connection", depth, self.max_events, age / 86400,
                        self.max_age_s / 86400)

    def close(self) -> None:
        with self._lock:
            self._db.close()
