"""Enrolment at the door: the person stands in front of the door's own camera and the door picks the frames.

Photos brought from elsewhere (a phone, an ID card) show another camera, another light, another angle; the door's
camera is what later visits will look like. A session watches frames and keeps a handful, one per head pose
(frontal first, then a little to each side, chin a little up and down) while any is missing, each passing the
enrolment photo checks (edge/recognition/enroll.py: one face, large, sharp, frontal enough) and none a near
duplicate of one already kept. The kept frames live only in memory and go through the same enrolment as photos;
only templates are stored. The CLI (`facecheck enroll --camera`) and the MQTT `enroll` command's camera form both
drive a session with the frames they have.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from edge.inference.quality import FaceQuality, head_turn
from edge.recognition.enroll import photo_problem

POSES = ("frontal", "left", "right", "up", "down")
# Head turn (edge/inference/quality.py: head_turn) that counts as a pose: yaw in eye distances of the nose tip off
# the eyes' midpoint; pitch as the change, against the person's own frontal frame, of where the nose lies between
# the eyes and the mouth.
FRONTAL_YAW, TURNED_YAW, MAX_YAW = 0.08, 0.13, 0.45
FRONTAL_PITCH, TILTED_PITCH = 0.04, 0.06
NEAR_DUPLICATE = 0.2  # embedding distance below which a frame shows nothing a kept one does not
MAX_FRAMES = 20  # frames one enrolment keeps at most (the CLI's --frames, the command's camera.frames)
GUIDANCE = {"frontal": "look straight at the camera", "left": "turn your head a little to your left",
            "right": "turn your head a little to your right", "up": "lift your chin a little",
            "down": "lower your chin a little"}


def pose_of(yaw: float, pitch_change: float | None) -> str | None:
    """The pose a head turn shows, None between poses or beyond them (pitch_change None: no frontal frame yet)."""
    if abs(yaw) > MAX_YAW:
        return None
    if abs(yaw) <= FRONTAL_YAW and (pitch_change is None or abs(pitch_change) <= FRONTAL_PITCH):
        return "frontal"
    if pitch_change is not None and abs(yaw) <= FRONTAL_YAW and abs(pitch_change) >= TILTED_PITCH:
        return "down" if pitch_change > 0 else "up"
    if abs(yaw) >= TURNED_YAW and (pitch_change is None or abs(pitch_change) <= TILTED_PITCH):
        return "left" if yaw > 0 else "right"
    return None


@dataclass
class Kept:
    pose: str
    image: np.ndarray  # in memory only, until the enrolment has its templates
    embedding: np.ndarray
    quality: FaceQuality


@dataclass
class CameraEnrolment:
    """Which frames to enrol one person from. `offer` each frame's one face; `done` when `frames` are kept."""

    frames: int = len(POSES)
    kept: list[Kept] = field(default_factory=list)
    _frontal_pitch: float | None = None

    @property
    def done(self) -> bool:
        return len(self.kept) >= self.frames

    def missing(self) -> list[str]:
        return [pose for pose in POSES if pose not in {k.pose for k in self.kept}]

    def guidance(self) -> str:
        missing = self.missing()
        return GUIDANCE[missing[0]] if missing and not self.done else "hold still"

    def offer(self, image: np.ndarray, faces: list, quality: FaceQuality | None, embedding: np.ndarray | None) -> str:
        """Consider one frame (faces: the detector's boxes; quality and embedding: of the one face, None with
        none). Returns what happened, for the progress line."""
        if self.done:
            return "done"
        if len(faces) != 1 or quality is None or embedding is None:
            return "no face" if not faces else f"{len(faces)} faces: only the person enrolling may be in view"
        problem = photo_problem(quality)
        if problem is not None:
            return problem
        yaw, pitch = head_turn(faces[0].keypoints)
        pose = pose_of(yaw, None if self._frontal_pitch is None else pitch - self._frontal_pitch)
        if pose is None:
            return f"between poses ({self.guidance()})"
        if self._frontal_pitch is None and pose != "frontal":
            return "look straight at the camera first"
        missing = self.missing()
        if pose not in missing and missing and len(self.kept) + len(missing) >= self.frames:
            return f"{pose} already kept ({self.guidance()})"
        if any(float(np.linalg.norm(k.embedding - embedding)) < NEAR_DUPLICATE for k in self.kept):
            return f"too like a frame already kept ({self.guidance()})"
        if pose == "frontal" and self._frontal_pitch is None:
            self._frontal_pitch = pitch
        self.kept.append(Kept(pose, image.copy(), embedding, quality))
        return f"kept {pose}"

    def images(self) -> list[tuple[str, Callable[[], np.ndarray]]]:
        """The kept frames as enrolment's (label, load) pairs."""
        return [(f"camera frame {i + 1} ({k.pose})", partial(_held, k.image)) for i, k in enumerate(self.kept)]

    def summary(self) -> dict:
        return {"frames": [{"pose": k.pose, "quality": k.quality.as_dict()} for k in self.kept],
                "missing_poses": self.missing()}


class SharedSession:
    """A session the daemon's frame loop feeds while a job waits for it (the MQTT enroll command's camera form): the
    loop offers each frame's faces as the pipeline found them; the job takes the kept frames when the session is done
    or its time is up, and from then on the loop's offers are ignored."""

    def __init__(self, frames: int):
        self.session = CameraEnrolment(frames)
        self.said = "waiting for frames"
        self._lock = threading.Lock()
        self._over = threading.Event()

    @property
    def over(self) -> bool:
        return self._over.is_set()

    def offer(self, image: np.ndarray, faces: list) -> None:
        """faces: the frame's FaceResults (edge/recognition/pipeline.py)."""
        with self._lock:
            if self._over.is_set():
                return
            one = faces[0] if len(faces) == 1 else None
            self.said = self.session.offer(image, [f.face for f in faces], one.quality if one else None,
                                           one.embedding if one else None)
            if self.session.done:
                self._over.set()

    def close(self) -> None:
        """No more frames will come (the door is stopping): a waiting job goes on with what was kept."""
        self._over.set()

    def wait(self, timeout_s: float) -> CameraEnrolment:
        """The session once done, or as it stands after timeout_s; the loop's later offers are ignored."""
        self._over.wait(timeout_s)
        with self._lock:
            self._over.set()
            return self.session


def _held(image: np.ndarray) -> np.ndarray:
    return image
