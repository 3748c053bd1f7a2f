"""`facecheck demo`: the real pipeline on the shipped sample photos, no camera and no external broker.

Enrols two people from their photos, renders a door-camera clip (640x480 frames, each visitor
walking in for ~1.5 s with natural jitter, empty frames between), replays it through the daemon and
prints each event as a JSON line, then a summary. Visitors: Obama in a photo not used for enrolment
(must check in), Collins and the cameraman (never enrolled: must be unknown), Biden (enrolled).

When Debian's mosquitto is installed the demo starts a private one on a loopback port, the daemon
publishes through its outbox at QoS 1, and the lines printed are what a subscriber received.
Without it, the daemon's stdout sink prints the events straight from the outbox.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from edge.config import EmbedderConfig, config_from_dict, find_config, load_config
from edge.samples import sample

ENROL = {"Barack Obama": ["obama-1.jpg", "obama-2.jpg"], "Joe Biden": ["biden-1.jpg"]}
VISITORS = [("obama-3.jpg", "Barack Obama"), ("collins-1.jpg", None), ("biden-1.jpg", "Joe Biden"),
            ("cameraman.jpg", None)]
FPS = 10.0
FRAMES_PER_VISIT = 15
EMPTY_FRAMES = 8


def _default_embedder() -> EmbedderConfig:
    """The embedders config.yaml names (FaceNet fused with MobileFaceNet by default), else the built-in defaults."""
    path = find_config(None)
    if path is not None:
        try:
            return load_config(path).embedder
        except Exception:  # a broken ./config.yaml should not stop the demo; fall back to the default model
            pass
    return config_from_dict({}, Path.cwd()).embedder


def _default_model() -> Path:
    return _default_embedder().model


def _demo_embedders(model: Path | None) -> tuple[Path, list[Path]]:
    """(the model, the embedders fused with it): config.yaml's (or the defaults'); with --model, that model and the
    fused files of the same names in its folder, so a bundle built elsewhere runs the door's default identity."""
    embedder = _default_embedder()
    if model is None:
        return embedder.model.resolve(), embedder.fuse_with
    return model.resolve(), [model.resolve().parent / path.name for path in embedder.fuse_with]


def visitor(photo: str, face_px: int = 170, models_dir: Path | None = None) -> np.ndarray:
    """The sample photo cropped and scaled as a door camera sees someone at arm's length."""
    from edge.inference.detector import BlazeFaceDetector

    image = cv2.imread(str(sample(photo)))
    box = BlazeFaceDetector(min_face_px=20, models_dir=models_dir or _default_model().parent).detect(image)[0].box
    return visitor_crop(image, box, face_px)


VISITOR_ABOVE, VISITOR_BELOW = 1.4, 2.2  # a visitor_crop's reach from the face's centre, in face sizes


