"""Is the face moving as a plane? The measurement behind bench.liveness_motion; the door does not use it (the
FaceMesh landmarks it rests on do not move as a plane even when the face does: docs/liveness.md).

A printed photo or a screen held up to the camera is flat: however it is turned, one homography carries its face
landmarks in one frame onto those in another. A head is not flat: when it turns, the nose moves against the
cheeks and no homography fits, and its expression changes too.

Both fits are measured in units of the face's size (the RMS distance of its landmarks from their centroid):
`similarity` is what is left after the best rotation, scale and shift (how much the face changed shape between
the frames at all); `homography` what is left after the best homography. A pair of frames says something only
when the face changed shape (a face that merely slid across the view fits both, flat or not); then a plane
leaves nearly nothing after the homography (`ratio` near the landmarks' own noise), a head leaves a good part.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.inference.align import similarity_transform


@dataclass(frozen=True)
class PairFit:
    similarity: float  # RMS residual after the best similarity, in face sizes
    homography: float  # RMS residual after the best homography, in face sizes

    @property
    def ratio(self) -> float:
        """How much of the change of shape a homography leaves unexplained (0: all of it is planar)."""
        return self.homography / self.similarity if self.similarity > 0 else 1.0


def face_size(points: np.ndarray) -> float:
    return float(np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean()))


def similarity_residual(a: np.ndarray, b: np.ndarray) -> float:
    """RMS distance left after the least-squares similarity taking a onto b (the alignment's own fit), in pixels."""
    matrix = similarity_transform(a, b)
    if matrix is None:
        return 0.0
    mapped = a.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return float(np.sqrt(np.mean(np.sum((mapped - b) ** 2, axis=1))))


def homography_residual(a: np.ndarray, b: np.ndarray) -> float:
    """RMS distance left after the least-squares homography taking a onto b, in pixels."""
    matrix, _ = cv2.findHomography(a.astype(np.float64), b.astype(np.float64), 0)
    if matrix is None:
        return similarity_residual(a, b)
    mapped = cv2.perspectiveTransform(a.astype(np.float64)[None], matrix)[0]
    return float(np.sqrt(np.mean(np.sum((mapped - b) ** 2, axis=1))))


def fit_pair(a: np.ndarray, b: np.ndarray) -> PairFit:
    """How the face's landmarks in frame a map onto those in frame b, in units of the face's size in b."""
    size = face_size(b)
    if size <= 0:
        return PairFit(0.0, 0.0)
    return PairFit(similarity_residual(a, b) / size, homography_residual(a, b) / size)
