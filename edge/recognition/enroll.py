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
from edge.identity.gallery import Gallery, GalleryError, GalleryFile, new_person_id
from edge.images import DEFAULT_MAX_PIXELS, ImageError, read_image
from edge.inference.quality import FaceQuality
from edge.recognition.pipeline import Identifier

log = logging.getLogger(__name__)


@dataclass
class EnrolReport:
    person_id: str
    name: str
    used: list = field(default_factory=list)  # the photos' paths, or the labels of in-memory images
    skipped: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# An enrolment photo sets who a person is for every later match, so it must be better than a passing
# frame: (minimum face size px, minimum sharpness, minimum frontalness). `--force` skips these.
ENROL_MIN_FACE_PX = 48
ENROL_MIN_SHARPNESS = 20.0
ENROL_MIN_FRONTAL = 0.25


def photo_problem(quality: FaceQuality) -> str | None:
    """Why a face is not good enough to enrol from, or None."""
    if quality.size_px < ENROL_MIN_FACE_PX:
        return f"face is {quality.size_px:.0f} px; enrolment needs at least {ENROL_MIN_FACE_PX} px (a closer photo)"
    if quality.sharpness < ENROL_MIN_SHARPNESS:
        return (f"too blurred (sharpness {quality.sharpness:.0f}, at least {ENROL_MIN_SHARPNESS:.0f}); "
                "use a sharper photo")
    if quality.frontal < ENROL_MIN_FRONTAL:
        return (f"face strongly turned (frontal {quality.frontal:.2f}, at least {ENROL_MIN_FRONTAL}); "
                "use a photo looking at the camera")
    return None


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
                        augmentations: int, progress: bool = False, force: bool = False
                        ) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, str]]:
    """Embeddings (originals + augmented) of the images that show exactly one usable face.

    images are (label, load) pairs; each image is decoded only when its turn comes and dropped after, so
    twenty large photos never sit in memory together. A photo needs exactly one face, and unless
    `force`, one large, sharp and frontal enough (photo_problem). Returns vectors, original flags,
    labels used and the reason for each label skipped.
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
        image, faces, _ = identifier.photo_faces(image)
        if not faces:
            skipped[label] = "no face found (or smaller than detector.min_face_px)"
            continue
        if len(faces) > 1:
            boxes = ", ".join(f"[{x}, {y}, {w}, {h}]" for x, y, w, h in (f.box for f in faces))
            skipped[label] = (f"{len(faces)} faces (x, y, w, h: {boxes}); which one? crop the photo to the "
                              "person being enrolled")
            continue
        aligned, quality = identifier.aligned(image, faces[0])
        problem = None if force else photo_problem(quality)
        if problem is not None:
            skipped[label] = problem + " (--force accepts it anyway)"
            continue
        templates = identifier.photo_templates(image, faces[0], aligned, augmentations, seed=n)
        vectors += list(templates)
        original += [True] + [False] * (len(templates) - 1)
        used.append(label)
    if progress:
        sys.stderr.write("\n")
    if not vectors:
        return np.zeros((0, identifier.dim), np.float32), np.zeros(0, bool), used, skipped
    return np.stack(vectors), np.array(original), used, skipped


def embed_also(identifier: Identifier, images: Sequence[tuple[str, Callable[[], np.ndarray]]], used: list[str],
               augmentations: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The used photos' templates from every other embedder enrolment stores (embedder.enrol_also): model id ->
    (embeddings, original flags). The photos passed the checks already; a photo another embedder's alignment
    cannot use fails the enrolment rather than leaving that model without the person."""
    chosen = [(label, load) for label, load in images if label in used]
    out = {}
    for other in identifier.also:
        vectors, original, got, reasons = embed_person_images(other, chosen, augmentations, force=True)
        if got != used:
            raise InputError(f"{other.model_id} (embedder.enrol_also or fuse_with) could not use "
                             + "; ".join(f"{label}: {why}" for label, why in reasons.items()))
        out[other.model_id] = (vectors, original)
    return out


