"""Aligns a detected face to FaceNet's input: eyes level and at fixed places (normalising is the embedder's)."""

from __future__ import annotations

import cv2
import numpy as np

from edge.inference.detector import LEFT_EYE, MOUTH, RIGHT_EYE, FaceBox

# Where the eyes and mouth land in a face-only square of side 1 (FaceNet was trained on loose MTCNN
# crops, so the margin setting widens this square by a fraction on each side).
_TEMPLATE = np.array([[0.30, 0.36], [0.70, 0.36], [0.50, 0.80]], dtype=np.float32)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """The least-squares rotation + uniform scale + shift taking source points onto target (Umeyama).

    Every point counts, so the result moves smoothly with the keypoints. (A robust estimator such as
    cv2.estimateAffinePartial2D(LMEDS) fits two of the three points and jumps between pairs: a 0.0001 px
    change of one keypoint moved a FaceNet embedding by up to 0.19, and x86 and ARM disagreed.)
    """
    src, dst = source.astype(np.float64), target.astype(np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    variance = float((src_c ** 2).sum() / len(src))
    if variance < 1e-9:
        return None
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(singular) @ sign)) / variance
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]])


def alignment_matrix(face: FaceBox, size: int, margin: float) -> np.ndarray:
    """2x3 similarity transform taking the eyes and mouth of face onto the template in a size x size crop."""
    source = np.stack([face.keypoints[RIGHT_EYE], face.keypoints[LEFT_EYE], face.keypoints[MOUTH]]).astype(np.float32)
    inner = size / (1.0 + 2.0 * margin)
    target = _TEMPLATE * inner + (size - inner) / 2.0
    matrix = similarity_transform(source, target)
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

