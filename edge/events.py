"""Attendance events: what the decision stage produces and every sink delivers."""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

EVENT_TYPES = ("check_in", "rejected", "unknown_face", "capture", "spoof_suspected", "template_added")


def rfc3339_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Decision:
    """What the confirmation stage decided, before the outbox gives it a seq and an id."""

    type: str
    person_id: str | None = None
    name: str | None = None
    score: float | None = None
    gesture: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}")


@dataclass(frozen=True)
class Event:
    """An event as published: the payload docs/mqtt.md and edge/schemas/event.schema.json describe."""

    event_id: str
    seq: int
    type: str
    device_id: str
    person_id: str | None
    name: str | None
    score: float | None
    gesture: str | None
    ts: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_decision(cls, decision: Decision, seq: int, device_id: str, ts: str | None = None) -> Event:
        return cls(event_id=str(uuid.uuid4()), seq=seq, type=decision.type, device_id=device_id,
                   person_id=decision.person_id, name=decision.name,
                   score=None if decision.score is None else round(float(decision.score), 4),
                   gesture=decision.gesture, ts=ts or rfc3339_now(), extra=dict(decision.extra))

    def payload(self) -> dict[str, Any]:
        body = asdict(self)
        extra = body.pop("extra")
        body.update(extra)
        return body

    def to_json(self) -> str:
        return json.dumps(self.payload(), separators=(",", ":"), sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> Event:
        body = json.loads(text)
        known = {k: body.pop(k) for k in ("event_id", "seq", "type", "device_id", "person_id", "name", "score",
                                          "gesture", "ts")}
        return cls(**known, extra=body)


class EventSink(Protocol):
    """Receives each event once it is durable in the outbox."""

    def deliver(self, event: Event) -> None: ...


class StdoutSink:
    """JSON lines on stdout, one per event, flushed at once (for pipes and journald)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def deliver(self, event: Event) -> None:
        self.stream.write(event.to_json() + "\n")
        self.stream.flush()
