"""Frame sources and the capture thread that keeps only the newest frame."""

from __future__ import annotations

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


__all__ = ["CaptureThread", "Frame", "FrameSource", "SourceError", "SourceUnavailable", "open_capture", "open_source"]
