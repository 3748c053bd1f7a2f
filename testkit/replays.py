"""Hand-held print and screen replays made from real photos, for measuring liveness (tests and bench.liveness).

No labelled video of attacks is at hand, so attacks are rendered: a real photo of a live face becomes the
picture on a sheet of paper or a phone's screen, held up in front of a real scene and moved by a hand, and is
seen by the door's camera. They are not real attacks and say so wherever they are reported; what they model:

- print: the photo on paper (lower contrast, ink that cannot reach the screen's saturation, a white margin,
  paper grain), lit by the room;
- screen: the photo on an RGB-stripe display (each pixel three coloured sub-pixels, which the camera's own
  sampling turns into moire), brighter and bluer, in a black bezel, with a glare patch from a lamp;
- the hand: the sheet or phone turns smoothly in depth (up to `max_tilt_degrees` about both axes), rolls a
  little, drifts and comes nearer, as a held object does over a second or two; a pinhole camera projects it;
- the camera: a little blur, sensor noise and JPEG.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

KINDS = ("print", "screen")


def _print_medium(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image = photo.astype(np.float32)
    grey = image.mean(axis=2, keepdims=True)
    image = grey + 0.75 * (image - grey)  # ink saturates less than the original
    image = 0.8 * image + 0.2 * 235.0 - 8.0  # paper white, ink black lifted: lower contrast
    image = cv2.GaussianBlur(image, (0, 0), 0.8)
    image += rng.normal(0.0, 3.0, image.shape[:2])[..., None]  # grain
    margin = max(4, int(0.05 * max(photo.shape[:2])))
    return cv2.copyMakeBorder(np.clip(image, 0, 255), margin, margin, margin, margin,
                              cv2.BORDER_CONSTANT, value=(235, 238, 240))


def _screen_medium(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image = np.clip(255.0 * (photo.astype(np.float32) / 255.0) ** 0.85 * 1.05, 0, 255)
    image[..., 0] = np.clip(image[..., 0] * 1.08, 0, 255)  # bluer white point (B,G,R)
    height, width = image.shape[:2]
    # each sub-pixel is lit brighter than the pixel's mean so the screen keeps the photo's brightness; the values
    # stay unclipped floats until the lens has blurred them (a real sub-pixel does not saturate the sensor alone)
    stripes = np.zeros((height, width * 3, 3), np.float32)
    for channel, column in ((2, 0), (1, 1), (0, 2)):  # R, G, B sub-pixel columns
        stripes[:, column::3, channel] = image[..., channel] * 3.5
    stripes = np.asarray(cv2.resize(stripes, (width * 3, height * 3), interpolation=cv2.INTER_NEAREST), np.float32)
    stripes[2::3] *= 0.55  # the dark row between pixel rows
    gy, gx = np.mgrid[0:stripes.shape[0], 0:stripes.shape[1]].astype(np.float32)
    cy, cx = rng.uniform(0.1, 0.6) * stripes.shape[0], rng.uniform(0.2, 0.8) * stripes.shape[1]
    radius = 0.35 * max(stripes.shape[:2])
    glare = 40.0 * np.exp(-(((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * radius ** 2)))
    bezel = max(6, int(0.06 * max(stripes.shape[:2])))
    return cv2.copyMakeBorder(stripes + glare[..., None], bezel, bezel, bezel, bezel, cv2.BORDER_CONSTANT,
                              value=(18, 18, 20))


def _pose_homography(medium_shape: tuple[int, int], centre: tuple[float, float], width_px: float,
                     tilt_x: float, tilt_y: float, roll: float) -> np.ndarray:
    """Homography from the medium's pixels to the camera's: the medium as a plane turned by tilt_x (about the
    horizontal axis), tilt_y (vertical) and roll, seen by a pinhole camera whose focal length is about one frame
    width, placed so its centre lands on `centre` and it spans about `width_px` pixels."""
    h, w = medium_shape
    focal = 900.0
    distance = focal * w / width_px
    corners = np.array([[-w / 2, -h / 2, 0], [w / 2, -h / 2, 0], [w / 2, h / 2, 0], [-w / 2, h / 2, 0]], np.float64)
    cx_, sx_ = math.cos(tilt_x), math.sin(tilt_x)
    cy_, sy_ = math.cos(tilt_y), math.sin(tilt_y)
    cz_, sz_ = math.cos(roll), math.sin(roll)
    rotation = (np.array([[1, 0, 0], [0, cx_, -sx_], [0, sx_, cx_]])
                @ np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
                @ np.array([[cz_, -sz_, 0], [sz_, cz_, 0], [0, 0, 1]]))
    placed = corners @ rotation.T + np.array([0, 0, distance])
    projected = focal * placed[:, :2] / placed[:, 2:3] + np.array(centre)
    source = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    return cv2.getPerspectiveTransform(source.astype(np.float32), projected.astype(np.float32))


def replay(photo: np.ndarray, scene: np.ndarray, kind: str, frames: int, rng: np.random.Generator,
           max_tilt_degrees: float = 20.0, width_fraction: float = 0.45) -> list[np.ndarray]:
    """`frames` camera frames (the scene's size) of `photo` shown as `kind` and moved by a hand."""
    if kind not in KINDS:
        raise ValueError(f"replay kind {kind!r}: one of {KINDS}")
    medium = _print_medium(photo, rng) if kind == "print" else _screen_medium(photo, rng)
    scene_h, scene_w = scene.shape[:2]
    phases = rng.uniform(0, 2 * math.pi, 5)
    speeds = rng.uniform(0.5, 1.5, 5)
    tilt = math.radians(max_tilt_degrees)
    # the lens blurs before the sensor samples: what is left of the sub-pixel pattern is the mild moire of a
    # real recapture, not an aliasing artefact of the warp
    optics = 0.35 * medium.shape[1] / (scene_w * width_fraction)
    out = []
    for index in range(frames):
        t = index / max(frames - 1, 1) * 2 * math.pi
        tilt_x = tilt * math.sin(speeds[0] * t + phases[0])
        tilt_y = tilt * math.sin(speeds[1] * t + phases[1])
        roll = math.radians(5) * math.sin(speeds[2] * t + phases[2])
        centre = (scene_w * (0.5 + 0.05 * math.sin(speeds[3] * t + phases[3])),
                  scene_h * (0.5 + 0.05 * math.sin(speeds[4] * t + phases[4])))
        width = scene_w * width_fraction * (1.0 + 0.08 * index / max(frames - 1, 1))
        matrix = _pose_homography((medium.shape[0], medium.shape[1]), centre, width, tilt_x, tilt_y, roll)
        warped = cv2.warpPerspective(cv2.GaussianBlur(medium, (0, 0), optics), matrix, (scene_w, scene_h))
        mask = cv2.warpPerspective(np.full(medium.shape[:2], 255, np.uint8), matrix, (scene_w, scene_h))
        frame = np.where(mask[..., None] > 127, warped, scene.astype(np.float32))
        frame = cv2.GaussianBlur(frame, (0, 0), 0.7)
        frame = np.clip(frame + rng.normal(0, 2.5, frame.shape), 0, 255).astype(np.uint8)
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
        out.append(cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else frame)
    return out