def enrol(identifier: Identifier, gallery_file: GalleryFile, name: str, paths: list[Path], person_id: str | None,
          augmentations: int, progress: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS, force: bool = False,
          threshold: float | None = None) -> EnrolReport:
    """threshold: the matcher's distance threshold, for the look-alike and wrong-photo warnings."""
    files = image_paths(paths)
    by_label = {str(p): p for p in files}
    images = [(str(p), partial(read_image, p, max_pixels)) for p in files]
    report = enrol_images(identifier, gallery_file, name, images, person_id, augmentations, progress, force, threshold)
    report.used = [by_label[str(label)] for label in report.used]
    report.skipped = {by_label[str(label)]: why for label, why in report.skipped.items()}
    return report


def enrol_images(identifier: Identifier, gallery_file: GalleryFile, name: str,
                 images: Sequence[tuple[str, Callable[[], np.ndarray]]], person_id: str | None, augmentations: int,
                 progress: bool = False, force: bool = False, threshold: float | None = None) -> EnrolReport:
    """Enrol one person from labelled images (photos from files, or frames the door's camera gave and that live only
    in memory: edge/recognition/camera_enrol.py); only templates are kept."""
    gallery = gallery_file.load_or_new(identifier.model_id, identifier.dim)
    if person_id is None:
        existing = [pid for pid, n in zip(gallery.person_ids, gallery.names) if n == name]
        person_id = existing[0] if existing else new_person_id()
    report = EnrolReport(person_id, name)
    vectors, original, used, reasons = embed_person_images(identifier, images, augmentations, progress, force)
    report.used, report.skipped = list(used), dict(reasons)
    if not report.used:
        reasons_text = "; ".join(f"{p}: {why}" for p, why in report.skipped.items()) or "no images given"
        raise InputError(f"no usable photo of {name}: {reasons_text}")
    report.warnings = enrolment_warnings(gallery, person_id, used, vectors[original], threshold)
    try:
        report.warnings += gallery.add(person_id, name, vectors, original, identifier.model_id,
                                       embed_also(identifier, images, used, augmentations))
    except GalleryError as exc:
        raise InputError(str(exc)) from None
    gallery_file.save(gallery)
    return report


def enrolment_warnings(gallery: Gallery, person_id: str, labels: list[str], photos: np.ndarray,
                       threshold: float | None) -> list[str]:
    """Photos that lie within the threshold of someone else (the same person twice, or look-alikes), and a
    photo far from the person's other photos (a wrong photo in the folder). The threshold is the one a still photo
    is judged by (matcher.photo_bound): these are photos, not visits."""
    from edge.identity.matcher import resolve

    if threshold is None:
        threshold = resolve(gallery, None)[3]
    warnings = []
    originals = gallery.original & (gallery.labels != _index(gallery, person_id))
    others, who = gallery.embeddings[originals], gallery.labels[originals]
    for label, vector in zip(labels, photos):
        if len(others):
            distances = np.linalg.norm(others - vector, axis=1)
            nearest = int(np.argmin(distances))
            if distances[nearest] <= threshold:
                other = gallery.names[int(who[nearest])]
                warnings.append(f"{label} lies within the match threshold of {other} (distance "
                                f"{distances[nearest]:.2f} <= {threshold:.2f}): the same person enrolled twice, or "
                                "look-alikes the door may refuse as ambiguous")
    own = np.concatenate([gallery.embeddings[gallery.original & (gallery.labels == _index(gallery, person_id))],
                          photos]) if person_id in gallery.person_ids else photos
    if len(own) >= 3:
        offset = len(own) - len(photos)
        for i, label in enumerate(labels):
            rest = np.delete(own, offset + i, axis=0)
            median = float(np.median(np.linalg.norm(rest - own[offset + i], axis=1)))
            if median > threshold + 0.2:
                warnings.append(f"{label} lies far from this person's other photos (median distance "
                                f"{median:.2f}): a photo of someone else in the folder?")
    return warnings


def _index(gallery: Gallery, person_id: str) -> int:
    return gallery.person_ids.index(person_id) if person_id in gallery.person_ids else -1


def _progress(done: int, total: int, label: str) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label[:40]:<40}")
    sys.stderr.flush()
