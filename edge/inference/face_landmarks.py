"""FaceMesh: 468 landmarks of one face, from the face_landmark model in the pinned mediapipe wheel (the bundle
copies it out at build time, like BlazeFace; the runtime never imports mediapipe).

The model wants the face as mediapipe's own graph cuts it: a square 1.5 times the detector's box about its centre,
turned so the eyes lie level (BlazeFace's two eye keypoints), resized to 192x192, RGB scaled to [0, 1]. It
returns x, y (pixels of that crop) and a relative depth for each point, and a logit saying whether a face is in
the crop at all. The points are mapped back into the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.inference.detector import FaceBox
from edge.inference.tflite import TfliteModel, bundle_model

MODEL_FILE = "face_landmark.tflite"
INPUT_SIZE = 192
ROI_SCALE = 1.5
MIN_PRESENCE = 0.5  # below this FaceMesh says the crop holds no face
POINTS = 468


@dataclass(frozen=True)
class FaceLandmarks:
    points: np.ndarray  # (468, 2) float32 image pixels
    presence: float  # probability that the crop held a face
    face_px: int


def _roi_transform(face: FaceBox) -> np.ndarray:
    """The 2x3 affine map from image pixels to the model's 192x192 crop (mediapipe's rotated square ROI)."""
    x, y, w, h = face.box
    cx, cy = x + w / 2.0, y + h / 2.0
    right_eye, left_eye = face.keypoints[0], face.keypoints[1]
    angle = math.atan2(float(left_eye[1] - right_eye[1]), float(left_eye[0] - right_eye[0]))
    side = ROI_SCALE * max(w, h)
    scale = INPUT_SIZE / side
    cos, sin = math.cos(-angle) * scale, math.sin(-angle) * scale
    # rotate by -angle about the centre, scale, then move the centre to the crop's centre
    return np.array([[cos, -sin, INPUT_SIZE / 2 - (cos * cx - sin * cy)],
                     [sin, cos, INPUT_SIZE / 2 - (sin * cx + cos * cy)]], np.float64)


class FaceMesh:
    """The face landmark model from the bundle (sha256-checked against its sidecar)."""

    def __init__(self, models_dir: Path, threads: int = 1):
        self.model = TfliteModel(bundle_model(models_dir, MODEL_FILE), threads)
        self.model.expect_input((1, INPUT_SIZE, INPUT_SIZE, 3))

    def landmarks(self, image_bgr: np.ndarray, face: FaceBox) -> FaceLandmarks:
        transform = _roi_transform(face)
        patch = cv2.warpAffine(image_bgr, transform, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)
        tensor = cv2.cvtColor(patch, cv2.COLOR_BGR2RGB).astype(np.float32)[None] / 255.0
        outputs = self.model.run(tensor)
        points = outputs[0].reshape(POINTS, 3)[:, :2].astype(np.float64)
        inverse = cv2.invertAffineTransform(transform)
        in_image = points @ inverse[:, :2].T + inverse[:, 2]
        presence = 1.0 / (1.0 + math.exp(-float(outputs[1].reshape(-1)[0])))
        return FaceLandmarks(in_image.astype(np.float32), presence, int(max(face.box[2:])))

    def points_if_face(self, image_bgr: np.ndarray, face: FaceBox) -> np.ndarray | None:
        """The 468 points where FaceMesh sees a face in the crop (presence >= MIN_PRESENCE), else None: what a
        five-point alignment takes (None: the caller falls back to BlazeFace's keypoints)."""
        marks = self.landmarks(image_bgr, face)
        return marks.points if marks.presence >= MIN_PRESENCE else None
