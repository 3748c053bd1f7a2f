"""Body pose landmarks with MediaPipe's BlazePose models, run directly by the TFLite interpreter.

Two models from the mediapipe wheel (copied into the model bundle by `facecheck-convert bundle`):
pose_detection (finds every person, with hip-centre and body-scale keypoints) and pose_landmark_full
(33 landmarks with visibility inside a rotated crop).
Running them ourselves, rather than through mediapipe's legacy single-person Pose solution, gives
landmarks for several people in one frame, so each gesture can be tied to the right face.

The detector sees the frame letterboxed to 224x224, where a body a third of the frame high is about 50 px:
on the shared gesture photos (640x480, people ~150 px tall) it found nobody in 64 of 680 frames. When the
whole frame gives nobody, overlapping tiles of two thirds of the frame's short side are searched too (up
to 6 more detector runs, only on such frames): that found a body in all 64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.inference.detector import ssd_anchors, ssd_detect, tile_origins
from edge.inference.tflite import DEFAULT_MODELS_DIR, TfliteModel, bundle_model

NOSE, LEFT_EYE, RIGHT_EYE = 0, 2, 5
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW = 11, 12, 13, 14
LEFT_WRIST, RIGHT_WRIST, LEFT_HIP, RIGHT_HIP = 15, 16, 23, 24
SKELETON = ((11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (11, 23), (12, 24), (23, 24), (23, 25), (25, 27),
            (24, 26), (26, 28), (0, 2), (0, 5))


@dataclass(frozen=True)
class Person:
    """One detected body: where the landmark model should look."""

    score: float
    center: tuple[float, float]  # hip centre, pixels
    size: float  # side of the square crop, pixels
    rotation: float  # radians


@dataclass(frozen=True)
class Pose:
    landmarks: np.ndarray  # 33 x 2 pixels
    visibility: np.ndarray  # 33, in [0, 1]
    presence: float
    person: Person

    def visible(self, index: int, threshold: float) -> bool:
        return bool(self.visibility[index] >= threshold)


# The landmark model's own belief that a body is in its crop. The people of the gesture photos score 0.986 or
# more (616 bodies; 3 under 0.5), portraits 0.81+, while a camera tripod in vtest.avi scored 0.80 and its
# landmarks read as capture: below this no pose is given.
MIN_PRESENCE = 0.9
TILE_SHARE = 2 / 3  # a tile's side, as a share of the frame's short side
# A face smaller than this share of the frame's short side belongs to a body (about 8 faces tall) small
# enough for the whole-frame detector to miss (the gesture photos' ~20 px faces in 480 px frames). Above
# it, searching tiles costs 6 detector runs per frame for nothing: a close person whose body the model
# does not find (a head-and-shoulders view) is not found in a tile either.
SMALL_FACE_SHARE = 1 / 16


def _one_per_body(people: list[Person]) -> list[Person]:
    """Of bodies found in overlapping tiles, the most confident per place (hip centres closer than a
    quarter of the body's crop are the same body)."""
    kept: list[Person] = []
    for person in sorted(people, key=lambda p: -p.score):
        if all(math.dist(person.center, other.center) > 0.25 * max(person.size, other.size) for other in kept):
            kept.append(person)
    return kept


def body_coordinates(landmarks: np.ndarray) -> np.ndarray | None:
    """Every landmark in the body frame both gesture classifiers read: origin between the shoulders, one unit
    = the shoulder width, y up, +x towards the person's own left (facing the camera or not, at any size);
    None where the shoulders coincide."""
    ls, rs = landmarks[LEFT_SHOULDER].astype(np.float64), landmarks[RIGHT_SHOULDER].astype(np.float64)
    width = float(np.linalg.norm(ls - rs))
    if width < 1e-6:
        return None
    side = 1.0 if ls[0] >= rs[0] else -1.0  # facing the camera, the left shoulder is on the image right
    d = (landmarks - (ls + rs) / 2) / width
    return np.stack([side * d[:, 0], -d[:, 1]], axis=1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


class BlazePose:
    DETECT_SIZE = 224
    LANDMARK_SIZE = 256

    def __init__(self, threads: int = 0, min_detection: float = 0.6, min_presence: float = MIN_PRESENCE,
                 max_people: int = 3, models_dir: Path = DEFAULT_MODELS_DIR):
        self.detector = TfliteModel(bundle_model(models_dir, "pose_detection.tflite"), threads)
        self.detector.expect_input((1, self.DETECT_SIZE, self.DETECT_SIZE, 3))
        self.landmarker = TfliteModel(bundle_model(models_dir, "pose_landmark_full.tflite"), threads)
        self.landmarker.expect_input((1, self.LANDMARK_SIZE, self.LANDMARK_SIZE, 3))
        self.anchors = ssd_anchors(self.DETECT_SIZE, (8, 16, 32), (2, 2, 6))
        self.min_detection = min_detection
        self.min_presence = min_presence
        self.max_people = max_people
        self.model_id = "blazepose-full"

    def people(self, image_bgr: np.ndarray, tiles: bool = True) -> list[Person]:
        """Bodies in the frame, best first; tiles are searched only when the whole frame shows nobody (and
        tiles is true: the caller may know no body can be that small)."""
        people = self._people_in(image_bgr, 0, 0)
        if not people and tiles:
            height, width = image_bgr.shape[:2]
            side = int(min(height, width) * TILE_SHARE)
            for x, y in tile_origins(height, width, side):
                people += self._people_in(image_bgr[y:y + side, x:x + side], x, y)
            people = _one_per_body(people)
        return people[: self.max_people]

    def _people_in(self, image_bgr: np.ndarray, dx: int, dy: int) -> list[Person]:
        """Bodies in image_bgr (a tile at dx, dy of the frame), in frame pixels."""
        people = []
        found = ssd_detect(self.detector, image_bgr, self.DETECT_SIZE, self.anchors, 4, self.min_detection, 0.3)
        for _, score, pts in found[: self.max_people]:
            (x0, y0), (x1, y1) = pts[0] + (dx, dy), pts[1] + (dx, dy)  # hip centre, a point on the body circle
            rotation = math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0)
            rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
            side = 2.0 * math.hypot(x1 - x0, y1 - y0) * 1.25
            people.append(Person(float(score), (float(x0), float(y0)), side, rotation))
        return people

    def _crop_matrix(self, person: Person) -> np.ndarray:
        """2x3 affine from crop pixels to image pixels."""
        s = person.size / self.LANDMARK_SIZE
        c, n = math.cos(person.rotation), math.sin(person.rotation)
        half = person.size / 2
        tx = person.center[0] - (c * half - n * half)
        ty = person.center[1] - (n * half + c * half)
        return np.array([[c * s, -n * s, tx], [n * s, c * s, ty]], dtype=np.float64)

    def landmarks(self, image_bgr: np.ndarray, person: Person) -> Pose | None:
        to_image = self._crop_matrix(person)
        to_crop = cv2.invertAffineTransform(to_image)
        size = self.LANDMARK_SIZE
        crop = cv2.warpAffine(image_bgr, to_crop, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        tensor = (cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)[None]
        outputs = self.landmarker.run(tensor)
        raw = next(o for o in outputs if o.shape == (1, 195))[0].reshape(39, 5)[:33]
        flag = float(next(o for o in outputs if o.shape == (1, 1))[0, 0])
        presence = flag if 0.0 <= flag <= 1.0 else float(_sigmoid(np.array(flag)))
        if presence < self.min_presence:
            return None
        points = np.hstack([raw[:, :2], np.ones((33, 1))]) @ to_image.T
        visibility = _sigmoid(raw[:, 3])
        return Pose(points.astype(np.float32), visibility.astype(np.float32), presence, person)

    def poses(self, image_bgr: np.ndarray, tiles: bool = True) -> list[Pose]:
        found = []
        for person in self.people(image_bgr, tiles):
            pose = self.landmarks(image_bgr, person)
            if pose is not None:
                found.append(pose)
        return found
