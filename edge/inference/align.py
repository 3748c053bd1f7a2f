"""Aligns a detected face to FaceNet's input: eyes level and at fixed places (normalising is the embedder's)."""

from __future__ import annotations

import cv2
import numpy as np

from edge.inference.detector import LEFT_EYE, MOUTH, RIGHT_EYE, FaceBox

# Where the eyes and mouth land in a face-only square of side 1 (FaceNet was trained on loose MTCNN
# crops, so the margin setting widens this square by a fraction on each side).
_TEMPLATE = np.array([[0.30, 0.36], [0.70, 0.36], [0.50, 0.80]], dtype=np.float32)


def alignment_matrix(face: FaceBox, size: int, margin: float) -> np.ndarray:
    """2x3 similarity transform taking the eyes and mouth of face onto the template in a size x size crop."""
    source = np.stack([face.keypoints[RIGHT_EYE], face.keypoints[LEFT_EYE], face.keypoints[MOUTH]]).astype(np.float32)
    inner = size / (1.0 + 2.0 * margin)
    target = _TEMPLATE * inner + (size - inner) / 2.0
    matrix, _ = cv2.estimateAffinePartial2D(source, target, method=cv2.LMEDS)
    if matrix is None:  # degenerate keypoints: fall back to a box crop
        x, y, w, h = face.box
        side = max(w, h) * (1.0 + 2.0 * margin)
        scale = size / max(side, 1.0)
        cx, cy = x + w / 2, y + h / 2
        matrix = np.array([[scale, 0, size / 2 - cx * scale], [0, scale, size / 2 - cy * scale]], dtype=np.float64)
    return matrix


def align_face(image_bgr: np.ndarray, face: FaceBox, size: int, margin: float) -> np.ndarray:
    """The aligned RGB crop, uint8 size x size x 3."""
    matrix = alignment_matrix(face, size, margin)
    crop = cv2.warpAffine(image_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)

