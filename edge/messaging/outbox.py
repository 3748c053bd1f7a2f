"""The durable outbox: an event is on disk (SQLite WAL, fsync'd) before anyone hears of it.

It assigns the per-device `seq` (AUTOINCREMENT never reuses a number, across restarts and deletes)
and the `event_id`, and forgets an event only when a publisher acknowledges it (MQTT: PUBACK).
It never drops: past its size or age bounds it keeps everything and warns loudly. What it forgets it
forgets for good: rows are deleted with SQLite's secure_delete (freed content zeroed) and, once acknowledged
events are gone, the WAL is checkpointed and truncated, so no name or id of an acknowledged event stays
readable in the file, its WAL or its free pages (tests/test_outbox.py greps them).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from edge.errors import BadInputError
from edge.events import Decision, Event

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
    """The outbox file cannot be opened; the message names the path."""


SPILL_EVENTS = 10_000  # decided events held in memory while the disk is full (~0.5 KB each)
RETRY_WRITE_S = 5.0
SCRUB_EVERY_S = 2.0  # at most this often the WAL is truncated after acknowledgements


class Outbox:
    """Durable when the disk allows; while it is full, decided events wait in a bounded memory spill.

    The spill keeps the door recognising: spilled events are published like any other (they are part of
    `pending`), and written to the file as soon as a write succeeds again. Only a process death while the
    disk is still full loses what the spill holds and not yet acknowledged (docs/operations.md).
    """

    def __init__(self, path: Path, device_id: str, max_events: int = 100_000, max_age_days: float = 30.0,
                 spill_events: int = SPILL_EVENTS):
        self.path = path
        self.device_id = device_id
        self.max_events = max_events
        self.max_age_s = max_age_days * 86400
        self.spill_events = spill_events
        self._lock = threading.Lock()
        self._last_warning = 0.0
        self._spill: dict[int, tuple[Event, float]] = {}  # seq -> (event, created), in seq order
        self._unsaved_acks: set[int] = set()  # acknowledged, but the delete could not be written yet
        self._last_write_try = 0.0
        self._acked_since_scrub = False
        self._last_scrub = 0.0
        self.disk_full = False
        self.events_lost = 0  # only when the spill itself overflows
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_SCHEMA)
            self._db.execute("SELECT count(*) FROM events").fetchone()
            self._last_seq = self._stored_last_seq()
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"{path}: cannot open the outbox ({exc}); check the path, permissions and free disk") from exc

    def _stored_last_seq(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
        return row[0] if row else 0

    def append(self, decision: Decision) -> Event:
        """Persist a decision as an event and return it: on disk when this returns, or in the spill
        (and `disk_full` set) when the disk refuses the write. It never raises over storage."""
        with self._lock:
            seq = self._last_seq + 1
            event = Event.from_decision(decision, seq=seq, device_id=self.device_id)
            self._last_seq = seq
            created = time.time()
            # While anything is spilled, new events join the spill (the file stays in seq order);
            # retry_writes() moves them all to disk together once it takes writes again.
            if self._spill or not self._write([(event, created)]):
                self._to_spill(event, created)
        self._check_bounds()
        return event

    def _write(self, rows: list[tuple[Event, float]]) -> bool:
        """Insert rows in one transaction; False (and disk_full) when the file system refuses it."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO events (seq, event_id, payload, created) VALUES (?, ?, ?, ?)",
                                 [(e.seq, e.event_id, e.to_json(), created) for e, created in rows])
            self._db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name='events'", (self._last_seq,))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._storage_failed(exc)
            return False
        return True

    def _storage_failed(self, exc: sqlite3.Error) -> None:
        if not self.disk_full:
            log.error("DISK FULL OR FAILING: %s cannot store events (%s); recognising goes on, events wait in "
                      "memory (at most %d) and are published when the broker is up", self.path, exc,
                      self.spill_events)
        self.disk_full = True

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _to_spill(self, event: Event, created: float) -> None:
        if len(self._spill) >= self.spill_events:
            oldest = next(iter(self._spill))
            del self._spill[oldest]
            self.events_lost += 1
            log.critical("EVENT LOST: the disk is full and %d events already wait in memory; seq %d dropped",
                         self.spill_events, oldest)
        self._spill[event.seq] = (event, created)

    def retry_writes(self) -> None:
        """Called from the loop: once the disk takes writes again, move the spill and pending deletes there;
        after acknowledgements, truncate the WAL so the deleted events' old pages leave it too."""
        with self._lock:
            self._retry_spill_locked(force=False)
            self._scrub_locked(force=False)

    def _scrub_locked(self, force: bool) -> None:
        now = time.monotonic()
        if not self._acked_since_scrub or (not force and now - self._last_scrub < SCRUB_EVERY_S):
            return
        self._last_scrub = now
        try:
            busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as exc:
            log.debug("outbox WAL checkpoint failed (%s); tried again later", exc)
            return
        self._acked_since_scrub = bool(busy)

    def _retry_spill_locked(self, force: bool) -> None:
        if not self.disk_full:
            return
        now = time.monotonic()
        if not force and now - self._last_write_try < RETRY_WRITE_S:
            return
        self._last_write_try = now
        rows = list(self._spill.values())
        if rows and not self._write(rows):
            return
        if self._unsaved_acks and not self._delete(self._unsaved_acks):
            return
        if not rows and not self._write([]):  # the high-water seq of spilled events that were already published
            return
        log.warning("disk writable again: %d spilled events written to %s", len(rows), self.path)
        self._spill.clear()
        self._unsaved_acks.clear()
        self.disk_full = False

    def _delete(self, seqs) -> bool:
        try:
            self._db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])
        except sqlite3.Error as exc:
            self._storage_failed(exc)
            return False
        return True

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[Event]:
        """Undelivered events in seq order (on disk and spilled)."""
        with self._lock:
            rows = self._db.execute("SELECT seq, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (after_seq, limit + len(self._unsaved_acks))).fetchall()
            events = [Event.from_json(p) for seq, p in rows if seq not in self._unsaved_acks]
            events += [e for seq, (e, _) in self._spill.items() if seq > after_seq]
        events.sort(key=lambda e: e.seq)
        return events[:limit]

    def ack(self, seq: int) -> None:
        with self._lock:
            if self._spill.pop(seq, None) is not None:
                return
            if not self._delete([seq]):
                self._unsaved_acks.add(seq)
            self._acked_since_scrub = True

    def depth(self) -> int:
        with self._lock:
            stored = int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])
            return stored - len(self._unsaved_acks) + len(self._spill)

    def spilled(self) -> int:
        with self._lock:
            return len(self._spill)

    def oldest_age_s(self) -> float:
        with self._lock:
            row = self._db.execute("SELECT min(created) FROM events").fetchone()
            created = [c for c in (row[0], *(c for _, c in self._spill.values())) if c is not None]
        return 0.0 if not created else max(0.0, time.time() - min(created))

    def last_seq(self) -> int:
        with self._lock:
            return max(self._last_seq, self._stored_last_seq())

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
            self._retry_spill_locked(force=True)
            self._scrub_locked(force=True)
            if self._spill:
                log.critical("stopping with %d events only in memory (the disk is full): they are lost unless "
                             "they were published", len(self._spill))
            self._db.close()
