"""MQTT commands (<base>/cmd/<name>): rate-limited, allowed by config, signed where it matters, validated
and size-bounded, always answered.

A refused command (not allowed, unsigned, replayed, too frequent, malformed, oversized, unknown) gets
{"ok": false, "error": ...} and a log line; it never raises into the loop.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import SIGNED_COMMANDS, Config, ConfigError
from edge.identity.gallery import Gallery, GalleryError, check_name, check_person_id, new_person_id
from edge.images import ImageError, decode_image
from edge.jobs import BackgroundJobs, InlineJobs, JobFailed, Outcome
from edge.security.command_auth import AuthError, NonceLedger, signing_key, verify
from edge.security.secrets import COMMAND_KEY

log = logging.getLogger(__name__)

MAX_IMAGES = 20
MAX_JSON_DEPTH = 8  # the deepest legitimate payload: {"embeddings": [[...]]} inside a signed envelope
RATE_WINDOW_S = 60.0


class CommandError(JobFailed):
    """The command's payload is not acceptable; the message goes back to the sender."""


@dataclass
class CommandContext:
    """What commands may touch, supplied by the daemon.

    enrol_identifier, reload_config and reload_gallery run on the jobs thread, never in the frame loop;
    enrol_identifier gives that thread its own detector and embedder (interpreters are not shared).
    """

    model_id: str  # the embedder enrolment stores templates of (embedder.model)
    dim: int
    gallery: Any  # edge.identity.gallery.GalleryFile
    augmentations: int
    enrol_identifier: Callable[[], Any]  # () -> edge.recognition.pipeline.Identifier
    reload_config: Callable[[], Outcome]
    reload_gallery: Callable[[], Outcome]
    snapshot: Callable[[], dict]
    health: Callable[[], dict]
    max_bytes: int
    max_image_pixels: int
    threshold: float | None = None  # matcher.distance_threshold, for enrolment warnings (None: the model's)
    # (frames) -> a session the frame loop feeds (enroll's camera form); None on a door without a frame loop
    camera_session: Callable[[int], Any] | None = None
    fused: bool = False  # the door joins embedder.fuse_with's embedders to model_id's: each needs its own templates


def parse_payload(payload: bytes, max_bytes: int) -> dict:
    if len(payload) > max_bytes:
        raise CommandError(f"payload of {len(payload)} bytes exceeds mqtt.max_command_bytes ({max_bytes})")
    if not payload.strip():
        return {}
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"payload is not JSON: {exc}") from None
    except RecursionError:
        raise CommandError(f"payload nests deeper than {MAX_JSON_DEPTH} levels") from None
    if not isinstance(body, dict):
        raise CommandError("payload must be a JSON object")
    if _depth(body) > MAX_JSON_DEPTH:
        raise CommandError(f"payload nests deeper than {MAX_JSON_DEPTH} levels")
    return body


REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def take_request_id(body: dict) -> dict:
    """{"request_id": ...} taken out of the body (which the command's own fields are then checked
    against), or {} when there is none."""
    if "request_id" not in body:
        return {}
    value = body.pop("request_id")
    if not isinstance(value, str) or not REQUEST_ID.fullmatch(value):
        raise CommandError(f"request_id {value!r} must be 1-64 letters, digits or '._:-'")
    return {"request_id": value}


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_JSON_DEPTH:
            return level
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _optional_string(body: dict, key: str) -> str | None:
    return None if body.get(key) is None else _string(body, key)


