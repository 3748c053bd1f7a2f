"""`facecheck doctor`: one line per check of what a door needs; exit 0 only if every check passes."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.config import Config

MIN_FREE_BYTES = 200 * 1024 * 1024
CAMERA_WAIT_S = 10.0
BROKER_WAIT_S = 10.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warn: bool = False  # passes (the door works) but something should be looked at

    def line(self) -> str:
        return f"{'FAIL' if not self.ok else 'WARN' if self.warn else 'PASS'} {self.name:8} {self.detail}"


def check_models(config: Config) -> Check:
    from edge.inference.embedder import describe, read_sidecar
    from edge.inference.liveness import MODELS as LIVENESS_MODELS
    from edge.inference.tflite import BUNDLED, ModelError, TfliteModel, bundle_model
    from edge.service.assembly import LivenessNotInstalled, require_liveness

    names = list(BUNDLED)
    try:
        require_liveness(config)
    except LivenessNotInstalled as exc:
        return Check("models", False, str(exc))
    if config.liveness.policy != "off":
        names += [LIVENESS_MODELS[name][0] for name in config.liveness.models]
    try:
        bundled = [bundle_model(config.models.dir, name) for name in names]
        for path in bundled:
            TfliteModel(path, 1)
        metas = []
        for path in (config.embedder.model, *config.embedder.fuse_with):
            metas.append(read_sidecar(path))
            TfliteModel(path, 1)
    except ModelError as exc:
        return Check("models", False, str(exc))
    described = []
    for meta in metas:
        contract = describe(meta)
        described.append(f"{meta['model_id']} ({contract['input']}, {contract['alignment']}, {contract['dim']}-d; "
                         f"{contract['licence']})")
    return Check("models", True, " fused with ".join(described) + f" and {len(bundled)} bundled models in "
                 f"{config.models.dir} (sha256 match their sidecars)")


def check_gallery(config: Config) -> Check:
    from edge.identity.gallery import GalleryError, GalleryFile
    from edge.inference.tflite import ModelError
    from edge.security.sealing import SealError
    from edge.service.assembly import door_identity

    stored = GalleryFile.from_config(config)
    path = stored.path
    if not path.exists():
        return Check("gallery", False, f"{path} does not exist: nobody is enrolled (facecheck enroll)")
    try:
        gallery = stored.load().select(door_identity(config)[0], str(path))
    except (GalleryError, ModelError, SealError) as exc:
        return Check("gallery", False, str(exc))
    if gallery.people == 0:
        return Check("gallery", False, f"{path} holds nobody; enrol people with facecheck enroll")
    return Check("gallery", True, f"{gallery.people} people, version {gallery.version}, model {gallery.model_id}; "
                                  f"sealed (AES-256-GCM) with the key from {stored.key_source()}")


def check_threshold(config: Config) -> Check:
    """The distance threshold in force and the measured operating point it comes from."""
    from edge.identity.operating import operating_point
    from edge.inference.tflite import ModelError
    from edge.service.assembly import door_identity

    try:
        model_id = door_identity(config)[0]
    except ModelError as exc:
        return Check("matching", False, str(exc))
    point = operating_point(model_id)
    configured = config.matcher.distance_threshold
    if point is None and configured is None:
        return Check("matching", False, f"no measured operating point for {model_id}: run "
                     "`python -m bench.accuracy --write-operating-points` or set matcher.distance_threshold")
    if point is None:
        return Check("matching", True, f"threshold {configured} from config (no measured operating point for {model_id})")
    measured = (f"operating point of {model_id}: threshold {point.threshold}, 0 of {point.impostor_pairs} impostor "
                f"pairs accepted (FAR <= {point.far_bound_95:.1e} per comparison at 95 %), TAR {point.tar:.2f} per "
                f"genuine pair")
    if configured is not None and configured > point.threshold:
        return Check("matching", True, f"threshold {configured} from config is LOOSER than the {measured}")
    if configured is not None:
        return Check("matching", True, f"threshold {configured} from config; {measured}")
    from edge.identity.operating import SitePointError, load_site_point

    try:
        site = load_site_point(config.matcher.site_point, model_id)
    except SitePointError as exc:
        return Check("matching", False, str(exc))
    if site is not None:
        effect = (f"tightens it to {site.threshold}" if site.threshold < point.threshold
                  else f"allows {site.threshold}, so the model's point stays")
        measured += (f"; site point from {site.people} of the site's people ({site.impostor_pairs} impostor pairs, "
                     f"{site.measured_at}) {effect}")
    return Check("matching", True, measured + "; " + roster_bound(config))


def roster_bound(config: Config) -> str:
    """What the enrolled roster does to the threshold, and the stranger FAR its normal model gives."""
    from edge.identity.gallery import GalleryError
    from edge.inference.tflite import ModelError
    from edge.security.sealing import SealError
    from edge.service.assembly import build_matcher_for, door_identity, load_gallery

    try:
        matcher = build_matcher_for(config, load_gallery(config, *door_identity(config)))
    except (GalleryError, SealError, ModelError) as exc:
        return f"the roster's bound is unknown ({exc})"
    roster = matcher.roster
    learned = sum(matcher.gallery.adapted_counts().values())
    adaptation = (f"; learning from visits {'on' if config.adaptation.enabled else 'off'}: {learned} learned "
                  f"template(s) (at most {config.adaptation.max_per_person} per person), each accepting within "
                  f"{matcher.learned_threshold:.3f}")
    if roster is None or roster.threshold is None:
        return f"threshold in force {matcher.threshold:.3f} (too few people for the roster to bound it)" + adaptation
    far = roster.modelled_far(matcher.threshold)
    photo = (f", {matcher.photo_threshold:.3f} for one still photo (identify: not held to the predicted visit shift)"
             if matcher.photo_threshold > matcher.threshold else "")
    text = (f"threshold in force {matcher.threshold:.3f} per visit{photo} ({matcher.threshold_origin}); this roster: "
            f"{roster.people} "
            f"people, {roster.impostor_pairs} impostor distances (template to photo), nearest "
            f"{roster.nearest_impostor:.3f}, modelled stranger FAR {far:.1e} per visit (target {roster.target:g}; a "
            f"normal model of a visit, whose fused frames come {roster.visit_shift:.3f} nearer other people's "
            f"templates than one photo, {roster.visit_shift_from}; not a measurement)")
    if roster.threshold < 0.85:
        text += ("; WARNING: this roster's people lie close together for this model, so the threshold is tight "
                 "and fewer faces will be recognised (docs/accuracy.md: populations)")
        if not config.embedder.fuse_with:
            text += ("; FaceNet and MobileFaceNet fused recognise more of such people at the same stranger rate: "
                     "embedder.fuse_with: [models/mobilefacenet-float32.tflite] (the default; scripts/bootstrap builds it)")
    return text + adaptation


def check_camera(config: Config) -> Check:
    from edge.camera import open_capture

    cam = config.camera
    capture = open_capture(cam).start()
    try:
        first = capture.get(timeout=CAMERA_WAIT_S)
        if first is None:
            why = capture.error or f"no frame within {CAMERA_WAIT_S:.0f}s"
            return Check("camera", False, f"{capture.source.name}: {why}")
        started, frames = time.monotonic(), 1
        while time.monotonic() - started < 2.0 and not capture.finished:
            if capture.get(timeout=0.5) is not None:
                frames += 1
        fps = (frames - 1) / max(time.monotonic() - started, 1e-6)
    finally:
        capture.stop()
    h, w = first.image.shape[:2]
    problems = []
    if (w, h) != (cam.width, cam.height) and cam.kind not in ("replay", "file"):
        problems.append(f"delivers {w}x{h}, configured {cam.width}x{cam.height}")
    if cam.kind not in ("replay", "file") and fps < 0.5 * cam.fps:
        problems.append(f"{fps:.1f} fps, configured {cam.fps:g}")
    detail = f"{capture.source.name}: {w}x{h} at {fps:.1f} fps"
    return Check("camera", not problems, detail + ("; " + "; ".join(problems) if problems else ""))


FRAMING_FRAMES = 10


def check_framing(config: Config) -> Check:
    """Whether the bodies the camera sees now keep their hands inside the frame (pose on a few frames)."""
    from edge.camera import open_capture
    from edge.cli.placement import FRAMING_ADVICE, framing_problems
    from edge.service.assembly import build_pose

    capture = open_capture(config.camera).start()
    frames: list[np.ndarray] = []
    try:
        started = time.monotonic()
        while len(frames) < FRAMING_FRAMES and time.monotonic() - started < 3.0 and not capture.finished:
            frame = capture.get(timeout=1.0)
            if frame is not None:
                frames.append(frame.image)
    finally:
        capture.stop()
    if not frames:
        return Check("framing", True, "skipped: no frame from the camera (see the camera check)", warn=True)
    pose = build_pose(config)
    bodies, problems = 0, []
    for image in frames[:: max(1, len(frames) // 5)]:
        found = pose.poses(image)
        bodies += len(found)
        problems += framing_problems(found, image.shape[1], image.shape[0])
    if not bodies:
        return Check("framing", True, f"no body in {len(frames)} frames; to check the framing, stand where visitors "
                                      "stand with both arms raised and run doctor again")
    if problems:
        return Check("framing", True, f"{len(problems)} of {bodies} bodies: {problems[0]}; {FRAMING_ADVICE}", warn=True)
    return Check("framing", True, f"{bodies} bodies seen, their wrists and elbows inside the frame")


def check_broker(config: Config) -> Check:
    if not config.mqtt.enabled:
        return Check("broker", True, "skipped: mqtt.enabled is false")
    import paho.mqtt.client as mqtt

    from edge.config import ConfigError
    from edge.messaging.link import connect_blocking, make_client
    from edge.security.secrets import broker_password

    m = config.mqtt
    try:
        client = make_client(config, f"{config.client_id}-doctor", mqtt.Client)
        host, port = connect_blocking(client, config, BROKER_WAIT_S)
    except (ConfigError, ConnectionError) as exc:
        return Check("broker", False, str(exc))
    client.disconnect()
    client.loop_stop()
    others = len(m.brokers()) - 1
    return Check("broker", True, f"{host}:{port}{f' (one of {others + 1} brokers)' if others else ''} accepted MQTT {m.protocol}"
                 f"{' over TLS' if m.tls else ''}{' with credentials' if broker_password(m) else ''}")


def check_outbox(config: Config) -> Check:
    from edge.messaging.outbox import Outbox, OutboxError

    path = config.outbox.path
    try:
        box = Outbox(path, config.device_id)
        depth = box.depth()
        box.close()
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".doctor-"):
            pass
    except (OutboxError, OSError) as exc:
        return Check("outbox", False, str(exc))
    free = shutil.disk_usage(path.parent).free
    if free < MIN_FREE_BYTES:
        return Check("outbox", False, f"{path.parent}: only {free / 1e6:.0f} MB free (need {MIN_FREE_BYTES / 1e6:.0f})")
    return Check("outbox", True, f"{path} writable, {depth} pending, {free / 1e9:.1f} GB free")


def check_clock(config: Config) -> Check:
    now = time.time()
    if time.gmtime(now).tm_year < 2025:
        return Check("clock", False, f"system time {time.strftime('%Y-%m-%d', time.gmtime(now))} is not plausible")
    newest = max((p.stat().st_mtime for p in (config.embedder.model, Path(__file__)) if p.exists()), default=0)
    if newest > now + 60:
        return Check("clock", False, "files are dated in the future: the clock went backwards; sync it (NTP)")
    synced = _ntp_synchronized()
    if synced is False:
        return Check("clock", False, "timedatectl says NTP is not synchronised; event times may be wrong")
    return Check("clock", True, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
                 + ("; NTP synchronised" if synced else "; plausible (NTP state unknown here)"))


def _ntp_synchronized() -> bool | None:
    if shutil.which("timedatectl") is None:
        return None
    try:
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = out.stdout.strip()
    return {"yes": True, "no": False}.get(value) if out.returncode == 0 else None


CHECKS: tuple[Callable[[Config], Check], ...] = (
    check_models, check_threshold, check_gallery, check_camera, check_framing, check_broker, check_outbox, check_clock)


def run_doctor(config: Config, out=print) -> int:
    failed = 0
    for check in CHECKS:
        try:
            result = check(config)
        except Exception as exc:  # a check must report, never crash the others
            result = Check(check.__name__.removeprefix("check_"), False, f"check crashed: {exc}")
        out(result.line())
        failed += not result.ok
    out(f"{len(CHECKS) - failed}/{len(CHECKS)} checks passed")  # a WARN passes
    from edge.service.assembly import missing_liveness_models

    if missing_liveness_models(config):
        return 2  # a setting or an install step to fix, as `facecheck run` says too
    return 0 if failed == 0 else 1
