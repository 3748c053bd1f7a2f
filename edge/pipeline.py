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
from edge.tracking import IouTracker


@dataclass(frozen=True)
class FaceResult:
    track_id: int
    face: FaceBox
    match: Match
    embedding: np.ndarray


@dataclass(frozen=True)
class FrameResult:
    frame_index: int
    ts: float
    faces: list[FaceResult]
    decisions: list[Decision]


class Identifier:
    """detect -> align -> embed -> match for every face in an image (also used by enroll/identify)."""

    def __init__(self, detector: FaceDetector, embedder: Embedder, matcher: Matcher | None, margin: float,
                 timer: StageTimer | None = None):
        self.detector = detector
        self.embedder = embedder
        self.matcher = matcher
        self.margin = margin
        self.timer = timer or StageTimer()

    def faces(self, image: np.ndarray) -> list[FaceBox]:
        with self.timer.stage("detect"):
            return self.detector.detect(image)

    def embed(self, image: np.ndarray, face: FaceBox) -> np.ndarray:
        with self.timer.stage("align"):
            aligned = align_face(image, face, self.embedder.input_size, self.margin)
        with self.timer.stage("embed"):
            return self.embedder.embed(aligned)

    def match(self, embedding: np.ndarray) -> Match:
        if self.matcher is None:
            from edge.inference.matcher import UNKNOWN_EMPTY

            return UNKNOWN_EMPTY
        with self.timer.stage("match"):
            return self.matcher.match(embedding)


class Pipeline:
    def __init__(self, identifier: Identifier, confirmation: Confirmation, tracker: IouTracker | None = None,
                 gestures=None, timer: StageTimer | None = None):
        self.identifier = identifier
        self.confirmation = confirmation
        self.tracker = tracker or IouTracker()
        self.gestures = gestures  # edge.inference.gestures.GestureStage; None = faces only
        self.timer = timer or identifier.timer

    def process(self, frame: Frame) -> FrameResult:
        faces = self.identifier.faces(frame.image)
        track_ids = self.tracker.assign([f.box for f in faces], frame.ts)
        results = []
        for track_id, face in zip(track_ids, faces):
            embedding = self.identifier.embed(frame.image, face)
            results.append(FaceResult(track_id, face, self.identifier.match(embedding), embedding))
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
