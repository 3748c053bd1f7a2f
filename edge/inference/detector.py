"""Face detection with MediaPipe's BlazeFace models, run directly by the TFLite interpreter.

Running the shipped .tflite ourselves (instead of mediapipe's graph runtime) gives one interpreter
API for every model, a thread count from the config, and the six keypoints alignment needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge.inference.tflite import DEFAULT_MODELS_DIR, TfliteModel, bundle_model

# Keypoint order of BlazeFace: the subject's right eye, left eye, nose tip, mouth, right ear, left ear.
RIGHT_EYE, LEFT_EYE, NOSE, MOUTH = 0, 1, 2, 3


@dataclass(frozen=True)
class FaceBox:
    box: tuple[int, int, int, int]  # x, y, w, h in image pixels
    score: float
    keypoints: np.ndarray  # 6x2 float pixels

    def contains(self, point: tuple[float, float]) -> bool:
        x, y, w, h = self.box
        return x <= point[0] <= x + w and y <= point[1] <= y + h

    def moved(self, dx: int, dy: int) -> FaceBox:
        """The same face in an image whose origin lies at (dx, dy) of this one's."""
        x, y, w, h = self.box
        return FaceBox((x - dx, y - dy, w, h), self.score, self.keypoints - np.array([dx, dy], self.keypoints.dtype))


class FaceDetector(Protocol):
    def detect(self, image_bgr: np.ndarray, tiles: bool | None = None) -> list[FaceBox]: ...


@dataclass(frozen=True)
class _Spec:
    file: str
    size: int
    strides: tuple[int, ...]
    anchors_per_stride: tuple[int, ...]


_SPECS = {
    "short_range": _Spec("face_detection_short_range.tflite", 128, (8, 16), (2, 6)),
    "full_range": _Spec("face_detection_full_range_sparse.tflite", 192, (4,), (1,)),
}


