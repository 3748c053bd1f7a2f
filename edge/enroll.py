"""Enrolment: photos -> one face each -> aligned, augmented, embedded -> added to the gallery atomically."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from edge.camera.replay import IMAGE_SUFFIXES
from edge.errors import InputError
from edge.images import DEFAULT_MAX_PIXELS, ImageError, read_image
from edge.inference.align import align_face
from edge.inference.augment import augment
from edge.inference.gallery import Gallery, GalleryError, new_person_id
from edge.pipeline import Identifier

log = logging.getLogger(__name__)


@dataclass
class EnrolReport:
    person_id: str
    name: str
    used: list[Path] = field(default_factory=list)
    skipped: dict[Path, str] = field(default_factory=dict)


def image_paths(paths: list[Path]) -> list[Path]:
    """Files as given plus the images inside folders given."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    return found


def embed_person_images(identifier: Identifier, images: Sequence[tuple[str, Callable[[], np.ndarray]]],
                        augmentations: int, progress: bool = False
                        ) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, str]]:
    """Embeddings (originals + augmented) of the images that show exactly one usable face.

    images are (label, load) pairs; each image is decoded only when its turn comes and dropped after, so
    twenty large photos never sit in memory together. Returns vectors, original flags, labels used and
    the reason for each label skipped.
    """
    vectors, original, used, skipped = [], [], [], {}
    for n, (label, load) in enumerate(images, 1):
        if progress:
            _progress(n, len(images), label)
        try:
            image = load()
        except ImageError as exc:
            skipped[label] = str(exc)
            continue
        faces = identifier.faces(image)
        if not faces:
            skipped[label] = "no face found (or smaller than detector.min_face_px)"
            continue
        if len(faces) > 1:
            skipped[label] = f"{len(faces)} faces; enrolment photos must show one person"
            continue
        face = faces[0]
        vectors.append(identifier.embed(image, face))
        original.append(True)
        aligned = align_face(image, face, identifier.embedder.input_size, identifier.embedder.align_margin)
        for variant in augment(aligned, augmentations, seed=n):
            vectors.append(identifier.embedder.embed(variant))
            original.append(False)
        used.append(label)
    if progress:
        sys.stderr.write("\n")
    if not vectors:
        return np.zeros((0, identifier.embedder.dim), np.float32), np.zeros(0, bool), used, skipped
    return np.stack(vectors), np.array(original), used, skipped


def embed_person(identifier: Identifier, paths: list[Path], augmentations: int, progress: bool = False,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray, list[Path], dict[Path, str]]:
    """As embed_person_images, for files: unreadable or oversized ones are skipped with the reason."""
    by_label = {str(p): p for p in paths}
    vectors, original, used, reasons = embed_person_images(
        identifier, [(str(p), partial(read_image, p, max_pixels)) for p in paths], augmentations, progress)
    return vectors, original, [by_label[label] for label in used], {by_label[k]: v for k, v in reasons.items()}


def enrol(identifier: Identifier, gallery_path: Path, name: str, paths: list[Path], person_id: str | None,
          augmentations: int, progress: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> EnrolReport:
    embedder = identifier.embedder
    gallery = Gallery.load_or_new(gallery_path, embedder.model_id, embedder.dim)
    if person_id is None:
        existing = [pid for pid, n in zip(gallery.person_ids, gallery.names) if n == name]
        person_id = existing[0] if existing else new_person_id()
    report = EnrolReport(person_id, name)
    vectors, original, report.used, report.skipped = embed_person(identifier, image_paths(paths), augmentations,
                                                                  progress, max_pixels)
    if not report.used:
        reasons = "; ".join(f"{p}: {why}" for p, why in report.skipped.items()) or "no images given"
        raise InputError(f"no usable photo of {name}: {reasons}")
    try:
        gallery.add(person_id, name, vectors, original, embedder.model_id)
    except GalleryError as exc:
        raise InputError(str(exc)) from None
    gallery.save(gallery_path)
    return report


def _progress(done: int, total: int, label: str) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label[:40]:<40}")
    sys.stderr.flush()
