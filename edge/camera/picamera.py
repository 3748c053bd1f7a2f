"""Raspberry Pi CSI cameras through Picamera2 (libcamera), when that library is importable."""

from __future__ import annotations

import numpy as np

from edge.camera.base import SourceError, SourceUnavailable
from edge.config import PiCamera

PICAMERA2_BGR = "RGB888"


class Picamera2Source:
    def __init__(self, config: PiCamera):
        self.config = config
        self.name = f"picamera2:{config.camera_index}"
        self.realtime = True
        self._camera = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(
                "camera.kind picamera2: the picamera2 library is not importable; on Raspberry Pi OS "
                "`apt install python3-picamera2` and create the venv with --system-site-packages"
            ) from None
        camera = None
        try:
            camera = Picamera2(self.config.camera_index)
            camera.configure(
                camera.create_video_configuration(
                    # picamera2 names formats by libcamera's (DRM's) convention: its "RGB888" is B, G, R
                    # in memory, the order OpenCV and the rest of the pipeline expect ("BGR888" is R, G, B).
                    main={"size": (self.config.width, self.config.height), "format": PICAMERA2_BGR},
                    controls={"FrameRate": self.config.fps},
                )
            )
            camera.start()
        except Exception as exc:  # libcamera raises many kinds; all mean "not now"
            if camera is not None:  # free the device before the capture thread retries
                try:
                    camera.close()
                except Exception:
                    pass
            raise SourceUnavailable(f"{self.name}: {exc}") from exc
        self._camera = camera

    def read(self) -> tuple[np.ndarray, float | None] | None:
        if self._camera is None:
            raise SourceUnavailable(f"{self.name} is not open")
        try:
            return self._camera.capture_array("main"), None
        except Exception as exc:
            raise SourceUnavailable(f"{self.name}: {exc}") from exc

    def close(self) -> None:
        if self._camera is not None:
            try:
                self._camera.stop()
                self._camera.close()
            finally:
                self._camera = None
