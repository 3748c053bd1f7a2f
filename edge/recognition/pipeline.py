"""One frame through the stages: detect -> track -> align -> embed -> match -> (pose -> gesture) -> decide.

Stages are handed in already built (see edge/service/assembly.py); this module only defines the order and what
flows between them. Inference runs here, in the caller's single loop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.camera import Frame
from edge.config import AdaptationConfig
from edge.events import Decision
from edge.identity.augment import augment
from edge.identity.fusion import fusion_id, join
from edge.identity.matcher import Match, Matcher
from edge.inference.align import align_face
from edge.inference.detector import FaceBox, FaceDetector, box_iou
from edge.inference.embedder import Embedder, describe, embed_views
from edge.inference.face_landmarks import FaceMesh
from edge.inference.liveness import Assessment, Liveness, TrackLiveness
from edge.inference.quality import FaceQuality, face_quality
from edge.recognition.adaptation import Learned, learn
from edge.recognition.decision import Confirmation, Observation
from edge.recognition.tracking import IouTracker
from edge.timing import StageTimer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceResult:
    track_id: int
    face: FaceBox
    match: Match
    embedding: np.ndarray
    quality: FaceQuality | None = None
    liveness: dict | None = None  # {"score", "verdict"[, "frames"]}; None with liveness.policy off
    evidence: Assessment | None = None  # a still photo's liveness, for --explain

    def as_dict(self) -> dict:
        """The face as the identify command's output shows it."""
        return {"box": list(self.face.box), **self.match.as_dict(),
                **({"liveness": self.liveness} if self.liveness is not None else {})}


@dataclass(frozen=True)
class FrameResult:
    frame_index: int
    ts: float
    faces: list[FaceResult]
    decisions: list[Decision]
    learned: list[Learned] = field(default_factory=list)  # templates learned from this frame's check-ins


