"""The periodic health payload (<base>/health): enough for an operator to see a door is well."""

from __future__ import annotations

import time
from dataclasses import asdict

from edge import __version__
from edge.events import rfc3339_now


def matcher_summary(matcher) -> dict:
    """The matcher in force, its threshold and the operating point (measured FAR/TAR) it belongs to."""
    from edge.identity.operating import operating_point, summary

    gallery = matcher.gallery
    return {"kind": matcher.kind, **summary(matcher.threshold, matcher.threshold_origin,
                                            operating_point(gallery.model_id), int(gallery.original.sum()),
                                            getattr(matcher, "roster", None))}


def health_payload(daemon) -> dict:
    pipeline = daemon.pipeline
    identifier = pipeline.identifier
    matcher = identifier.matcher
    capture = daemon.capture
    return {
        "device_id": daemon.config.device_id,
        "ts": rfc3339_now(),
        "version": __version__,
        "uptime_s": round(time.monotonic() - daemon.started, 1),
        "fps": round(daemon.timer.fps(), 2),
        "latency_ms": daemon.timer.summary(),
        "frames": daemon.frames,
        "frames_dropped": capture.frames_dropped,
        "camera_reconnects": capture.reconnects,
        "outbox_depth": daemon.outbox.depth(),
        "outbox_oldest_s": round(daemon.outbox.oldest_age_s(), 1),
        "last_seq": daemon.outbox.last_seq(),
        "disk_full": daemon.outbox.disk_full,
        "outbox_spilled": daemon.outbox.spilled(),
        "events_lost": daemon.outbox.events_lost,
        "jobs_pending": daemon.jobs.busy(),
        "events": daemon.event_count,
        "models": {"detector": getattr(identifier.detector, "model_id", "unknown"),
                   "embedder": identifier.embedder.model_id},
        "roster": {"people": matcher.gallery.people if matcher else 0,
                   "version": matcher.gallery.version if matcher else 0},
        "matcher": matcher_summary(matcher) if matcher else None,
        "liveness": {"policy": daemon.config.liveness.policy, **asdict(daemon.liveness_verdicts)},
        "broker": daemon.link.node if daemon.link is not None else None,
    }