def visitor_crop(image: np.ndarray, box: tuple[int, int, int, int], face_px: int = 170) -> np.ndarray:
    """The person around a face box, head and shoulders, scaled so the face is face_px across."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    half = VISITOR_ABOVE * max(w, h)
    x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
    crop = image[y0:int(cy + VISITOR_BELOW * max(w, h)), x0:int(cx + half)]
    scale = face_px / max(w, h)
    return cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)[:470, :620]


DOORWAY = (190, 200, 205)  # BGR of the empty doorway behind the visitors


def doorway() -> np.ndarray:
    return np.full((480, 640, 3), DOORWAY, np.uint8)


def in_doorway(person: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One frame of a person (a visitor_crop) standing in the doorway, jittered a few pixels."""
    frame = doorway()
    ph, pw = person.shape[:2]
    dx, dy = rng.integers(-4, 5, 2)
    x0 = int(np.clip((640 - pw) // 2 + dx, 0, 640 - pw))
    y0 = int(np.clip(480 - ph + dy, 0, 480 - ph))
    frame[y0:y0 + ph, x0:x0 + pw] = person
    return frame


def clip_frames(seed: int = 0, visitors=VISITORS, frames_per_visit: int = FRAMES_PER_VISIT,
                empty_frames: int = EMPTY_FRAMES) -> Iterator[np.ndarray]:
    """The clip in memory: each visitor standing in the doorway (jittered a few pixels) for
    frames_per_visit frames, then empty_frames of an empty doorway, so visit i starts at frame
    i * (frames_per_visit + empty_frames)."""
    rng = np.random.default_rng(seed)
    crops: dict[str, np.ndarray] = {}
    for photo, _ in visitors:
        person = crops.get(photo)
        if person is None:
            person = crops[photo] = visitor(photo)
        for _ in range(frames_per_visit):
            yield in_doorway(person, rng)
        for _ in range(empty_frames):
            yield doorway()


def render_clip(folder: Path, seed: int = 0, visitors=VISITORS, frames_per_visit: int = FRAMES_PER_VISIT,
                empty_frames: int = EMPTY_FRAMES) -> list[str | None]:
    """Write clip_frames as numbered JPEGs (what a recorded camera gives); returns who is expected in
    each visit."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, frame in enumerate(clip_frames(seed, visitors, frames_per_visit, empty_frames)):
        cv2.imwrite(str(folder / f"frame-{n:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return [who for _, who in visitors]


class EventListener:
    """A real MQTT subscriber to every door's events; on_event gets each payload as it arrives (on paho's
    network thread)."""

    def __init__(self, port: int, on_event: Callable[[bytes], None], client_id: str = "facecheck-demo-subscriber"):
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.count = 0
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._on_event = on_event
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe("facecheck/+/events", qos=1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the subscriber {client_id} could not subscribe")

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self._on_event(message.payload)
            self.count += 1

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _start_broker(work: Path):
    from edge.cli.local_broker import Broker, BrokerUnavailable, mosquitto_binary

    if mosquitto_binary() is None:
        return None, None
    try:
        broker = Broker(work / "broker").start()
    except BrokerUnavailable as exc:
        print(f"# mosquitto did not start ({exc}); printing from the outbox instead", file=sys.stderr)
        return None, None
    return broker, EventListener(broker.port, lambda payload: print(payload.decode(), flush=True))


def _build_bundle_if_missing(model: Path, fuse_with: list[Path]) -> None:
    """The demo builds the model bundle (and MobileFaceNet, where it fuses it) itself when the converters extra is
    there (scripts/bootstrap installs it); otherwise the runtime's own error says how to build them."""
    from edge.inference.tflite import BUNDLED

    bundle_built = model.is_file() and all((model.parent / name).is_file() for name in BUNDLED)
    missing_fused = [path for path in fuse_with if not path.is_file()]
    if bundle_built and not missing_fused:
        return
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return
    from converters.cli import main as convert

    if not bundle_built:
        precision = next((p for p in ("int8full", "int8", "float16", "float32") if p in model.name), "int8full")
        print(f"# building the model bundle in {model.parent} once; later runs reuse it", file=sys.stderr)
        convert(["bundle", "--out", str(model.parent), "--precision", precision, "--if-stale"])
    for path in missing_fused:
        if path.name.startswith("mobilefacenet"):
            print(f"# building MobileFaceNet in {path.parent} once (embedder.fuse_with)", file=sys.stderr)
            convert(["mobilefacenet", "--out", str(path.parent), "--if-stale"])


def run_demo(model: Path | None = None, keep: Path | None = None) -> int:
    from edge.identity.gallery import GalleryFile
    from edge.recognition.enroll import enrol
    from edge.service.assembly import LIVENESS_INSTALL, build_identifier, door_identity, liveness_status
    from edge.service.daemon import Daemon

    model, fuse_with = _demo_embedders(model)
    _build_bundle_if_missing(model, fuse_with)
    work = keep or Path(tempfile.mkdtemp(prefix="facecheck-demo-"))
    try:
        config = config_from_dict({
            "device_id": "demo-door",
            "camera": {"kind": "replay", "path": str(work / "frames"), "fps": FPS, "realtime": False},
            "models": {"dir": str(model.parent)},
            "embedder": {"model": str(model), "fuse_with": [str(path) for path in fuse_with]},
            "matcher": {"gallery": str(work / "state" / "gallery.npz")},
            "outbox": {"path": str(work / "state" / "outbox.sqlite")},
            "confirmation": {"require_gesture": False, "recognise_frames": 3, "unknown_frames": 5,
                             "unknown_interval_s": 0},
            "mqtt": {"enabled": False},
            "sinks": {"stdout": True},
            "log": {"stage_timing_every_s": 0},
        }, base_dir=work)
        liveness = liveness_status(config)
        if liveness == "not installed":  # the demo runs face-only; a door with the shipped config would refuse
            config = config_from_dict({**config.model_dump(mode="json", exclude={"source_path"}),
                                       "liveness": {"policy": "off"}}, base_dir=work)
        started = time.monotonic()
        broker, listener = _start_broker(work)
        if broker is not None:
            config = config_from_dict(
                {**config.model_dump(mode="json", exclude={"source_path"}),
                 "mqtt": {"enabled": True, "port": broker.port, "health_interval_s": 1},
                 "sinks": {"stdout": False}}, base_dir=work)
        identifier = build_identifier(config, with_matcher=False)
        print(f"# FaceCheck Edge demo — identity {door_identity(config)[0]}", file=sys.stderr)
        for name, photos in ENROL.items():
            report = enrol(identifier, GalleryFile.from_config(config), name, [sample(p) for p in photos], None,
                           config.matcher.augmentations)
            print(f"# enrolled {name} from {len(report.used)} photo(s)", file=sys.stderr)
        expected = render_clip(work / "frames")
        via = f"a subscriber on a private mosquitto (port {broker.port})" if broker else "the stdout sink (no mosquitto)"
        print(f"# replaying {len(expected)} visitors through the daemon; events as received by {via}:",
              file=sys.stderr)
        daemon = Daemon(config)
        try:
            status = daemon.run()
            if listener is not None:
                listener.wait_for(daemon.event_count)
        finally:
            if listener is not None:
                listener.close()
            if broker is not None:
                broker.kill()
        elapsed = time.monotonic() - started
        known = [e.name or "?" for e in daemon.events if e.type == "check_in"]
        unknown = sum(e.type == "unknown_face" for e in daemon.events)
        learned = [e.name or "?" for e in daemon.events if e.type == "template_added"]
        summary = daemon.timer.summary()
        print("# ---- summary ----", file=sys.stderr)
        print(f"# visitors: {', '.join(w or 'stranger' for w in expected)}", file=sys.stderr)
        print(f"# recognised and checked in: {', '.join(known) or 'nobody'}; unknown faces reported: {unknown}",
              file=sys.stderr)
        print("# learned from confirmed visits (adaptation): " + (', '.join(learned) or 'nothing' if
              daemon.config.adaptation.enabled else "off (adaptation.enabled; docs/accuracy.md)"), file=sys.stderr)
        print(f"# frames {daemon.frames}, pipeline {daemon.timer.fps():.1f} fps; per-frame p50 "
              f"{summary.get('frame', {}).get('p50', 0):.1f} ms, embed p50 {summary.get('embed', {}).get('p50', 0):.1f}"
              f" ms; total {elapsed:.1f}s", file=sys.stderr)
        if liveness == "not installed":
            print("# liveness: not installed, so this demo ran face-only (a photo held up would pass); install "
                  f"the anti-spoofing models with `{LIVENESS_INSTALL.format(models=model.parent)}` "
                  "(docs/liveness.md)", file=sys.stderr)
        else:
            print(f"# liveness: {liveness}", file=sys.stderr)
        return status
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
