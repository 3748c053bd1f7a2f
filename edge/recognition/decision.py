"""The confirmation state machine: from per-frame identities and gestures to attendance decisions.

Pure and clocked only by frame timestamps, so every path can be driven by a synthetic timeline.
Each face track moves idle -> awaiting (recognised for N frames) -> decided or timed out; a face
that stays unknown is reported once per interval; a cooldown per person stops duplicate check-ins.
Reporting a face unknown does not end its track: a person walking up is often unknown while far or
turned away and recognised once near, within the same track.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.config import ConfirmationConfig
from edge.events import Decision

log = logging.getLogger(__name__)

GESTURE_EVENTS = {"confirm": "check_in", "reject": "rejected", "capture": "capture"}
# Median keypoint movement per frame, as a fraction of face size, below which a face counts as still.
STILL_MOTION = 0.002


def held_gesture(seen: list[str | None], frames: int) -> str | None:
    """The O, X or capture seen in at least `frames` of the recent frames `seen`, if one is.

    k of the last n frames, not k in a row: one frame in which the pose model lost the arms (a motion blur,
    a landmark seen less surely) does not restart the count. Two gestures cannot both reach k unless the
    window holds 2k frames; then the one shown last wins."""
    for gesture in reversed(seen):
        if gesture in GESTURE_EVENTS and seen.count(gesture) >= frames:
            return gesture
    return None


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
    keypoints: Any = None  # the face's 6 keypoints (pixels), for the passive liveness check
    face_size: float = 0.0
    liveness: dict | None = None  # the track's anti-spoofing verdict so far: {"score", "verdict", "frames"}


@dataclass
class _TrackState:
    state: str = "idle"  # idle | awaiting | done
    person_id: str | None = None
    reported_unknown: bool = False  # unknown_face decided for this track (at most once; it may still check in)
    recognised: int = 0
    unknown: int = 0
    awaiting_since: float = 0.0
    seen: list[str | None] = field(default_factory=list)  # the gestures of the last hold_window frames
    scores: list[float] = field(default_factory=list)
    last_keypoints: Any = None
    motion: list[float] = field(default_factory=list)


class Confirmation:
    """liveness_policy: refuse (a track judged a spoof never checks in, rejects or captures: it gives a
    spoof_suspected event carrying the identity it claimed), flag (it does, with its verdict), off."""

    def __init__(self, config: ConfirmationConfig, liveness_policy: str = "off",
                 seal_embedding: Callable[[np.ndarray], dict] | None = None, liveness_check: str | None = None):
        """seal_embedding: how a capture's embedding is sealed to the backend (edge.security.sealing.seal_to); a capture
        carries one only with confirmation.include_embedding_on_capture and this given. liveness_check: which
        anti-spoofing was in force ("minifasnet v2", "off"), written into every event."""
        self.config = config
        self.liveness_policy = liveness_policy
        self.liveness_check = liveness_check or ("off" if liveness_policy == "off" else "unknown")
        self.seal_embedding = seal_embedding
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
        self._track_motion(obs, track)
        if track.state == "done":
            return None
        if not obs.known:
            track.recognised, track.unknown = 0, track.unknown + 1
            if track.state == "idle" and not track.reported_unknown and track.unknown >= cfg.unknown_frames:
                track.reported_unknown = True
                if ts - self._last_unknown >= cfg.unknown_interval_s:
                    self._last_unknown = ts
                    # a stranger's face is not scored for spoofing; which check was in force is said all the same
                    return Decision("unknown_face", score=obs.score,
                                    extra={"track_id": obs.track_id, "liveness": self.liveness(track, None)})
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
            track.state, track.awaiting_since, track.seen = "awaiting", ts, []
            log.info("%s recognised; awaiting a confirmation gesture", obs.name)
            return None
        # awaiting
        if ts - track.awaiting_since > cfg.timeout_s:
            track.state = "done"
            log.info("%s did not confirm within %.1fs; no check-in", obs.name, cfg.timeout_s)
            return None
        track.seen = (track.seen + [obs.gesture])[-cfg.hold_window:]
        gesture = held_gesture(track.seen, cfg.hold_frames)
        if gesture is not None:
            track.state = "done"
            return self._decide(ts, obs, track, GESTURE_EVENTS[gesture], gesture)
        return None

    @staticmethod
    def _track_motion(obs: Observation, track: _TrackState) -> None:
        """How far the face's keypoints move frame to frame, relative to the face size."""
        if obs.keypoints is None or obs.face_size <= 0:
            return
        if track.last_keypoints is not None:
            shift = float(np.mean(np.linalg.norm(obs.keypoints - track.last_keypoints, axis=1)))
            track.motion.append(shift / obs.face_size)
            del track.motion[:-30]
        track.last_keypoints = np.asarray(obs.keypoints, np.float32)

    def liveness(self, track: _TrackState, gesture: str | None) -> dict:
        """Active (a gesture was performed) and passive (the face moved naturally) liveness evidence.

        A printed photo cannot perform a gesture; a perfectly still face is suspicious. The passive
        check is cheap evidence, not proof: a photo waved by hand moves too.
        """
        motion = float(np.median(track.motion)) if track.motion else None
        passive = "unknown" if motion is None else ("ok" if motion >= STILL_MOTION else "suspicious")
        return {"gesture": gesture is not None, "motion": None if motion is None else round(motion, 5),
                "passive": passive, "policy": self.liveness_policy, "check": self.liveness_check}

    def _cooling_down(self, ts: float, person_id: str | None) -> bool:
        last = self._last_check_in.get(person_id or "")
        return last is not None and ts - last < self.config.cooldown_s

    def _decide(self, ts: float, obs: Observation, track: _TrackState, kind: str, gesture: str | None) -> Decision:
        if obs.liveness is not None and obs.liveness["verdict"] == "spoof" and self.liveness_policy == "refuse":
            kind = "spoof_suspected"
            log.warning("track %d claims to be %s but looks like a photo or a screen (liveness %s); not checked in",
                        obs.track_id, obs.name, obs.liveness["score"])
        if kind in ("check_in", "rejected"):
            self._last_check_in[obs.person_id or ""] = ts
        score = sum(track.scores) / len(track.scores) if track.scores else obs.score
        extra: dict = {"track_id": obs.track_id, "liveness": {**self.liveness(track, gesture), **(obs.liveness or {})}}
        if (kind == "capture" and self.config.include_embedding_on_capture and self.seal_embedding is not None
                and obs.embedding is not None):
            extra["embedding_sealed"] = self.seal_embedding(np.asarray(obs.embedding, "<f4"))
        return Decision(kind, person_id=obs.person_id, name=obs.name, score=score, gesture=gesture, extra=extra)
