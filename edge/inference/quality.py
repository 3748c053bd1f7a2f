"""How much one face crop can be trusted: size, sharpness and how frontal it is.

A track's identity is fused from its frames weighted by this (edge/recognition/pipeline.py), and enrolment refuses
photos that fall below the limits (edge/recognition/enroll.py), because one blurred, tiny or half-turned frame is
the least reliable thing in the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.inference.detector import FaceBox

# BlazeFace keypoint order: right eye, left eye, nose tip, mouth, right ear, left ear.
RIGHT_EYE, LEFT_EYE, NOSE, MOUTH = 0, 1, 2, 3
GOOD_SIZE_PX = 112.0  # a face this large (shorter box side) counts as fully sized
GOOD_SHARPNESS = 60.0  # variance of the Laplacian of the aligned grey crop at which a face counts as sharp


@dataclass(frozen=True)
class FaceQuality:
    size_px: float  # the face box's shorter side
    sharpness: float  # variance of the Laplacian over the aligned crop (higher is sharper)
    frontal: float  # 1 looking at the camera, 0 in profile (nose tip against the eyes' midpoint)

    @property
    def weight(self) -> float:
        """In (0, 1]: how much this frame counts towards its track's identity."""
        size = min(1.0, self.size_px / GOOD_SIZE_PX)
        sharp = min(1.0, self.sharpness / GOOD_SHARPNESS)
        return max(1e-3, size * sharp * self.frontal)

    def as_dict(self) -> dict:
        return {"size_px": round(self.size_px, 1), "sharpness": round(self.sharpness, 1),
                "frontal": round(self.frontal, 3), "weight": round(self.weight, 3)}


def frontalness(keypoints: np.ndarray) -> float:
    """1 facing the camera, 0.5 with the nose tip over one eye (a three-quarter view), 0 when it lies a
    whole eye distance off the eyes' midpoint along their axis (a profile)."""
    right, left, nose = keypoints[RIGHT_EYE], keypoints[LEFT_EYE], keypoints[NOSE]
    half = float(np.linalg.norm(left - right)) / 2.0
    if half < 1e-6:
        return 0.0
    axis = (left - right) / (2.0 * half)
    offset = abs(float(np.dot(nose - (left + right) / 2.0, axis)))
    return float(np.clip(1.0 - offset / (2.0 * half), 0.0, 1.0))


def head_turn(keypoints: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) of a head from BlazeFace's keypoints. yaw: the nose tip's offset from the eyes' midpoint along
    the eye axis, in eye distances, positive when the person turns to their own left (their left eye is on the
    image's right). pitch: where the nose tip lies between the eyes' line (0) and the mouth (1); it grows as the
    chin goes down. Compare pitch with the same person's frontal value: faces differ."""
    right, left, nose, mouth = (keypoints[i].astype(np.float64) for i in (RIGHT_EYE, LEFT_EYE, NOSE, MOUTH))
    span = float(np.linalg.norm(left - right))
    if span < 1e-6:
        return 0.0, 0.0
    axis = (left - right) / span
    down = np.array([-axis[1], axis[0]])  # the eye axis turned a quarter clockwise: down the face
    middle = (left + right) / 2.0
    mouth_depth = float(np.dot(mouth - middle, down))
    pitch = float(np.dot(nose - middle, down)) / mouth_depth if abs(mouth_depth) > 1e-6 else 0.0
    return float(np.dot(nose - middle, axis)) / span, pitch


def sharpness(aligned_rgb: np.ndarray) -> float:
    grey = cv2.cvtColor(aligned_rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def face_quality(face: FaceBox, aligned_rgb: np.ndarray) -> FaceQuality:
    return FaceQuality(float(min(face.box[2], face.box[3])), sharpness(aligned_rgb), frontalness(face.keypoints))
