"""The daemon loop: frames in, decisions into the outbox, events out to the sinks; stops cleanly on signals."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

from edge.app import build_pipeline
from edge.camera import CaptureThread, open_source
from edge.config import Config
from edge.events import Event, EventSink, StdoutSink
from edge.outbox import Outbox
from edge.pipeline import FrameResult, Pipeline
from edge.timing import StageTimer

log = logging.getLogger(__name__)


class LocalDelivery:
    """Hands every pending outbox event to the sinks, in seq order, and forgets it once all took it.

    Used when MQTT is off; with MQTT the publisher owns delivery and acknowledges on PUBACK.
    """

    def __init__(self, outbox: Outbox, sinks: list[EventSink]):
        self.outbox = outbox
        self.sinks = sinks

    def flush(self) -> int:
        delivered = 0
        while True:
            batch = self.outbox.pending(limit=100)
            if not batch:
                return delivered
            for event in batch:
                for sink in self.sinks:
                    sink.deliver(event)
                self.outbox.ack(event.seq)
                delivered += 1


class Daemon:
    def __init__(self, config: Config, pipeline: Pipeline | None = None, sinks: list[EventSink] | None = None,
                 on_result: Callable[[FrameResult], None] | None = None):
        self.config = config
        self.timer = StageTimer()
        self.pipeline = pipeline or build_pipeline(config, self.timer)
        self.timer = self.pipeline.timer
        self.outbox = Outbox(config.outbox.path, config.device_id, config.outbox.max_events,
                             config.outbox.max_age_days)
        if sinks is None:
            sinks = [StdoutSink()] if config.sinks.stdout or not config.mqtt.enabled else []
        self.delivery = LocalDelivery(self.outbox, sinks)
        self.on_result = on_result
        self.stop_requested = threading.Event()
        self.frames = 0
        self.events: list[Event] = []
        cam = config.camera
        self.capture = CaptureThread(open_source(cam), cam.reconnect_initial_s, cam.reconnect_max_s, cam.rotate)

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        log.info("%s received; stopping after the current frame", signal.Signals(signum).name)
        self.stop_requested.set()

    def run(self) -> int:
        """Process frames until stopped or the source ends; 0 on a clean stop, 2 if the camera is misconfigured."""
        self.capture.start()
        started = time.monotonic()
        last_timing = started
        matcher = self.pipeline.identifier.matcher
        log.info("running: device %s, camera %s, %d enrolled", self.config.device_id, self.capture.source.name,
                 matcher.gallery.people if matcher else 0)
        try:
            self.delivery.flush()  # anything left from before a crash goes first
            while not self.stop_requested.is_set():
                frame = self.capture.get(timeout=0.5)
                if frame is None:
                    if self.capture.finished:
                        break
                    continue
                with self.timer.stage("frame"):
                    result = self.pipeline.process(frame)
                for decision in result.decisions:
                    event = self.outbox.append(decision)
                    self.events.append(event)
                    log.info("event %s #%d %s %s", event.type, event.seq, event.name or "-", event.event_id)
                self.delivery.flush()
                self.frames += 1
                if self.on_result:
                    self.on_result(result)
                every = self.config.log.stage_timing_every_s
                if every and time.monotonic() - last_timing >= every:
                    last_timing = time.monotonic()
                    log.info("timing: %s; dropped %d", self.timer.line(), self.capture.frames_dropped)
        finally:
            self.capture.stop()
            self.delivery.flush()
            log.info("stopped after %d frames; timing: %s; outbox depth %d", self.frames, self.timer.line(),
                     self.outbox.depth())
            self.outbox.close()
        # A source error is a configuration problem (bad path, missing backend): exit 2 like other bad input.
        return 2 if self.capture.error is not None else 0
