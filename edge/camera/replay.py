"""Replays a folder or glob of still images as a camera: the demo's and the tests' source."""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

import cv2
import numpy as np

from edge.camera.base import SourceError
from edge.config import ReplayCamera

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def list_images(pattern: str) -> list[Path]:
    """A folder's images, or a glob's matches, sorted by name so replay order is stable."""
    if os.path.isdir(pattern):
        paths = [p for p in Path(pattern).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        paths = [Path(p) for p in glob.glob(pattern)]
    return sorted(p for p in paths if p.is_file())


class ReplaySource:
    def __init__(self, config: ReplayCamera):
        self.config = config
        self.name = f"replay:{config.path}"
        self.realtime = config.realtime
        self._paths: list[Path] = []
        self._position = 0
        self._count = 0
        self._next_due = 0.0

    def open(self) -> None:
        self._paths = list_images(self.config.path)
        if not self._paths:
            raise SourceError(f"camera.path: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) at {self.config.path}")
        self._position = 0
        self._next_due = time.monotonic()

    def read(self) -> tuple[np.ndarray, float | None] | None:
        if self._position >= len(self._paths):
            if not self.config.loop:
                return None
            self._position = 0
        path = self._paths[self._position]
        self._position += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"camera.path: {path} is not a readable image")
        if self.realtime:
            self._next_due += 1.0 / self.config.fps
            delay = self._next_due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        ts = self._count / self.config.fps
        self._count += 1
        return image, ts

    def close(self) -> None:
        self._paths = []
