"""The capture thread: reads a frame source on its own thread so inference never waits on I/O.

Live sources keep only the newest frame (an older one is overwritten and counted as dropped), so a
slow inference loop never lags behind the door. Non-realtime replay hands over every frame instead,
so tests and the demo are repeatable. A source that disappears is reopened with exponential
back-off; a source error that retrying cannot fix ends capture and is reported to the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import cv2

from edge.camera.base import Frame, FrameSource, SourceError, SourceUnavailable

log = logging.getLogger(__name__)

_ROTATIONS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


class CaptureThread:
    def __init__(
        self,
        source: FrameSource,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        rotate: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.source = source
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.rotate = rotate
        self.clock = clock
        self.frames_captured = 0
        self.frames_dropped = 0
        self.reconnects = 0
        self.error: SourceError | None = None
        self.ended = False
        self._latest: Frame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> CaptureThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def finished(self) -> bool:
        """True once the source has ended or failed for good and its last frame was taken."""
        with self._cond:
            return (self.ended or self.error is not None) and self._latest is None

    def get(self, timeout: float = 1.0) -> Frame | None:
        """The newest frame not yet taken, or None after timeout / at the end."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._latest is None:
                if self.ended or self.error is not None or self._stop.is_set():
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame, self._latest = self._latest, None
            self._cond.notify_all()
            return frame

    def _publish(self, frame: Frame) -> None:
        with self._cond:
            if self._latest is not None:
                if self.source.realtime:
                    self.frames_dropped += 1
                else:
                    while self._latest is not None and not self._stop.is_set():
                        self._cond.wait(0.1)
            self._latest = frame
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = self.reconnect_initial_s
        index = 0
        opened = False
        try:
            while not self._stop.is_set():
                if not opened:
                    try:
                        self.source.open()
                        opened = True
                        backoff = self.reconnect_initial_s
                        log.info("camera %s opened", self.source.name)
                    except SourceUnavailable as exc:
                        log.warning("camera %s unavailable (%s); retrying in %.1fs", self.source.name, exc, backoff)
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self.reconnect_max_s)
                        continue
                try:
                    result = self.source.read()
                except SourceUnavailable as exc:
                    log.warning("camera %s lost (%s); reconnecting", self.source.name, exc)
                    self._close_quietly()
                    opened = False
                    self.reconnects += 1
                    continue
                if result is None:
                    log.info("camera %s reached the end of its input", self.source.name)
                    break
                image, ts = result
                if self.rotate:
                    image = cv2.rotate(image, _ROTATIONS[self.rotate])
                self.frames_captured += 1
                self._publish(Frame(image=image, ts=self.clock() if ts is None else ts, index=index,
                                    source=self.source.name))
                index += 1
        except SourceError as exc:
            log.error("camera %s: %s", self.source.name, exc)
            self.error = exc
        finally:
            self._close_quietly()
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def _close_quietly(self) -> None:
        try:
            self.source.close()
        except Exception:  # closing a vanished device may fail; nothing to recover
            log.debug("closing %s failed", self.source.name, exc_info=True)
