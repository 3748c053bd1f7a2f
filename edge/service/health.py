"""The periodic health payload (<base>/health): enough for an operator to see a door is well.

The daemon fills one typed HealthSnapshot of what it knows; health_payload turns it into the JSON the
schema (edge/schemas/health.schema.json) describes. Nothing here reads the daemon's attributes."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edge import __version__
from edge.events import rfc3339_now
from edge.identity.matcher import Matcher
from edge.identity.operating import operating_point, summary
from edge.inference.liveness import VerdictCounts


@dataclass(frozen=True)
class OutboxState:
    depth: int
    oldest_s: float
    last_seq: int
    disk_full: bool
    spilled: int
    events_lost: int


@dataclass(frozen=True)
class HealthSnapshot:
    device_id: str
    uptime_s: float
    fps: float
    latency_ms: dict[str, dict[str, float]]  # stage -> {p50, p95, n} (timing.StageTimer.summary)
    frames: int
    frames_dropped: int
    camera_reconnects: int
    outbox: OutboxState
    jobs_pending: int  # jobs submitted and not yet applied
    events: int
    detector_model: str
    embedder_model: str
    matcher: Matcher | None
    liveness_policy: str
    liveness_check: str  # the anti-spoofing in force: "minifasnet v2", or "off"
    liveness_verdicts: VerdictCounts
    broker: str | None  # host:port in use; None without MQTT


def matcher_summary(matcher: Matcher) -> dict:
    """The matcher in force, its threshold and the operating point (measured FAR/TAR) it belongs to."""
    gallery = matcher.gallery
    return {"kind": matcher.kind, **summary(matcher.threshold, matcher.threshold_origin,
                                            operating_point(gallery.model_id), int(gallery.original.sum()),
                                            matcher.roster, matcher.site),
            "photo_threshold": round(matcher.photo_threshold, 4)}


def health_payload(snapshot: HealthSnapshot) -> dict:
    s, matcher = snapshot, snapshot.matcher
    return {
        "device_id": s.device_id,
        "ts": rfc3339_now(),
        "version": __version__,
        "uptime_s": round(s.uptime_s, 1),
        "fps": round(s.fps, 2),
        "latency_ms": s.latency_ms,
        "frames": s.frames,
        "frames_dropped": s.frames_dropped,
        "camera_reconnects": s.camera_reconnects,
        "outbox_depth": s.outbox.depth,
        "outbox_oldest_s": round(s.outbox.oldest_s, 1),
        "last_seq": s.outbox.last_seq,
        "disk_full": s.outbox.disk_full,
        "outbox_spilled": s.outbox.spilled,
        "events_lost": s.outbox.events_lost,
        "jobs_pending": s.jobs_pending,
        "events": s.events,
        "models": {"detector": s.detector_model, "embedder": s.embedder_model},
        "roster": {"people": matcher.gallery.people if matcher else 0,
                   "version": matcher.gallery.version if matcher else 0,
                   "adapted": sum(matcher.gallery.adapted_counts().values()) if matcher else 0},
        "matcher": matcher_summary(matcher) if matcher else None,
        "liveness": {"policy": s.liveness_policy, "check": s.liveness_check, **asdict(s.liveness_verdicts)},
        "broker": s.broker,
    }
