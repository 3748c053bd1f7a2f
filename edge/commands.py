"""MQTT commands (<base>/cmd/<name>): validated, size-limited, run in the main loop, always answered.

A malformed, oversized or unknown command gets {"ok": false, "error": ...} and a log line; it
never raises into the loop.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

from edge.inference.gallery import Gallery, GalleryError, new_person_id

log = logging.getLogger(__name__)

MAX_IMAGES = 20


class CommandError(Exception):
    """The command's payload is not acceptable; the message goes back to the sender."""


@dataclass
class CommandContext:
    """What commands may touch, supplied by the daemon."""

    identifier: Any  # edge.pipeline.Identifier
    gallery_path: Any
    augmentations: int
    reload: Callable[[], dict]
    snapshot: Callable[[], dict]
    health: Callable[[], dict]
    max_bytes: int


def parse_payload(payload: bytes, max_bytes: int) -> dict:
    if len(payload) > max_bytes:
        raise CommandError(f"payload of {len(payload)} bytes exceeds mqtt.max_command_bytes ({max_bytes})")
    if not payload.strip():
        return {}
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"payload is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise CommandError("payload must be a JSON object")
    return body


def _string(body: dict, key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise CommandError(f"'{key}' must be a non-empty string of at most 200 characters")
    return value.strip()


def _allowed(body: dict, keys: set[str]) -> None:
    extra = set(body) - keys
    if extra:
        raise CommandError(f"unknown field(s) {sorted(extra)}; allowed: {sorted(keys)}")


def run_command(name: str, payload: bytes, ctx: CommandContext) -> dict:
    """The result body for one command."""
    try:
        body = parse_payload(payload, ctx.max_bytes)
        handler = _HANDLERS.get(name)
        if handler is None:
            raise CommandError(f"unknown command {name!r}; known: {', '.join(sorted(_HANDLERS))}")
        result = handler(body, ctx)
        return {"ok": True, "error": None, **result}
    except (CommandError, GalleryError) as exc:
        log.warning("command %s refused: %s", name, exc)
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # a command must never take the daemon down
        log.exception("command %s failed", name)
        return {"ok": False, "error": f"internal error: {exc}"}


def _gallery(ctx: CommandContext) -> Gallery:
    embedder = ctx.identifier.embedder
    return Gallery.load_or_new(ctx.gallery_path, embedder.model_id, embedder.dim)


def _reload(body: dict, ctx: CommandContext) -> dict:
    _allowed(body, set())
    return ctx.reload()


def _snapshot(body: dict, ctx: CommandContext) -> dict:
    _allowed(body, set())
    return ctx.snapshot()


def _health(body: dict, ctx: CommandContext) -> dict:
    _allowed(body, set())
    return {"health": ctx.health()}


def _roster(body: dict, ctx: CommandContext) -> dict:
    _allowed(body, set())
    gallery = _gallery(ctx)
    counts = gallery.counts()
    return {"version": gallery.version, "people": [
        {"person_id": pid, "name": name, "photos": counts[pid][0]}
        for pid, name in zip(gallery.person_ids, gallery.names)]}


def _remove(body: dict, ctx: CommandContext) -> dict:
    _allowed(body, {"person_id"})
    person_id = _string(body, "person_id")
    gallery = _gallery(ctx)
    gallery.remove(person_id)
    gallery.save(ctx.gallery_path)
    return {"person_id": person_id, **ctx.reload()}


def _enroll(body: dict, ctx: CommandContext) -> dict:
    """{"name", "person_id"?, "images": [base64 JPEG/PNG]} or {"name", "embeddings": [[...]], "model_id"}."""
    from edge.enroll import embed_person_images

    _allowed(body, {"name", "person_id", "images", "embeddings", "model_id"})
    name = _string(body, "name")
    person_id = _string(body, "person_id", required=False) or new_person_id()
    embedder = ctx.identifier.embedder
    images, embeddings = body.get("images"), body.get("embeddings")
    if (images is None) == (embeddings is None):
        raise CommandError("give either 'images' (base64 JPEG/PNG) or 'embeddings' (with 'model_id')")
    skipped: list[str] = []
    if images is not None:
        if not isinstance(images, list) or not 1 <= len(images) <= MAX_IMAGES:
            raise CommandError(f"'images' must be a list of 1 to {MAX_IMAGES} base64 strings")
        decoded = []
        for i, item in enumerate(images):
            try:
                raw = base64.b64decode(item, validate=True) if isinstance(item, str) else b""
            except (binascii.Error, ValueError):
                raw = b""
            image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) if raw else None
            if image is None:
                raise CommandError(f"images[{i}] is not a base64-encoded JPEG or PNG")
            decoded.append((f"images[{i}]", image))
        vectors, original, used, reasons = embed_person_images(ctx.identifier, decoded, ctx.augmentations)
        skipped = [f"{label}: {why}" for label, why in reasons.items()]
        if not used:
            raise CommandError("no usable face in the images: " + "; ".join(skipped))
    else:
        if body.get("model_id") != embedder.model_id:
            raise CommandError(f"'model_id' must be {embedder.model_id!r} (embeddings from another model cannot mix)")
        try:
            vectors = np.asarray(embeddings, dtype=np.float32)
        except (TypeError, ValueError):
            raise CommandError("'embeddings' must be a list of number lists") from None
        if vectors.ndim != 2 or vectors.shape[1] != embedder.dim or not 1 <= len(vectors) <= 1000 \
                or not np.isfinite(vectors).all():
            raise CommandError(f"'embeddings' must be 1..1000 finite vectors of {embedder.dim} numbers")
        original = np.ones(len(vectors), bool)
    gallery = _gallery(ctx)
    gallery.add(person_id, name, vectors, original, embedder.model_id)
    gallery.save(ctx.gallery_path)
    return {"person_id": person_id, "name": name, "skipped": skipped, **ctx.reload()}


_HANDLERS: dict[str, Callable[[dict, CommandContext], dict]] = {
    "enroll": _enroll, "health": _health, "reload": _reload, "remove": _remove, "roster": _roster,
    "snapshot": _snapshot,
}
