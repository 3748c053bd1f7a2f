"""Aligns a detected face to an embedder's input: eyes level and at fixed places (normalising is the embedder's).

Two alignment contracts, named in the model's sidecar (`alignment`):

- `facenet-3point`: FaceNet's loose crop, BlazeFace's eyes and mouth centre onto `_TEMPLATE`, widened by the
  model's `align_margin` on each side;
- `arcface-5point`: the standard 112x112 ArcFace template of eye centres, nose tip and mouth corners, which
  ArcFace-trained networks such as MobileFaceNet were trained on. The five points come from FaceMesh's
  landmarks where the caller has them (a face large enough to mark); otherwise BlazeFace's four keypoints
  stand in, its mouth centre taken onto the middle of the template's mouth corners (a coarser fit: docs/accuracy.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.inference.detector import LEFT_EYE, MOUTH, NOSE, RIGHT_EYE, FaceBox

# Where the eyes and mouth land in a face-only square of side 1 (FaceNet was trained on loose MTCNN
# crops, so the margin setting widens this square by a fraction on each side).
_TEMPLATE = np.array([[0.30, 0.36], [0.70, 0.36], [0.50, 0.80]], dtype=np.float32)
ALIGNMENTS = ("facenet-3point", "arcface-5point")
# The ArcFace template in a 112x112 crop: the image-left eye (the person's right), the other eye, the nose tip,
# the image-left and image-right mouth corners.
ARCFACE_SIZE = 112
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                             [70.7299, 92.2041]], dtype=np.float32)
# FaceMesh indices for those five points: each eye's two corners (their midpoint is the eye centre), the nose
# tip, the two mouth corners.
MESH_EYES = ((33, 133), (362, 263))
MESH_NOSE_TIP, MESH_MOUTH_CORNERS = 1, (61, 291)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """The ArcFace template's five points out of FaceMesh's 468 landmarks (image pixels)."""
    eyes = [landmarks[list(pair)].mean(axis=0) for pair in MESH_EYES]
    return np.stack([*eyes, landmarks[MESH_NOSE_TIP], *landmarks[list(MESH_MOUTH_CORNERS)]]).astype(np.float32)


def _arcface_matrix(face: FaceBox, size: int, landmarks: np.ndarray | None) -> np.ndarray | None:
    template = ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)
    if landmarks is not None:
        return similarity_transform(five_points(landmarks), template)
    keypoints = face.keypoints[[RIGHT_EYE, LEFT_EYE, NOSE, MOUTH]].astype(np.float32)
    target = np.vstack([template[:3], template[3:].mean(axis=0)])
    return similarity_transform(keypoints, target)


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


def alignment_matrix(face: FaceBox, size: int, margin: float, alignment: str = "facenet-3point",
                     landmarks: np.ndarray | None = None) -> np.ndarray:
    """2x3 similarity transform taking the face's points onto the alignment's template in a size x size crop."""
    if alignment == "arcface-5point":
        matrix = _arcface_matrix(face, size, landmarks)
    elif alignment == "facenet-3point":
        source = np.stack([face.keypoints[RIGHT_EYE], face.keypoints[LEFT_EYE], face.keypoints[MOUTH]]).astype(np.float32)
        inner = size / (1.0 + 2.0 * margin)
        target = _TEMPLATE * inner + (size - inner) / 2.0
        matrix = similarity_transform(source, target)
    else:
        raise ValueError(f"alignment {alignment!r}: one of {', '.join(ALIGNMENTS)}")
    if matrix is None:  # degenerate keypoints: fall back to a box crop
        x, y, w, h = face.box
        side = max(w, h) * (1.0 + 2.0 * margin)
        scale = size / max(side, 1.0)
        cx, cy = x + w / 2, y + h / 2
        matrix = np.array([[scale, 0, size / 2 - cx * scale], [0, scale, size / 2 - cy * scale]], dtype=np.float64)
    return matrix


def align_face(image_bgr: np.ndarray, face: FaceBox, size: int, margin: float, alignment: str = "facenet-3point",
               landmarks: np.ndarray | None = None) -> np.ndarray:
    """The aligned RGB crop, uint8 size x size x 3 (landmarks: FaceMesh's, for arcface-5point)."""
    matrix = alignment_matrix(face, size, margin, alignment, landmarks)
    crop = cv2.warpAffine(image_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)