class Identifier:
    """detect -> align -> embed -> match for every face in an image (also used by enroll/identify)."""

    def __init__(self, detector: FaceDetector, embedder: Embedder, matcher: Matcher | None,
                 timer: StageTimer | None = None, liveness: Liveness | None = None, mesh: FaceMesh | None = None,
                 also: list[Identifier] | None = None, fused: list[Identifier] | None = None):
        self.detector = detector
        self.embedder = embedder
        self.matcher = matcher
        self.timer = timer or StageTimer()
        self.liveness = liveness
        self.mesh = mesh  # FaceMesh, for an embedder aligned on five points (arcface-5point)
        self.also = also or []  # enrolment only: the other embedders it stores templates of (embedder.enrol_also)
        self.fused = fused or []  # the door's other embedders, joined into one identity (embedder.fuse_with)

    @property
    def model_id(self) -> str:
        """The identity's model: the embedder's, or the fused id of it and embedder.fuse_with (edge/identity/fusion.py)."""
        return fusion_id([self.embedder.model_id, *(part.embedder.model_id for part in self.fused)])

    @property
    def dim(self) -> int:
        return self.embedder.dim + sum(part.embedder.dim for part in self.fused)

    def faces(self, image: np.ndarray, tiles: bool | None = None) -> list[FaceBox]:
        """tiles: None = the detector's setting (photos: always tiled)."""
        with self.timer.stage("detect"):
            return self.detector.detect(image, tiles)

    def photo_faces(self, image: np.ndarray) -> tuple[np.ndarray, list[FaceBox], tuple[int, int]]:
        """The faces in a still photo, as (image they were found in, faces, where the photo's origin lies in
        that image). BlazeFace misses a face that fills the whole image, as in a tightly cropped badge
        photo, so a photo with no face is searched again in the middle of a canvas twice its size (edge
        pixels repeated)."""
        faces = self.faces(image)
        if faces:
            return image, faces, (0, 0)
        h, w = image.shape[:2]
        padded = cv2.copyMakeBorder(image, h // 2, h // 2, w // 2, w // 2, cv2.BORDER_REPLICATE)
        return padded, self.faces(padded), (w // 2, h // 2)

    def aligned(self, image: np.ndarray, face: FaceBox) -> tuple[np.ndarray, FaceQuality]:
        """The face cut out and aligned for the embedder, and how usable it is."""
        with self.timer.stage("align"):
            embedder = self.embedder
            aligned = align_face(image, face, embedder.input_size, embedder.align_margin, embedder.alignment,
                                 self.five_point_landmarks(image, face))
            return aligned, face_quality(face, aligned)

    def five_point_landmarks(self, image: np.ndarray, face: FaceBox) -> np.ndarray | None:
        """FaceMesh's landmarks for an embedder aligned on five points, where FaceMesh sees a face in the crop;
        None otherwise (the alignment then uses BlazeFace's keypoints). No size gate: on East Asian crops scaled
        down to 24-36 px faces FaceMesh's points still align far better than BlazeFace's four (MobileFaceNet pair
        AUC 0.877 vs 0.745 at 24 px, 0.955 vs 0.932 at 36 px; docs/accuracy.md)."""
        if self.mesh is None or self.embedder.alignment != "arcface-5point":
            return None
        return self.mesh.points_if_face(image, face)

    def embed_aligned(self, aligned: np.ndarray, view: str = "both") -> np.ndarray:
        """view: "both" for a photo (the face and its mirror image averaged), "plain" or "mirrored" for
        one frame of a track (see embed_views)."""
        with self.timer.stage("embed"):
            return embed_views(self.embedder, aligned, view)

    def embed_with_quality(self, image: np.ndarray, face: FaceBox, view: str = "both"
                           ) -> tuple[np.ndarray, FaceQuality]:
        """The face's identity embedding (every fused embedder's, each aligned its own way, joined) and its quality
        (judged on this embedder's crop)."""
        aligned, quality = self.aligned(image, face)
        own = self.embed_aligned(aligned, view)
        if not self.fused:
            return own, quality
        return join([own, *(part.embed_with_quality(image, face, view)[0] for part in self.fused)]), quality

    def photo_templates(self, image: np.ndarray, face: FaceBox, aligned: np.ndarray, augmentations: int,
                        seed: int) -> np.ndarray:
        """A photo's templates as enrolment stores them: the face (both views), then `augmentations` variants of its
        aligned crop (`aligned`, this embedder's); a fused identity joins every embedder's, variant by variant."""
        own = np.stack([self.embed_aligned(aligned)]
                       + [self.embedder.embed(variant) for variant in augment(aligned, augmentations, seed=seed)])
        if not self.fused:
            return own
        return join([own, *(part.photo_templates(image, face, part.aligned(image, face)[0], augmentations, seed)
                            for part in self.fused)])

    def identify(self, image: np.ndarray) -> list[FaceResult]:
        """Every face in one still photo, embedded and matched (no tracking); boxes in the photo's pixels."""
        searched, faces, (dx, dy) = self.photo_faces(image)
        results = []
        for face in faces:
            embedding, quality = self.embed_with_quality(searched, face)
            verdict, evidence = self.liveness.photo(searched, face) if self.liveness else (None, None)
            results.append(FaceResult(0, face.moved(dx, dy), self.match(embedding, photo=True), embedding, quality,
                                      verdict, evidence))
        return results

    def live_score(self, image: np.ndarray, face: FaceBox) -> float | None:
        """One frame's liveness score for a face (None: no model, or a frame it cannot judge)."""
        if self.liveness is None:
            return None
        with self.timer.stage("liveness"):
            return self.liveness.model.assess(image, face).score

    def explain(self, result: FaceResult, k: int = 3) -> dict:
        """Why a face of a still photo (identify) was or was not named: its nearest people, the rules in force (the
        photo's threshold; a visit's is stricter where the roster measured a visit shift) and its quality."""
        matcher = self.matcher
        if matcher is None:
            return {"why": "no one is enrolled", "candidates": []}
        candidates = matcher.candidates(result.embedding, k)
        threshold, margin = matcher.photo_threshold, matcher.ambiguity_margin
        best = candidates[0] if candidates else None
        if result.match.known:
            why = f"{result.match.name}: distance {result.match.distance:.3f} <= threshold {threshold:.3f}"
        elif best is None or best.distance > threshold:
            why = (f"no enrolled person within the threshold {threshold:.3f}"
                   + (f" (nearest: {best.name} at {best.distance:.3f})" if best else ""))
        else:
            runner = candidates[1]
            why = (f"ambiguous: {best.name} at {best.distance:.3f} and {runner.name} at {runner.distance:.3f} "
                   f"lie within the ambiguity margin {margin:.2f} of each other")
        return {"why": why, "threshold": round(threshold, 4), "visit_threshold": round(matcher.threshold, 4),
                "ambiguity_margin": margin,
                "embedder": describe(self.embedder.meta),
                **({"fused_with": [describe(part.embedder.meta) for part in self.fused]} if self.fused else {}),
                "candidates": [{"person_id": c.person_id, "name": c.name, "distance": c.distance} for c in candidates],
                "quality": result.quality.as_dict() if result.quality else None,
                **({"liveness": self.liveness.explain(result.evidence)} if self.liveness and result.evidence else {})}

    def match(self, embedding: np.ndarray, photo: bool = False) -> Match:
        """photo: the embedding is one still photo's, judged by the matcher's photo threshold; else a track's fused
        identity (a visit), judged by the visit's."""
        if self.matcher is None:
            from edge.identity.matcher import UNKNOWN_EMPTY

            return UNKNOWN_EMPTY
        with self.timer.stage("match"):
            return self.matcher.match(embedding, photo)


@dataclass
class TrackIdentity:
    """A track's identity evidence: its best-weighted embeddings (at most `keep`), fused into one. Its
    frames are embedded plain and mirrored in turn, so the fused identity sees both views of the face."""

    keep: int
    best: list[tuple[float, np.ndarray]] = field(default_factory=list)
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    embedding: np.ndarray | None = None  # the latest frame's
    quality: FaceQuality | None = None
    match: Match | None = None
    matcher: object = None
    embedded_at: int = 0  # processed-frame count of the latest embedding
    embedded: int = 0  # embeddings taken so far; their views alternate plain, mirrored, plain...
    seen_at: int = 0  # processed-frame count the track was last detected in
    frames: int = 0  # frames the track was seen in (embedded or reusing the last embedding)
    liveness: TrackLiveness = field(default_factory=TrackLiveness)

    def next_view(self) -> str:
        return "mirrored" if self.embedded % 2 else "plain"

    def add(self, embedding: np.ndarray, quality: FaceQuality) -> None:
        self.embedded += 1
        self.best.append((quality.weight, embedding))
        self.best.sort(key=lambda item: -item[0])
        del self.best[self.keep:]

    def fused(self) -> np.ndarray:
        """Quality-weighted mean of the kept embeddings, re-normalised to unit length."""
        total = np.sum([w * e for w, e in self.best], axis=0)
        norm = float(np.linalg.norm(total))
        return (total / norm).astype(np.float32) if norm > 0 else self.best[0][1]


MIN_SPLIT_WEIGHT = 0.2  # without a gap, frames below this quality weight cannot split a track
# tracking.split_distance by default, as a fraction of the embedder's operating point (0.9 / 1.058 for FaceNet).
SPLIT_FRACTION = 0.85


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


class Pipeline:
    """One frame at a time. A face track is one person: its identity is fused from its best frames, and
    a track whose new face is far from that evidence is split, so a person stepping into the place the
    last one left gets a fresh track and a fresh decision at any frame rate."""

    def __init__(self, identifier: Identifier, confirmation: Confirmation, tracker: IouTracker | None = None,
                 gestures=None, timer: StageTimer | None = None, reuse_iou: float = 0.8, reembed_every: int = 5,
                 split_distance: float = 0.9, fuse_frames: int = 8, tile_every: int = 3,
                 adaptation: AdaptationConfig | None = None):
        self.identifier = identifier
        self.confirmation = confirmation
        self.tracker = tracker or IouTracker()
        self.gestures = gestures  # None = faces only
        self.timer = timer or identifier.timer
        self.reuse_iou = reuse_iou
        self.reembed_every = reembed_every
        self.split_distance = split_distance
        self.fuse_frames = fuse_frames
        self.tile_every = tile_every
        self.adaptation = adaptation  # None: the door learns nothing from its visits
        self._checked_in: dict[int, Decision] = {}  # live tracks checked in: learned from when they end
        self._tracks: dict[int, TrackIdentity] = {}
        self._count = 0  # frames processed
        self.embeddings_reused = 0
        self.tracks_split = 0

    def _reusable(self, track: TrackIdentity, face: FaceBox) -> bool:
        """The last embedding stands in only for a face seen in the previous frame that barely moved:
        never across a gap in detections, where a different person may have stepped in, and not before
        the track has embedded both views of the face (its first two embedded frames)."""
        return (track.matcher is self.identifier.matcher and track.seen_at == self._count - 1
                and track.embedded >= 2
                and self._count - track.embedded_at < self.reembed_every
                and box_iou(track.box, face.box) >= self.reuse_iou)

    def _someone_else(self, track: TrackIdentity, embedding: np.ndarray, quality: FaceQuality) -> bool:
        """The face is far from the track's identity, and that is evidence: after a gap in detections
        (someone may have stepped in), or when both the face and the track's best frame are usable
        (a half-turned or blurred frame jumps around without anyone else being there)."""
        if embedding_distance(embedding, track.fused()) <= self.split_distance:
            return False
        gap = track.seen_at < self._count - 1
        return gap or min(quality.weight, track.best[0][0]) >= MIN_SPLIT_WEIGHT

    def _identify(self, frame: Frame, track_id: int, face: FaceBox) -> FaceResult:
        track = self._tracks.get(track_id)
        if (track is not None and track.match is not None and track.embedding is not None
                and self._reusable(track, face)):
            self.embeddings_reused += 1
            track.box, track.seen_at = face.box, self._count
            track.frames += 1
            return FaceResult(track_id, face, track.match, track.embedding, track.quality, self._liveness(track))
        view = track.next_view() if track is not None else "plain"
        embedding, quality = self.identifier.embed_with_quality(frame.image, face, view)
        if track is not None and track.best and self._someone_else(track, embedding, quality):
            old_id, track_id = track_id, self.tracker.split(track_id)
            self.tracks_split += 1
            self._checked_in.pop(old_id, None)  # a track someone else stepped into is never learned from
            log.info("track %d split: a different face; now track %d", old_id, track_id)
            track = None
        if track is None:
            track = self._tracks[track_id] = TrackIdentity(self.fuse_frames)
        track.add(embedding, quality)
        track.match = self.identifier.match(track.fused())
        if track.match.known:  # only a face that may be checked in is worth the anti-spoofing models' time
            track.liveness.add(self.identifier.live_score(frame.image, face))
        track.box, track.embedding, track.quality, track.matcher = face.box, embedding, quality, self.identifier.matcher
        track.embedded_at = track.seen_at = self._count
        track.frames += 1
        return FaceResult(track_id, face, track.match, embedding, quality, self._liveness(track))

    def _liveness(self, track: TrackIdentity) -> dict | None:
        """The track's liveness so far (fused over its scored frames), None with liveness off."""
        liveness = self.identifier.liveness
        return track.liveness.as_dict(liveness.rule) if liveness else None

    def process(self, frame: Frame) -> FrameResult:
        self._count += 1
        tiles = self.tile_every > 0 and self._count % self.tile_every == 1 % self.tile_every
        faces = self.identifier.faces(frame.image, tiles)
        track_ids = self.tracker.assign([f.box for f in faces], frame.ts)
        results = [self._identify(frame, track_id, face) for track_id, face in zip(track_ids, faces)]
        live = self.tracker.live_ids()
        ended = {t: k for t, k in self._tracks.items() if t not in live}
        self._tracks = {t: k for t, k in self._tracks.items() if t in live}
        gestures: dict[int, str] = {}
        if self.gestures is not None and results and self.gestures.wanted(self.confirmation.awaiting()):
            with self.timer.stage("pose"):
                gestures = self.gestures.for_faces(frame.image, [r.face.box for r in results],
                                                   [r.track_id for r in results])
        observations = [
            Observation(r.track_id, r.match.known, r.match.person_id, r.match.name, r.match.score,
                        gestures.get(i), r.embedding, r.face.keypoints, float(max(r.face.box[2], r.face.box[3])),
                        r.liveness)
            for i, r in enumerate(results)
        ]
        with self.timer.stage("decide"):
            decisions = self.confirmation.update(frame.ts, observations, self.tracker.live_ids())
        learned = self._learn(decisions, ended) if self.adaptation is not None else []
        self.timer.frame_done()
        return FrameResult(frame.index, frame.ts, results, decisions, learned)

    def _learn(self, decisions: list[Decision], ended: dict[int, TrackIdentity]) -> list[Learned]:
        """Templates learned from the check-ins whose tracks ended this frame: a visit is judged on all its frames,
        once the person has gone, and only if the track still names them (adaptation.py has the other guards). A
        track that was split (someone else stepped in) is not learned from."""
        self._checked_in.update({d.extra["track_id"]: d for d in decisions
                                 if d.type == "check_in" and d.extra.get("track_id") is not None})
        matcher, out = self.identifier.matcher, []
        for track_id, track in ended.items():
            checked_in = self._checked_in.pop(track_id, None)
            if (checked_in is None or matcher is None or self.adaptation is None or not track.best
                    or track.match is None or track.match.person_id != checked_in.person_id):
                continue
            got = learn(self.adaptation, matcher, checked_in, track.fused(), track.best[0][0], track.frames,
                        self.confirmation.liveness_policy != "off", time.time())
            if got is not None:
                out.append(got)
        return out
