"""The daemon loop: frames in, decisions into the outbox, events out; services between frames.

Threads only for I/O and slow jobs: the capture thread, paho's network loop, and the jobs thread that
enrols, rebuilds matchers and reloads config beside the loop (edge/jobs.py). Inference and decisions run
here, in one loop, which never waits for a command. SIGTERM/SIGINT stop it after the current frame and
flush what is pending; SIGHUP reloads config and gallery without touching the camera.
"""

from __future__ import annotations

import base64
import logging
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from edge.camera import Frame, open_capture
from edge.config import Config
from edge.events import Event, EventSink, StdoutSink
from edge.identity.gallery import GalleryFile
from edge.inference.liveness import VerdictCounts
from edge.jobs import BackgroundJobs, Outcome
from edge.messaging.commands import CommandContext, CommandError, CommandService
from edge.messaging.outbox import Outbox
from edge.recognition.adaptation import Learned
from edge.recognition.camera_enrol import SharedSession
from edge.recognition.pipeline import FrameResult, Identifier, Pipeline
from edge.recognition.snapshot import snapshot_jpeg
from edge.service.assembly import build_identifier, build_pipeline
from edge.service.health import HealthSnapshot, OutboxState, health_payload
from edge.service.reload import Reloader
from edge.service.sdnotify import Notifier

log = logging.getLogger(__name__)

COMMANDS_PER_FRAME = 10  # the rest wait in the link's bounded queue for the next gap between frames


