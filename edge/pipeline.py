"""One frame through the stages: detect -> track -> align -> embed -> match -> (pose -> gesture) -> decide.

Stages are handed in already built (see edge/app.py); this module only defines the order and what
flows between them. Inference runs here, in the caller's single loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.camera import Frame
from edge.decision import Confirmation, Observation
from edge.events import Decision
from edge.inference.align import align_face
from edge.inference.detector import FaceBox, FaceDetector
from edge.inference.embedder import Embedder
from edge.inference.matcher import Match, Matcher
from edge.timing import StageTimer
from edge.tracking import IouTracker, iou


@dataclass(frozen=True)
class FaceResult:
    track_id: int
    face: FaceBox
    match: Match
    embedding: np.ndarray

    def as_dict(self) -> dict:
        """The face as CONTRACT.md's identify output shows it."""
        return {"box": list(self.face.box), **self.match.as_dict()}


@dataclass(frozen=True)
class FrameResult:
    frame_index: int
    ts: float
    faces: list[FaceResult]
    decisions: list[Decision]


class Identifier:
    """detect -> align -> embed -> match for every face in an image (also used by enroll/identify)."""

    def __init__(self, detector: FaceDetector, embedder: Embedder, matcher: Matcher | None,
                 timer: StageTimer | None = None):
        self.detector = detector
        self.embedder = embedder
        self.matcher = matcher
        self.timer = timer or StageTimer()

    def faces(self, image: np.ndarray) -> list[FaceBox]:
        with self.timer.stage("detect"):
            return self.detector.detect(image)

    def embed(self, image: np.ndarray, face: FaceBox) -> np.ndarray:
        with self.timer.stage("align"):
            aligned = align_face(image, face, self.embedder.input_size, self.embedder.align_margin)
        with self.timer.stage("embed"):
            return self.embedder.embed(aligned)

    def identify(self, image: np.ndarray) -> list[FaceResult]:
        """Every face in one still image, embedded and matched (no tracking)."""
        results = []
        for face in self.faces(image):
            embedding = self.embed(image, face)
            results.append(FaceResult(0, face, self.match(embedding), embedding))
        return results

    def match(self, embedding: np.ndarray) -> Match:
        if self.matcher is None:
            from edge.inference.matcher import UNKNOWN_EMPTY

            return UNKNOWN_EMPTY
        with self.timer.stage("match"):
            return self.matcher.match(embedding)


@dataclass
class _Known:
    box: tuple[int, int, int, int]
    embedding: np.ndarray
    match: Match
    frame_index: int
    matcher: object


class Pipeline:
    def __init__(self, identifier: Identifier, confirmation: Confirmation, tracker: IouTracker | None = None,
                 gestures=None, timer: StageTimer | None = None, reuse_iou: float = 0.8, reembed_every: int = 5):
        self.identifier = identifier
        self.confirmation = confirmation
        self.tracker = tracker or IouTracker()
        self.gestures = gestures  # edge.inference.gestures.GestureStage; None = faces only
        self.timer = timer or identifier.timer
        self.reuse_iou = reuse_iou
        self.reembed_every = reembed_every
        self._known: dict[int, _Known] = {}
        self.embeddings_reused = 0

    def _identify(self, frame: Frame, track_id: int, face: FaceBox) -> FaceResult:
        """Embed and match a face, or reuse its track's last result while it has barely moved."""
        known = self._known.get(track_id)
        if (known is not None and known.matcher is self.identifier.matcher
                and frame.index - known.frame_index < self.reembed_every and iou(known.box, face.box) >= self.reuse_iou):
            self.embeddings_reused += 1
            return FaceResult(track_id, face, known.match, known.embedding)
        embedding = self.identifier.embed(frame.image, face)
        match = self.identifier.match(embedding)
        self._known[track_id] = _Known(face.box, embedding, match, frame.index, self.identifier.matcher)
        return FaceResult(track_id, face, match, embedding)

    def process(self, frame: Frame) -> FrameResult:
        faces = self.identifier.faces(frame.image)
        track_ids = self.tracker.assign([f.box for f in faces], frame.ts)
        results = [self._identify(frame, track_id, face) for track_id, face in zip(track_ids, faces)]
        live = self.tracker.live_ids()
        self._known = {t: k for t, k in self._known.items() if t in live}
        gestures: dict[int, str] = {}
        if self.gestures is not None and results and self.gestures.wanted(self.confirmation.awaiting()):
            with self.timer.stage("pose"):
                gestures = self.gestures.for_faces(frame.image, [r.face.box for r in results],
                                                   [r.track_id for r in results])
        observations = [
            Observation(r.track_id, r.match.known, r.match.person_id, r.match.name, r.match.score,
                        gestures.get(i), r.embedding, r.face.keypoints, float(max(r.face.box[2], r.face.box[3])))
            for i, r in enumerate(results)
        ]
        with self.timer.stage("decide"):
            decisions = self.confirmation.update(frame.ts, observations, self.tracker.live_ids())
        self.timer.frame_done()
        return FrameResult(frame.index, frame.ts, results, decisions)
