"""Arm gestures from pose landmarks: O = confirm, X = reject, both arms up = capture, arms down = standby.

Landmarks are first put in a body frame (origin between the shoulders, one unit = shoulder width,
y up, x towards the person's own left), so the rules hold for any body size, distance or position.
Rules use hysteresis: a gesture already shown is kept with slightly relaxed thresholds, so it does
not flicker at the boundary. A landmark the model did not see (visibility below the threshold) is
never used: without it the answer is "none".

The default classifier is learned instead (edge.inference.gesture_model: a small network trained on
real people's poses, as the seed's Teachable Machine model was); the rules stay as the transparent
alternative (gestures.classifier: rules) and as the reference the learned one is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edge.inference.gesture_model import DEFAULT_MODEL, GestureNetwork, body_points, vector
from edge.inference.pose import (
    LEFT_ELBOW,
    LEFT_HIP,
    LEFT_SHOULDER,
    LEFT_WRIST,
    NOSE,
    RIGHT_ELBOW,
    RIGHT_HIP,
    RIGHT_SHOULDER,
    RIGHT_WRIST,
    SMALL_FACE_SHARE,
    Pose,
    body_coordinates,
)

GESTURES = ("confirm", "reject", "capture", "standby", "none")
ARMS = (LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW, LEFT_WRIST, RIGHT_WRIST)
HYSTERESIS = 0.15  # body units a held gesture's thresholds relax by


@dataclass(frozen=True)
class Body:
    """Body-frame coordinates (shoulder widths; y up; +x = the person's left)."""

    nose: np.ndarray
    lw: np.ndarray
    rw: np.ndarray
    le: np.ndarray
    re: np.ndarray
    torso: float  # shoulder-to-hip distance in the same units


def body_frame(points: np.ndarray, visibility: np.ndarray, min_visibility: float) -> Body | None:
    """Normalise 33 image-space landmarks; None if an arm landmark or the nose was not seen."""
    needed = ARMS + (NOSE,)
    if np.any(visibility[list(needed)] < min_visibility):
        return None
    d = body_coordinates(points)
    if d is None:
        return None
    frame = {i: d[i].astype(np.float32) for i in (NOSE, LEFT_WRIST, RIGHT_WRIST, LEFT_ELBOW, RIGHT_ELBOW)}
    hips_seen = visibility[LEFT_HIP] >= min_visibility and visibility[RIGHT_HIP] >= min_visibility
    torso = float(-(d[LEFT_HIP] + d[RIGHT_HIP])[1] / 2) if hips_seen else 1.6
    return Body(frame[NOSE], frame[LEFT_WRIST], frame[RIGHT_WRIST], frame[LEFT_ELBOW], frame[RIGHT_ELBOW],
                max(torso, 0.8))


def classify_body(body: Body | None, previous: str | None = None) -> str:
    """The gesture a body shows, by geometric rules with hysteresis towards `previous`."""
    if body is None:
        return "none"

    def slack(gesture: str) -> float:
        return HYSTERESIS if gesture == previous else 0.0

    lw, rw, le, re, nose = body.lw, body.rw, body.le, body.re, body.nose
    wrist_gap = abs(float(lw[0] - rw[0]))
    above_head = min(lw[1], rw[1]) - nose[1]

    s = slack("capture")
    if above_head > 0.3 - s and wrist_gap > 1.3 - s and min(le[1], re[1]) > -0.1 - s:
        return "capture"
    s = slack("confirm")
    if above_head > 0.1 - s and wrist_gap < 0.9 + s and min(le[1], re[1]) > -0.1 - s \
            and abs(float(le[0] - re[0])) > 1.2 - s:
        return "confirm"
    s = slack("reject")
    chest = all(-0.6 * body.torso - s < w[1] < 0.3 + s for w in (lw, rw))
    crossed = float(lw[0] - rw[0]) < -0.1 + s and max(abs(lw[0]), abs(rw[0])) < 1.1 + s
    forearms_up = lw[1] > le[1] + 0.15 - s and rw[1] > re[1] + 0.15 - s
    if chest and crossed and forearms_up:
        return "reject"
    s = slack("standby")
    hanging = max(lw[1], rw[1]) < -0.8 + s and lw[1] < le[1] + s and rw[1] < re[1] + s
    close_to_body = max(abs(le[0]), abs(re[0])) < 1.05 + s and max(abs(lw[0]), abs(rw[0])) < 1.15 + s
    if hanging and close_to_body:
        return "standby"
    return "none"


class GestureClassifier(Protocol):
    kind: str

    def classify(self, pose: Pose, previous: str | None = None) -> str: ...


class RuleClassifier:
    kind = "rules"

    def __init__(self, min_visibility: float = 0.5):
        self.min_visibility = min_visibility

    def classify(self, pose: Pose, previous: str | None = None) -> str:
        return classify_body(body_frame(pose.landmarks, pose.visibility, self.min_visibility), previous)


class LearnedClassifier:
    """The network of edge.inference.gesture_model: kind "learned" is the packaged one (trained on real
    people's poses), "trained" a site's own (`facecheck gestures train`)."""

    def __init__(self, network: GestureNetwork, min_visibility: float = 0.5, kind: str = "learned"):
        self.network = network
        self.min_visibility = min_visibility
        self.kind = kind

    def classify(self, pose: Pose, previous: str | None = None) -> str:
        points = body_points(pose.landmarks, pose.visibility, self.min_visibility)
        return "none" if points is None else self.network.predict(vector(points))[0]


# ------------------------------------------------------------------ the pipeline stage


NO_BODY = "(no body)"  # a photo in which no usable pose was found


@dataclass
class Confusion:
    """True gesture -> what was read, over labelled photos: the table `facecheck gestures evaluate` prints and
    bench.gesture_accuracy writes. Each true label's row counts every read gesture and NO_BODY."""

    rows: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, truth: str, read: str) -> None:
        row = self.rows.setdefault(truth, {})
        row[read] = row.get(read, 0) + 1

    def recall(self, truth: str) -> float | None:
        """Share of photos with a body that read right (None: no body in any)."""
        row = self.rows.get(truth, {})
        bodies = sum(n for read, n in row.items() if read != NO_BODY)
        return row.get(truth, 0) / bodies if bodies else None

    def wrong_triggers(self) -> int:
        """Photos of no gesture (none, standby) read as O, X or capture: confirmations nobody gave."""
        return sum(n for truth in ("none", "standby") for read, n in self.rows.get(truth, {}).items()
                   if read in GESTURE_ACTIONS)

    def table(self) -> str:
        columns = [*GESTURES, NO_BODY]
        header = "true / read"
        lines = [f"{header:12}" + "".join(f"{c:>10}" for c in columns) + f"{'recall':>9}"]
        for truth in (g for g in GESTURES if g in self.rows):
            row, recall = self.rows[truth], self.recall(truth)
            lines.append(f"{truth:12}" + "".join(f"{row.get(c, 0):>10}" for c in columns)
                         + (f"{100 * recall:8.1f}%" if recall is not None else f"{'-':>9}"))
        lines.append(f"wrong triggers (none/standby read as confirm, reject or capture): {self.wrong_triggers()}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"rows": self.rows, "recall": {t: self.recall(t) for t in self.rows},
                "wrong_triggers": self.wrong_triggers()}


