"""The confirmation state machine: from per-frame identities and gestures to attendance decisions.

Pure and clocked only by frame timestamps, so every path can be driven by a synthetic timeline.
Each face track moves idle -> awaiting (recognised for N frames) -> decided or timed out; a face
that stays unknown is reported once per interval; a cooldown per person stops duplicate check-ins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from edge.config import ConfirmationConfig
from edge.events import Decision

log = logging.getLogger(__name__)

GESTURE_EVENTS = {"confirm": "check_in", "reject": "rejected", "capture": "capture"}


@dataclass(frozen=True)
class Observation:
    """One face in one frame: its track, identity and the gesture of the body that owns it."""

    track_id: int
    known: bool
    person_id: str | None
    name: str | None
    score: float
    gesture: str | None = None  # None: no pose for this face in this frame
    embedding: Any = None  # numpy vector; serialised only for capture events


@dataclass
class _TrackState:
    state: str = "idle"  # idle | awaiting | done
    person_id: str | None = None
    recognised: int = 0
    unknown: int = 0
    awaiting_since: float = 0.0
    gesture: str | None = None
    held: int = 0
    scores: list[float] = field(default_factory=list)


class Confirmation:
    def __init__(self, config: ConfirmationConfig):
        self.config = config
        self._tracks: dict[int, _TrackState] = {}
        self._last_check_in: dict[str, float] = {}
        self._last_unknown = float("-inf")

    def awaiting(self) -> bool:
        """Whether any face waits for a gesture (the pipeline runs pose only then)."""
        return any(t.state == "awaiting" for t in self._tracks.values())

    def update(self, ts: float, observations: list[Observation], live: set[int] | None = None) -> list[Decision]:
        """Advance every track by one frame; `live` are the tracks still in view (default: those observed)."""
        live = {o.track_id for o in observations} if live is None else live
        for gone in set(self._tracks) - live:
            del self._tracks[gone]
        decisions: list[Decision] = []
        for obs in observations:
            track = self._tracks.setdefault(obs.track_id, _TrackState())
            decision = self._step(ts, obs, track)
            if decision is not None:
                decisions.append(decision)
        return decisions

    def _step(self, ts: float, obs: Observation, track: _TrackState) -> Decision | None:
        cfg = self.config
        if track.state == "done":
            return None
        if not obs.known:
            track.recognised, track.unknown = 0, track.unknown + 1
            if track.state == "idle" and track.unknown >= cfg.unknown_frames:
                track.state = "done"
                if ts - self._last_unknown >= cfg.unknown_interval_s:
                    self._last_unknown = ts
                    return Decision("unknown_face", score=obs.score, extra={"track_id": obs.track_id})
            return None
        if obs.person_id != track.person_id:
            track.person_id, track.recognised, track.scores = obs.person_id, 0, []
            if track.state == "awaiting":
                track.state = "idle"
        track.unknown = 0
        track.recognised += 1
        track.scores.append(obs.score)
        if track.state == "idle":
            if track.recognised < cfg.recognise_frames:
                return None
            if self._cooling_down(ts, obs.person_id):
                track.state = "done"
                log.info("%s seen again within the %.0fs cooldown; no new check-in", obs.name, cfg.cooldown_s)
                return None
            if not cfg.require_gesture:
                track.state = "done"
                return self._decide(ts, obs, track, "check_in", None)
            track.state, track.awaiting_since, track.gesture, track.held = "awaiting", ts, None, 0
            log.info("%s recognised; awaiting a confirmation gesture", obs.name)
            return None
        # awaiting
        if ts - track.awaiting_since > cfg.timeout_s:
            track.state = "done"
            log.info("%s did not confirm within %.1fs; no check-in", obs.name, cfg.timeout_s)
            return None
        if obs.gesture in GESTURE_EVENTS:
            track.held = track.held + 1 if obs.gesture == track.gesture else 1
            track.gesture = obs.gesture
            if track.held >= cfg.hold_frames:
                track.state = "done"
                return self._decide(ts, obs, track, GESTURE_EVENTS[obs.gesture], obs.gesture)
        else:
            track.gesture, track.held = obs.gesture, 0
        return None

    def _cooling_down(self, ts: float, person_id: str | None) -> bool:
        last = self._last_check_in.get(person_id or "")
        return last is not None and ts - last < self.config.cooldown_s

    def _decide(self, ts: float, obs: Observation, track: _TrackState, kind: str, gesture: str | None) -> Decision:
        if kind in ("check_in", "rejected"):
            self._last_check_in[obs.person_id or ""] = ts
        score = sum(track.scores) / len(track.scores) if track.scores else obs.score
        extra: dict = {"track_id": obs.track_id}
        if kind == "capture" and self.config.include_embedding_on_capture and obs.embedding is not None:
            extra["embedding"] = [round(float(v), 5) for v in obs.embedding]
        return Decision(kind, person_id=obs.person_id, name=obs.name, score=score, gesture=gesture, extra=extra)