def _string(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CommandError(f"'{key}' must be a non-empty string")
    return value.strip()


def _allowed(body: dict, keys: set[str]) -> None:
    extra = set(body) - keys
    if extra:
        raise CommandError(f"unknown field(s) {sorted(extra)}; allowed: {sorted(keys)}")


class CommandService:
    """Decides whether a command may run, then runs it: config allow-list, signature for the commands
    that change the roster or expose images, a per-topic rate limit, then the handler."""

    def __init__(self, config: Config, ctx: CommandContext, jobs: BackgroundJobs | InlineJobs | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.ctx = ctx
        self.jobs = jobs or InlineJobs()
        self.device_id = config.device_id
        self.allow = set(config.commands.allow)
        self.max_skew_s = config.commands.max_clock_skew_s
        self.per_minute = config.commands.per_minute
        self.clock = clock
        self.recent: dict[str, deque[float]] = {}
        signed = sorted(self.allow & set(SIGNED_COMMANDS))
        self.key = signing_key(config.commands) if signed else None
        if signed and self.key is None:
            raise ConfigError(f"commands.allow has {', '.join(signed)}, which need signed requests: set "
                              f"{COMMAND_KEY.places()}, or take them out of commands.allow")
        self.ledger = NonceLedger(Path(ctx.gallery.path).parent / "command-nonces.json")

    def submit(self, name: str, payload: bytes, respond: Callable[[dict], None]) -> None:
        """Answer through respond: at once for refusals and light commands; heavy ones (enroll, remove,
        reload) go to the jobs thread and answer when their swap is in. A request_id in the body (inside the
        signed part, for signed commands) is echoed in the answer, the correlation MQTT 3.1.1 lacks."""
        echo: dict = {}

        def answer(result: dict) -> None:
            respond({**result, **echo})

        try:
            self._admit(name)
            body = parse_payload(payload, self.ctx.max_bytes)
            if name in SIGNED_COMMANDS:
                if self.key is None:  # never: a signed command is admitted only with a key (see __init__)
                    raise CommandError(f"command {name!r} is not allowed on this door")
                body = verify(self.key, self.device_id, name, body, self.ledger, self.max_skew_s)
            echo.update(take_request_id(body))
            if name in _HEAVY:
                work = _HEAVY[name](body, self.ctx)
                self.jobs.submit(f"command {name}", work, answer)
                return
            answer({"ok": True, "error": None, **_LIGHT[name](body, self.ctx)})
        except (CommandError, AuthError, GalleryError, ImageError) as exc:
            log.warning("command %s refused: %s", name, exc)
            answer({"ok": False, "error": str(exc)})
        except Exception as exc:  # a command must never take the daemon down
            log.exception("command %s failed", name)
            answer({"ok": False, "error": f"internal error: {exc}"})

    def run(self, name: str, payload: bytes) -> dict:
        """The answer to one command, waiting for it (jobs run inline unless a runner was given)."""
        answers: list[dict] = []
        self.submit(name, payload, answers.append)
        while not answers:
            self.jobs.pump()
            time.sleep(0.005)
        return answers[0]

    def _admit(self, name: str) -> None:
        bucket = self.recent.setdefault(name if name in _HANDLERS else "(unknown)", deque())
        now = self.clock()
        while bucket and now - bucket[0] > RATE_WINDOW_S:
            bucket.popleft()
        if len(bucket) >= self.per_minute:
            raise CommandError(f"rate limited: at most {self.per_minute} {name!r} commands a minute "
                               "(commands.per_minute)")
        bucket.append(now)
        if name not in _HANDLERS:
            raise CommandError(f"unknown command {name!r}; known: {', '.join(sorted(_HANDLERS))}")
        if name not in self.allow:
            raise CommandError(f"command {name!r} is not allowed on this door (commands.allow: "
                               f"{', '.join(sorted(self.allow)) or 'none'})")


def _gallery(ctx: CommandContext) -> Gallery:
    return ctx.gallery.load_or_new(ctx.model_id, ctx.dim)


def _reload(body: dict, ctx: CommandContext) -> Work:
    _allowed(body, set())
    return ctx.reload_config


def _snapshot(body: dict, ctx: CommandContext) -> dict:
    _allowed(body, set())
    return ctx.snapshot()


def _health(body: dict, ctx: CommandContext) -> dict:
    _allowed(body, set())
    return {"health": ctx.health()}


def _roster(body: dict, ctx: CommandContext) -> dict:
    _allowed(body, set())
    gallery = _gallery(ctx)
    counts, adapted = gallery.counts(), gallery.adapted_counts()
    return {"version": gallery.version, "people": [
        {"person_id": pid, "name": name, "photos": counts[pid][0], "adapted": adapted[pid]}
        for pid, name in zip(gallery.person_ids, gallery.names)]}


def _with_gallery_reload(result: dict, ctx: CommandContext) -> Outcome:
    """A roster change takes effect by reloading the gallery only."""
    reloaded = ctx.reload_gallery()
    return Outcome({**result, **reloaded.result}, reloaded.apply)


def _remove(body: dict, ctx: CommandContext) -> Work:
    _allowed(body, {"person_id"})
    person_id = check_person_id(_string(body, "person_id"))

    def work() -> Outcome:
        gallery = _gallery(ctx)
        gallery.remove(person_id)
        ctx.gallery.save(gallery)
        return _with_gallery_reload({"person_id": person_id}, ctx)

    return work


def _enroll(body: dict, ctx: CommandContext) -> Work:
    """{"name", "person_id"?, "images": [base64 JPEG/PNG]}, {"name", "embeddings": [[...]], "model_id"}, or
    {"name", "camera": {"frames"?, "timeout_s"?}} (the person stands in front of this door's camera).

    The payload's shape is checked here, in the loop; decoding and embedding happen in the returned work."""
    _allowed(body, {"name", "person_id", "images", "embeddings", "model_id", "force", "camera"})
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise CommandError("'force' must be true or false")
    name = check_name(_string(body, "name"))
    given_id = _optional_string(body, "person_id")
    person_id = check_person_id(given_id) if given_id is not None else new_person_id()
    if "camera" in body:
        return _enroll_from_camera(body, ctx, name, person_id, force)
    images, embeddings = body.get("images"), body.get("embeddings")
    if (images is None) == (embeddings is None):
        raise CommandError("give either 'images' (base64 JPEG/PNG), 'embeddings' (with 'model_id') or 'camera'")
    if images is not None and (not isinstance(images, list) or not 1 <= len(images) <= MAX_IMAGES):
        raise CommandError(f"'images' must be a list of 1 to {MAX_IMAGES} base64 strings")
    photos = [_base64_image(i, item) for i, item in enumerate(images or ())]
    if embeddings is not None and body.get("model_id") != ctx.model_id:
        raise CommandError(f"'model_id' must be {ctx.model_id!r} (embeddings from another model cannot mix)")
    if embeddings is not None and ctx.fused:
        raise CommandError("this door joins several embedders (embedder.fuse_with) and needs every one's templates: "
                           "enrol with 'images' or 'camera', which compute them all")

    def work() -> Outcome:
        skipped: list[str] = []
        also: dict = {}
        if images is not None:
            vectors, original, labels, skipped, also = _embed_images(photos, ctx, force)
        else:
            vectors = _vectors(embeddings, ctx.dim)
            original, labels = np.ones(len(vectors), bool), [f"embeddings[{i}]" for i in range(len(vectors))]
        return _added(ctx, person_id, name, vectors, original, labels, also, {"skipped": skipped})

    return work


def _added(ctx: CommandContext, person_id: str, name: str, vectors: np.ndarray, original: np.ndarray,
           labels: list[str], also: dict, result: dict) -> Outcome:
    """The person's templates into the gallery (with the enrolment warnings), saved, and the gallery reloaded."""
    from edge.recognition.enroll import enrolment_warnings

    gallery = _gallery(ctx)
    warnings = enrolment_warnings(gallery, person_id, labels, vectors[original], ctx.threshold)
    warnings += gallery.add(person_id, name, vectors, original, ctx.model_id, also)
    ctx.gallery.save(gallery)
    return _with_gallery_reload({"person_id": person_id, "name": name, **result, "warnings": warnings}, ctx)


def _enroll_from_camera(body: dict, ctx: CommandContext, name: str, person_id: str, force: bool) -> Work:
    """The camera form: the frame loop feeds a session (edge/recognition/camera_enrol.py) that keeps one frame per head
    pose; this job waits for it (at most timeout_s) and enrols the kept frames like photos. Frames stay in memory."""
    camera = body["camera"]
    from edge.recognition.camera_enrol import MAX_FRAMES

    if not isinstance(camera, dict) or set(camera) - {"frames", "timeout_s"}:
        raise CommandError(f"'camera' must be an object with optional 'frames' (1-{MAX_FRAMES}) and 'timeout_s' (1-300)")
    frames, timeout_s = camera.get("frames", 5), camera.get("timeout_s", 60)
    if not isinstance(frames, int) or isinstance(frames, bool) or not 1 <= frames <= MAX_FRAMES:
        raise CommandError(f"'camera.frames' must be a whole number from 1 to {MAX_FRAMES}")
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or not 1 <= timeout_s <= 300:
        raise CommandError("'camera.timeout_s' must be a number of seconds from 1 to 300")
    if any(key in body for key in ("images", "embeddings", "model_id")):
        raise CommandError("give 'camera' alone, not with 'images' or 'embeddings'")
    if ctx.camera_session is None:
        raise CommandError("this door has no frame loop to enrol from")
    shared = ctx.camera_session(frames)

    def work() -> Outcome:
        session = shared.wait(float(timeout_s))
        if not session.kept:
            raise CommandError(f"no usable frame of {name} in {timeout_s} s (last: {shared.said}); check the camera's "
                               "aim (the snapshot command), then stand 0.5-1.5 m in front of it")
        vectors, original, labels, skipped, also = _embed_loaded(session.images(), ctx, force)
        return _added(ctx, person_id, name, vectors, original, labels, also,
                      {"skipped": skipped, **session.summary()})

    return work


def _embed_images(raw: list[bytes], ctx: CommandContext, force: bool
                  ) -> tuple[np.ndarray, np.ndarray, list[str], list[str], dict]:
    """Each photo is decoded (bounded, edge/images.py) only when its turn comes."""
    return _embed_loaded([(f"images[{i}]", partial(decode_image, data, ctx.max_image_pixels))
                          for i, data in enumerate(raw)], ctx, force)


def _embed_loaded(loaders: list, ctx: CommandContext, force: bool
                  ) -> tuple[np.ndarray, np.ndarray, list[str], list[str], dict]:
    """(label, load) images through the enrolment checks on the jobs thread's own models; the other embedders'
    templates (embedder.enrol_also) come last."""
    from edge.recognition.enroll import InputError, embed_also, embed_person_images

    identifier = ctx.enrol_identifier()
    vectors, original, used, reasons = embed_person_images(identifier, loaders, ctx.augmentations, force=force)
    skipped = [f"{label}: {why}" for label, why in reasons.items()]
    if not used:
        raise CommandError("no usable face in the images: " + "; ".join(skipped))
    try:
        also = embed_also(identifier, loaders, used, ctx.augmentations)
    except InputError as exc:
        raise CommandError(str(exc)) from None
    return vectors, original, used, skipped, also


def _base64_image(index: int, item) -> bytes:
    try:
        raw = base64.b64decode(item, validate=True) if isinstance(item, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    if not raw:
        raise CommandError(f"images[{index}] is not a base64-encoded JPEG or PNG")
    return raw


def _vectors(embeddings, dim: int) -> np.ndarray:
    try:
        vectors = np.asarray(embeddings, dtype=np.float32)
    except (TypeError, ValueError):
        raise CommandError("'embeddings' must be a list of number lists") from None
    if vectors.ndim != 2 or vectors.shape[1] != dim or not 1 <= len(vectors) <= 1000 or not np.isfinite(vectors).all():
        raise CommandError(f"'embeddings' must be 1..1000 finite vectors of {dim} numbers")
    return vectors


Work = Callable[[], Outcome]
# Light commands answer in the loop; heavy ones check their payload there and do the rest on the jobs thread.
_LIGHT: dict[str, Callable[[dict, CommandContext], dict]] = {
    "health": _health, "roster": _roster, "snapshot": _snapshot}
_HEAVY: dict[str, Callable[[dict, CommandContext], Work]] = {"enroll": _enroll, "reload": _reload, "remove": _remove}
_HANDLERS = {**_LIGHT, **_HEAVY}