class Daemon:
    def __init__(self, config: Config, pipeline: Pipeline | None = None, sinks: list[EventSink] | None = None,
                 on_result: Callable[[FrameResult], None] | None = None):
        self.config = config
        self.notifier = Notifier()
        self.notifier.status("loading models")
        self.pipeline = pipeline or build_pipeline(config)
        self.timer = self.pipeline.timer
        self.outbox = Outbox(config.outbox.path, config.device_id, config.outbox.max_events,
                             config.outbox.max_age_days)
        if sinks is None:
            sinks = [StdoutSink()] if config.sinks.stdout or not config.mqtt.enabled else []
        self.sinks = sinks
        self.on_result = on_result
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.frames = 0
        self.events: deque[Event] = deque(maxlen=1000)  # the most recent ones (the demo summarises them)
        self.event_count = 0
        self.liveness_verdicts = VerdictCounts()
        self.started = time.monotonic()
        self.last_frame: Frame | None = None
        self.last_result: FrameResult | None = None
        self.capture = open_capture(config.camera)
        self.jobs = BackgroundJobs()
        self.reloader = Reloader(self)
        identity, stored = self.pipeline.identifier, self.pipeline.identifier.embedder  # enrolment stores `stored`'s
        self.link = self.publisher = self.roster = None
        if config.mqtt.enabled:
            from edge.messaging.link import MqttLink
            from edge.messaging.publisher import OutboxPublisher
            from edge.messaging.roster import follower

            self.link = MqttLink(config)
            self.publisher = OutboxPublisher(self.outbox, self.link)
            self.roster = follower(config, self.link, identity.model_id, self._roster_version,
                                   self.reloader.gallery, self.jobs)
        self.ready_sent = False
        self._enrol_identifier: Identifier | None = None
        self.commands = CommandService(config, CommandContext(
            model_id=stored.model_id, dim=stored.dim, gallery=GalleryFile.from_config(config),
            augmentations=config.matcher.augmentations, enrol_identifier=self._enrolment_identifier,
            reload_config=self.reloader.config, reload_gallery=self.reloader.gallery, snapshot=self.snapshot,
            health=lambda: health_payload(self.health_snapshot()), max_bytes=config.mqtt.max_command_bytes,
            max_image_pixels=config.limits.max_image_pixels, threshold=config.matcher.distance_threshold,
            camera_session=self._camera_session, fused=bool(identity.fused)), self.jobs)
        self.door_enrolment: SharedSession | None = None

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGHUP, lambda *_: self.reload_requested.set())

    def _on_stop_signal(self, signum, _frame) -> None:
        log.info("%s received; stopping after the current frame", signal.Signals(signum).name)
        self.stop_requested.set()

    # ------------------------------------------------------------------ what services use

    def _enrolment_identifier(self):
        """The jobs thread's own detector and embedder (one interpreter thread), built on first use."""
        if self._enrol_identifier is None:
            self._enrol_identifier = build_identifier(self.config, with_matcher=False, threads=1)
        return self._enrol_identifier

    def _camera_session(self, frames: int) -> SharedSession:
        """A session for the enroll command's camera form; the loop feeds it until it is over (one at a time)."""
        if self.door_enrolment is not None and not self.door_enrolment.over:
            raise CommandError("an enrolment from the camera is already under way; wait for its answer")
        self.door_enrolment = SharedSession(frames)
        return self.door_enrolment

    def _roster_version(self) -> int:
        matcher = self.pipeline.identifier.matcher
        return matcher.gallery.version if matcher else 0

    def health_snapshot(self) -> HealthSnapshot:
        """What the health payload reports, read in the loop's thread."""
        identifier, outbox = self.pipeline.identifier, self.outbox
        return HealthSnapshot(
            device_id=self.config.device_id, uptime_s=time.monotonic() - self.started, fps=self.timer.fps(),
            latency_ms=self.timer.summary(), frames=self.frames, frames_dropped=self.capture.frames_dropped,
            camera_reconnects=self.capture.reconnects,
            outbox=OutboxState(outbox.depth(), outbox.oldest_age_s(), outbox.last_seq(), outbox.disk_full,
                               outbox.spilled(), outbox.events_lost),
            jobs_pending=self.jobs.busy(), events=self.event_count,
            detector_model=getattr(identifier.detector, "model_id", "unknown"),
            embedder_model=identifier.model_id, matcher=identifier.matcher,
            liveness_policy=self.config.liveness.policy, liveness_check=self.pipeline.confirmation.liveness_check,
            liveness_verdicts=self.liveness_verdicts,
            broker=self.link.node if self.link is not None else None)

    def snapshot(self) -> dict:
        if self.last_frame is None:
            return {"jpeg_base64": None, "faces": [], "note": "no frame captured yet"}
        stage = self.pipeline.gestures
        jpeg = snapshot_jpeg(self.last_frame.image, self.last_result, stage.last_poses if stage else None,
                             self.config.gestures.min_visibility)
        h, w = self.last_frame.image.shape[:2]
        faces = [f.as_dict() for f in (self.last_result.faces if self.last_result else [])]
        return {"jpeg_base64": base64.b64encode(jpeg).decode(), "width": w, "height": h, "faces": faces}

    # ------------------------------------------------------------------ the loop

    def _deliver(self) -> None:
        self.outbox.retry_writes()
        if self.publisher is not None:
            self.publisher.pump()
            return
        for event in self.outbox.pending(limit=1000):  # no broker: the sinks are the destination
            for sink in self.sinks:
                sink.deliver(event)
            self.outbox.ack(event.seq)

    def _between_frames(self, last_health: float) -> float:
        self.jobs.pump()
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            self.jobs.submit("reload", self.reloader.config, _log_reload)
        if self.link is None:
            return last_health
        if self.roster is not None:
            self.roster.pump()
        for _ in range(COMMANDS_PER_FRAME):
            try:
                command = self.link.commands.get_nowait()
            except queue.Empty:
                break
            self.commands.submit(command.name, command.payload, partial(self._answer, command))
        now = time.monotonic()
        if self.link.is_connected() and now - last_health >= self.config.mqtt.health_interval_s:
            self.link.publish_json("health", health_payload(self.health_snapshot()), qos=0, retain=True)
            return now
        return last_health

    def _keep_learned(self, learned: Learned) -> Outcome:
        """The template the loop learned, added to the gallery on disk too (the jobs thread serialises it with
        enrolments and removals, so neither loses the other's write)."""
        files = GalleryFile.from_config(self.config)
        gallery = files.load_or_new(learned.model_id, len(learned.vector))
        if learned.person_id not in gallery.person_ids:
            return Outcome({"kept": False, "why": f"{learned.person_id} left the roster meanwhile"})
        gallery.adapt(learned.person_id, learned.vector, learned.at, self.config.adaptation.max_per_person)
        files.save(gallery)
        return Outcome({"kept": True, "person_id": learned.person_id, "version": gallery.version})

    def _answer(self, command, result: dict) -> None:
        log.info("command %s: %s", command.name, "ok" if result["ok"] else result["error"])
        if self.link is not None:  # commands come only through the link
            self.link.respond(command, result)

    def run(self) -> int:
        """Process frames until stopped or the source ends; 0 on a clean stop, 2 if the camera is misconfigured."""
        if self.link is not None:
            self.notifier.status(f"connecting to {self.link.node}")
            self.link.start()
        self.notifier.status(f"opening camera {self.capture.source.name}")
        self.capture.start()
        self.started = last_timing = time.monotonic()
        last_health = 0.0
        matcher = self.pipeline.identifier.matcher
        log.info("running: device %s, camera %s, %d enrolled, MQTT %s", self.config.device_id,
                 self.capture.source.name, matcher.gallery.people if matcher else 0,
                 ", ".join(f"{h}:{p}" for h, p in self.config.mqtt.brokers()) if self.link else "off")
        try:
            self._deliver()  # anything left from before a crash goes first
            while not self.stop_requested.is_set():
                last_health = self._between_frames(last_health)
                frame = self.capture.get(timeout=0.2)
                if frame is None:
                    if self.capture.finished:
                        break
                    self._deliver()
                    continue
                with self.timer.stage("frame"):
                    result = self.pipeline.process(frame)
                self.last_frame, self.last_result = frame, result
                if self.door_enrolment is not None:
                    self.door_enrolment.offer(frame.image, result.faces)
                for decision in result.decisions + [learned.audit() for learned in result.learned]:
                    event = self.outbox.append(decision)
                    self.events.append(event)
                    self.event_count += 1
                    self.liveness_verdicts.count(decision.type, decision.extra.get("liveness"))
                    log.info("event %s #%d %s %s", event.type, event.seq, event.name or "-", event.event_id)
                    if self.publisher is not None:
                        for sink in self.sinks:
                            sink.deliver(event)
                for learned in result.learned:
                    self.jobs.submit(f"learned template of {learned.name}", partial(self._keep_learned, learned),
                                     _log_kept)
                self._deliver()
                self.frames += 1
                self.notifier.frame_processed()
                if not self.ready_sent:
                    self._maybe_ready()
                if self.on_result:
                    self.on_result(result)
                every = self.config.log.stage_timing_every_s
                if every and time.monotonic() - last_timing >= every:
                    last_timing = time.monotonic()
                    log.info("timing: %s; dropped %d", self.timer.line(), self.capture.frames_dropped)
        finally:
            self._shutdown()
        # A source error is a configuration problem (bad path, missing backend): exit 2 like other bad input.
        return 2 if self.capture.error is not None else 0

    READY_BROKER_WAIT_S = 30.0

    def _maybe_ready(self) -> None:
        """READY=1 once models and camera work and the broker is connected, or after waiting
        READY_BROKER_WAIT_S for it: attendance must not stop because the broker is away."""
        broker_up = self.link is None or self.link.is_connected()
        if not broker_up and time.monotonic() - self.started < self.READY_BROKER_WAIT_S:
            return
        matcher = self.pipeline.identifier.matcher
        people = matcher.gallery.people if matcher else 0
        broker = "no broker configured" if self.link is None else (
            "broker connected" if broker_up else "broker unreachable: events wait in the outbox")
        self.notifier.ready(f"running: {people} enrolled, camera up, {broker}")
        self.ready_sent = True
        log.info("ready: %d enrolled, %s", people, broker)

    STOP_RECONNECT_WAIT_S = 3.0  # a reconnect under way when the stop came
    STOP_DRAIN_S = 10.0  # well inside systemd's TimeoutStopSec

    def _drain_before_stopping(self, publisher, link) -> None:
        """A clean stop publishes what the outbox holds while the broker is reachable, and otherwise says
        exactly how many events stay and why: they are published at the next start, never lost."""
        if self.outbox.depth() == 0:
            return
        if not link.is_connected():
            deadline = time.monotonic() + self.STOP_RECONNECT_WAIT_S
            while not link.is_connected() and time.monotonic() < deadline:
                time.sleep(0.05)
        if link.is_connected() and publisher.drain(timeout=self.STOP_DRAIN_S):
            log.info("outbox drained before stopping")
            return
        left = self.outbox.depth()
        why = (f"the broker {link.node} did not acknowledge them within {self.STOP_DRAIN_S:.0f} s"
               if link.is_connected() else f"the broker {link.node} is not connected")
        log.warning("stopping with %d event(s) in the outbox: %s; they are published at the next start", left, why)

    def _shutdown(self) -> None:
        self.notifier.stopping()
        self.capture.stop()
        if self.door_enrolment is not None:  # no more frames: an enrolment from the camera ends with what it kept
            self.door_enrolment.close()
        if not self.jobs.finish(timeout=20.0):
            log.warning("stopping with a command or reload still running; it was not applied")
        if self.publisher is not None and self.link is not None:
            self._drain_before_stopping(self.publisher, self.link)
            self.link.stop()
        else:
            self._deliver()
        log.info("stopped after %d frames; timing: %s; outbox depth %d", self.frames, self.timer.line(),
                 self.outbox.depth())
        self.outbox.close()


def _log_kept(result: dict) -> None:
    if not result["ok"]:
        log.error("a learned template could not be saved: %s (the door uses it until it restarts)", result["error"])
    elif not result["kept"]:
        log.info("learned template not saved: %s", result["why"])


def _log_reload(result: dict) -> None:
    if result["ok"]:
        log.info("reload done: %s", ", ".join(result.get("reloaded") or []) or "gallery")
    else:
        log.error("reload refused: %s", result["error"])