GESTURE_ACTIONS = ("confirm", "reject", "capture")


def read_gesture(pose_model: PoseModel, classifier: GestureClassifier, image: np.ndarray) -> str:
    """The gesture of the photo's most confident body, or NO_BODY."""
    poses = pose_model.poses(image)
    return classifier.classify(poses[0]) if poses else NO_BODY


def build_classifier(kind: str, trained_model: Path, min_visibility: float) -> GestureClassifier:
    """rules; learned (the packaged network); trained (a site's own, at trained_model)."""
    if kind == "rules":
        return RuleClassifier(min_visibility)
    return LearnedClassifier(GestureNetwork.load(trained_model if kind == "trained" else DEFAULT_MODEL),
                             min_visibility, kind)


def owner_of(pose: Pose, boxes: list[tuple[int, int, int, int]], min_visibility: float) -> int | None:
    """Index of the face box that holds this body's nose and eyes (seen ones); None if no box does."""
    from edge.inference.pose import LEFT_EYE, RIGHT_EYE

    points = [pose.landmarks[i] for i in (NOSE, LEFT_EYE, RIGHT_EYE) if pose.visibility[i] >= min_visibility]
    if not points:
        return None
    for index, (x, y, w, h) in enumerate(boxes):
        mx, my = 0.15 * w, 0.15 * h
        if all(x - mx <= p[0] <= x + w + mx and y - my <= p[1] <= y + h + my for p in points):
            return index
    return None


class PoseModel(Protocol):
    """What reads bodies in a frame (BlazePose here): the gesture stage depends on this, not on the model."""

    def poses(self, image_bgr: np.ndarray, tiles: bool = True) -> list[Pose]: ...


class GestureReader(Protocol):
    """What the pipeline needs of the gesture stage: whether to look this frame, and each face's gesture.
    GestureStage (a pose model plus the classifier gestures.classifier chooses) is the one shipped."""

    last_poses: list[Pose]

    def wanted(self, awaiting: bool) -> bool: ...

    def for_faces(self, image: np.ndarray, boxes: list[tuple[int, int, int, int]],
                  track_ids: list[int]) -> dict[int, str]: ...


class GestureStage:
    """Pose + gesture for the faces in a frame; pose runs only while a confirmation is pending
    (or every idle_every frames), so idle frames stay cheap."""

    def __init__(self, pose: PoseModel, classifier: GestureClassifier, min_visibility: float = 0.5, idle_every: int = 0):
        self.pose = pose
        self.classifier = classifier
        self.min_visibility = min_visibility
        self.idle_every = idle_every
        self.last_poses: list[Pose] = []
        self._previous: dict[int, str] = {}
        self._frames = 0

    def wanted(self, awaiting: bool) -> bool:
        self._frames += 1
        return awaiting or (self.idle_every > 0 and self._frames % self.idle_every == 0)

    def find_poses(self, image: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[Pose]:
        """The frame's bodies; tiles are searched only for a face small enough that its body may be too."""
        small = any(h < SMALL_FACE_SHARE * min(image.shape[:2]) for _, _, _, h in boxes)
        self.last_poses = self.pose.poses(image, tiles=small)
        return self.last_poses

    def for_faces(self, image: np.ndarray, boxes: list[tuple[int, int, int, int]], track_ids: list[int]) -> dict[int, str]:
        """face index -> gesture of the body that owns that face (faces without a body get none)."""
        self.find_poses(image, boxes)
        gestures: dict[int, str] = {}
        for pose in self.last_poses:
            index = owner_of(pose, boxes, self.min_visibility)
            if index is None or index in gestures:
                continue
            track = track_ids[index]
            gesture = self.classifier.classify(pose, self._previous.get(track))
            gestures[index] = gesture
            self._previous[track] = gesture
        live = set(track_ids)
        self._previous = {t: g for t, g in self._previous.items() if t in live}
        return gestures
