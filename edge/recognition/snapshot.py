"""An annotated picture of what the camera sees, for aiming it at the door."""

from __future__ import annotations

import cv2
import numpy as np

from edge.recognition.pipeline import FrameResult


def annotate(image: np.ndarray, result: FrameResult | None, poses: list | None = None,
             min_visibility: float = 0.5) -> np.ndarray:
    """Face boxes (green known, red unknown) with name, score and distance; pose skeletons in yellow."""
    from edge.inference.pose import SKELETON

    canvas = image.copy()
    for pose in poses or []:
        for a, b in SKELETON:
            if pose.visible(a, min_visibility) and pose.visible(b, min_visibility):
                pa, pb = pose.landmarks[a], pose.landmarks[b]
                cv2.line(canvas, (int(pa[0]), int(pa[1])), (int(pb[0]), int(pb[1])), (0, 220, 255), 2, cv2.LINE_AA)
    for face in (result.faces if result else []):
        x, y, w, h = face.face.box
        colour = (60, 200, 60) if face.match.known else (40, 40, 230)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, 2)
        for px, py in face.face.keypoints[:4]:
            cv2.circle(canvas, (int(px), int(py)), 2, colour, -1)
        label = f"{face.match.name or 'unknown'} {face.match.score:.2f} d={face.match.distance:.2f}"
        cv2.putText(canvas, label, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return canvas


def snapshot_jpeg(image: np.ndarray, result: FrameResult | None, poses: list | None = None,
                  min_visibility: float = 0.5, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", annotate(image, result, poses, min_visibility), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()
