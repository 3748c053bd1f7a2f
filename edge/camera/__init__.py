"""Frame sources and the capture thread that keeps only the newest frame."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from edge.camera.base import Frame, FrameSource, SourceError, SourceUnavailable
from edge.camera.capture import CaptureThread
from edge.config import CameraConfig, PiCamera, ReplayCamera


def open_source(config: CameraConfig) -> FrameSource:
    """The frame source for a camera config (not yet opened)."""
    if isinstance(config, ReplayCamera):
        from edge.camera.replay import ReplaySource

        return ReplaySource(config)
    if isinstance(config, PiCamera):
        from edge.camera.picamera import Picamera2Source

        return Picamera2Source(config)
    from edge.camera.opencv_source import OpenCvSource

    return OpenCvSource(config)


def open_capture(config: CameraConfig) -> CaptureThread:
    """The capture thread for a camera config (not yet started)."""
    return CaptureThread(open_source(config), config.reconnect_initial_s, config.reconnect_max_s, config.rotate)


def camera_frames(camera: CameraConfig, count: int, seconds: float | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Up to `count` frames from the door's camera, named by their index (a command's own short capture); with
    `seconds`, for at most that long, frames or not (a camera that gives none must not hold a command forever)."""
    capture = open_capture(camera).start()
    until = None if seconds is None else time.monotonic() + seconds
    try:
        taken = 0
        while taken < count and not capture.finished and (until is None or time.monotonic() < until):
            frame = capture.get(timeout=5 if until is None else max(0.01, min(1.0, until - time.monotonic())))
            if frame is not None:
                taken += 1
                yield f"frame {frame.index}", frame.image
    finally:
        capture.stop()


__all__ = ["CaptureThread", "Frame", "FrameSource", "SourceError", "SourceUnavailable", "camera_frames", "open_capture",
           "open_source"]