def ssd_anchors(size: int, strides: tuple[int, ...], per_cell: tuple[int, ...]) -> np.ndarray:
    """Anchor centres (N x 2, normalised) in the order MediaPipe's SsdAnchorsCalculator makes them."""
    centres = []
    for stride, count in zip(strides, per_cell):
        cells = int(np.ceil(size / stride))
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(grid, count, axis=0))
    return np.concatenate(centres).astype(np.float32)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, int, int]:
    """Resize keeping aspect ratio into a size x size square; returns image, scale, pad x, pad y."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    pad_x, pad_y = (size - nw) // 2, (size - nh) // 2
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[pad_y:pad_y + nh, pad_x:pad_x + nw] = resized
    return canvas, scale, pad_x, pad_y


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou: float):
    """MediaPipe's weighted non-max suppression: overlapping detections are averaged by score."""
    order = np.argsort(-scores)
    kept = []
    while order.size:
        top = order[0]
        x1 = np.maximum(boxes[top, 0], boxes[order, 0])
        y1 = np.maximum(boxes[top, 1], boxes[order, 1])
        x2 = np.minimum(boxes[top, 2], boxes[order, 2])
        y2 = np.minimum(boxes[top, 3], boxes[order, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = (boxes[order, 2] - boxes[order, 0]) * (boxes[order, 3] - boxes[order, 1])
        area_top = area[0]
        overlap = inter / np.maximum(area_top + area - inter, 1e-9)
        group = order[overlap >= iou]
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(0) / weights.sum()
        kps = (keypoints[group] * weights[:, :, None]).sum(0) / weights.sum()
        kept.append((box, float(scores[top]), kps))
        order = order[overlap < iou]
    return kept


def ssd_detect(model: TfliteModel, image_bgr: np.ndarray, size: int, anchors: np.ndarray, keypoints: int,
               min_score: float, iou: float) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Run a MediaPipe SSD detector (BlazeFace, BlazePose) on a letterboxed image and decode it.

    Returns (box x1 y1 x2 y2, score, keypoints K x 2) per detection, in image pixels, best first.
    """
    boxed, scale, pad_x, pad_y = letterbox(image_bgr, size)
    tensor = (cv2.cvtColor(boxed, cv2.COLOR_BGR2RGB).astype(np.float32) / 127.5 - 1.0)[None]
    outputs = model.run(tensor)
    coords = 4 + 2 * keypoints
    regressors = next(o for o in outputs if o.shape[-1] == coords)[0]
    logits = next(o for o in outputs if o.shape[-1] == 1)[0, :, 0]
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
    hits = np.nonzero(scores >= min_score)[0]
    if hits.size == 0:
        return []
    reg = regressors[hits] / size
    centres = anchors[hits]
    cx, cy = reg[:, 0] + centres[:, 0], reg[:, 1] + centres[:, 1]
    w, h = reg[:, 2], reg[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kps = reg[:, 4:coords].reshape(-1, keypoints, 2) + centres[:, None, :]
    return [((box * size - [pad_x, pad_y, pad_x, pad_y]) / scale, score, (points * size - [pad_x, pad_y]) / scale)
            for box, score, points in weighted_nms(boxes, scores[hits], kps, iou)]


# Zoomed-in tiles show the model more face-like clutter (a microphone, a badge scored 0.60-0.65 on the
# sample photos) while real faces of 40-56 px scored 0.77-0.96: tiles keep only confident detections.
TILE_MIN_CONFIDENCE = 0.75


def tile_origins(height: int, width: int, side: int) -> list[tuple[int, int]]:
    """Top-left corners of side x side tiles that cover the image with half a tile of overlap."""
    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        step = side // 2
        points = list(range(0, length - side, step))
        return points + [length - side]

    return [(x, y) for y in starts(height) for x in starts(width)]


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x, y, w, h) boxes: how the detector merges and the tracker follows."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w = min(ax2, bx2) - max(a[0], b[0])
    h = min(ay2, by2) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def merge_faces(faces: list[FaceBox], iou_limit: float) -> list[FaceBox]:
    """One face per place: of boxes overlapping more than iou_limit, the most confident stays."""
    kept: list[FaceBox] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(box_iou(face.box, other.box) < iou_limit for other in kept):
            kept.append(face)
    return kept


def _cut_by(box: tuple[int, int, int, int], tile: tuple[int, int, int, int], img_w: int, img_h: int) -> bool:
    """Whether a face found in a tile touches one of the tile's inner edges (then another tile, or the
    whole frame, sees it whole)."""
    x, y, w, h = box
    tx, ty, tw, th = tile
    return ((x <= tx + 1 and tx > 0) or (y <= ty + 1 and ty > 0)
            or (x + w >= tx + tw - 1 and tx + tw < img_w) or (y + h >= ty + th - 1 and ty + th < img_h))


class BlazeFaceDetector:
    """BlazeFace on the whole frame, plus (tiles=True) on overlapping tiles small enough that a face of
    min_face_px fills about 1/8 of the model's input: the short-range model alone needs faces of about
    a fifth of the frame's width, far more than a door camera sees at 640x480 or 1280x720."""

    def __init__(self, model: str = "short_range", min_confidence: float = 0.6, min_face_px: int = 40,
                 threads: int = 0, iou: float = 0.3, tiles: bool = False, models_dir: Path = DEFAULT_MODELS_DIR):
        spec = _SPECS[model]
        self.tiles = tiles
        self.spec = spec
        self.model = TfliteModel(bundle_model(models_dir, spec.file), threads)
        self.model.expect_input((1, spec.size, spec.size, 3))
        self.anchors = ssd_anchors(spec.size, spec.strides, spec.anchors_per_stride)
        self.min_confidence = min_confidence
        self.min_face_px = min_face_px
        self.iou = iou
        self.model_id = f"blazeface-{model}"

    def detect(self, image_bgr: np.ndarray, tiles: bool | None = None) -> list[FaceBox]:
        """tiles: also search overlapping tiles (None: as configured)."""
        faces = self._detect(image_bgr, 0, 0, image_bgr.shape[1], image_bgr.shape[0])
        if not (self.tiles if tiles is None else tiles):
            return faces
        img_h, img_w = image_bgr.shape[:2]
        side = min(img_h, img_w, 8 * self.min_face_px)
        if side >= min(img_h, img_w) and max(img_h, img_w) <= 1.5 * side:
            return faces  # one tile would be the whole frame again
        for x, y in tile_origins(img_h, img_w, side):
            tile = (x, y, min(side, img_w - x), min(side, img_h - y))
            faces += [f for f in self._detect(image_bgr[y:y + side, x:x + side], x, y, img_w, img_h)
                      if f.score >= TILE_MIN_CONFIDENCE and not _cut_by(f.box, tile, img_w, img_h)]
        return merge_faces(faces, self.iou)

    def _detect(self, image_bgr: np.ndarray, dx: int, dy: int, img_w: int, img_h: int) -> list[FaceBox]:
        """Faces in image_bgr (a tile at dx, dy of the frame), in frame pixels."""
        faces = []
        for px, score, points in ssd_detect(self.model, image_bgr, self.spec.size, self.anchors, 6,
                                            self.min_confidence, self.iou):
            x1, y1 = max(0.0, px[0] + dx), max(0.0, px[1] + dy)
            x2, y2 = min(float(img_w), px[2] + dx), min(float(img_h), px[3] + dy)
            if min(x2 - x1, y2 - y1) < self.min_face_px:
                continue
            faces.append(FaceBox((int(x1), int(y1), int(x2 - x1), int(y2 - y1)), score,
                                 (points + [dx, dy]).astype(np.float32)))
        return faces
