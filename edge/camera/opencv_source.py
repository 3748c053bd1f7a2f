"""Frame sources read through cv2.VideoCapture: V4L2/USB, network URLs, GStreamer and video files."""

from __future__ import annotations

import time

import cv2
import numpy as np

from edge.camera.base import SourceError, SourceUnavailable
from edge.config import FileCamera, GStreamerCamera, UrlCamera, V4L2Camera

OpenCvCamera = V4L2Camera | UrlCamera | GStreamerCamera | FileCamera


def capture_target(config: OpenCvCamera) -> tuple[int | str, int]:
    """What to hand cv2.VideoCapture, and which backend: pure so it can be checked without a device."""
    if isinstance(config, V4L2Camera):
        device = config.device
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        return device, cv2.CAP_V4L2
    if isinstance(config, UrlCamera):
        return config.url, cv2.CAP_FFMPEG
    if isinstance(config, GStreamerCamera):
        return config.pipeline, cv2.CAP_GSTREAMER
    return str(config.path), cv2.CAP_ANY


def has_gstreamer() -> bool:
    info = cv2.getBuildInformation()
    for line in info.splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


class OpenCvSource:
    def __init__(self, config: OpenCvCamera):
        self.config = config
        self.target, self.api = capture_target(config)
        self.name = f"{config.kind}:{self.target}"
        self.realtime = not isinstance(config, FileCamera) or config.realtime
        self._cap: cv2.VideoCapture | None = None
        self._next_due = 0.0
        self._file_fps = config.fps

    def open(self) -> None:
        if isinstance(self.config, GStreamerCamera) and not has_gstreamer():
            raise SourceError(
                "camera.kind gstreamer: this OpenCV build has no GStreamer support; on a Jetson use the "
                "JetPack python3-opencv (apt) in the venv (--system-site-packages), or use camera.kind v4l2"
            )
        if isinstance(self.config, FileCamera) and not self.config.path.is_file():
            raise SourceError(f"camera.path: video file {self.config.path} does not exist")
        cap = cv2.VideoCapture(self.target, self.api)
        if not cap.isOpened():
            cap.release()
            if isinstance(self.config, FileCamera):
                raise SourceError(f"camera.path: {self.config.path} is not a video OpenCV can decode")
            raise SourceUnavailable(f"cannot open {self.name}")
        if isinstance(self.config, V4L2Camera):
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
            cap.set(cv2.CAP_PROP_FPS, self.config.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if isinstance(self.config, FileCamera):
            fps = cap.get(cv2.CAP_PROP_FPS)
            self._file_fps = fps if fps and fps > 0 else self.config.fps
        self._cap = cap
        self._next_due = time.monotonic()

    def read(self) -> tuple[np.ndarray, float | None] | None:
        if self._cap is None:
            raise SourceUnavailable(f"{self.name} is not open")
        ok, image = self._cap.read()
        if isinstance(self.config, FileCamera):
            if not ok:
                if not self.config.loop:
                    return None
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = self._cap.read()
                if not ok:
                    return None
            if self.config.realtime:
                self._pace()
            return image, None
        if not ok or image is None:
            raise SourceUnavailable(f"{self.name} stopped delivering frames")
        return image, None

    def _pace(self) -> None:
        self._next_due += 1.0 / self._file_fps
        delay = self._next_due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self._next_due = time.monotonic()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
