"""A door's own gesture samples: recorded from photos or the camera, kept as landmark numbers beside the site's
trained classifier, and labelled photo folders read into a confusion table. The CLI's `gestures` commands
parse their arguments and call these."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.camera.replay import IMAGE_SUFFIXES
from edge.errors import InputError
from edge.images import read_image
from edge.inference.gesture_model import body_points, load_recordings, save_recordings
from edge.inference.gestures import GESTURES, Confusion, GestureClassifier, PoseModel, read_gesture

log = logging.getLogger(__name__)


def samples_path(trained_model: Path) -> Path:
    """Where a site's recorded samples live: beside the model they train (<model>-samples.npz)."""
    return trained_model.with_name(trained_model.stem + "-samples.npz")


@dataclass
class Recording:
    path: Path
    added: int
    counts: dict[str, int]
    skipped: list[str] = field(default_factory=list)  # images with no person whose shoulders were seen

    def as_dict(self) -> dict:
        return {"samples": str(self.path), "added": self.added, "counts": self.counts}


def record(pose_model: PoseModel, images: list[tuple[str, np.ndarray]], label: str, path: Path,
           min_visibility: float) -> Recording:
    """Each image's most confident body as one sample of `label`, appended to the samples file."""
    recorded, skipped = [], []
    for name, image in images:
        poses = pose_model.poses(image)
        points = body_points(poses[0].landmarks, poses[0].visibility, min_visibility) if poses else None
        if points is None:
            skipped.append(name)
            continue
        recorded.append(points)
    if not recorded:
        raise InputError("no usable samples: no image showed a person with both shoulders visible "
                         f"({', '.join(skipped)})")
    if path.exists():
        points, labels = load_recordings(path)
    else:
        points, labels = np.zeros((0, *recorded[0].shape)), np.zeros(0, str)
    points = np.concatenate([points, np.stack(recorded)])
    labels = np.concatenate([labels, np.array([label] * len(recorded))])
    save_recordings(path, points, labels)
    counts = {name: int((labels == name).sum()) for name in sorted(set(labels))}
    return Recording(path, len(recorded), counts, skipped)


def labelled_folders(items: list[str]) -> list[tuple[str, list[Path]]]:
    """LABEL=FOLDER arguments as (label, photos); refuses an unknown label or a folder without photos."""
    folders = []
    for item in items:
        label, _, folder = item.partition("=")
        if label not in GESTURES or not folder:
            raise InputError(f"gestures evaluate: {item!r} is not LABEL=FOLDER with LABEL one of {', '.join(GESTURES)}")
        photos = sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not photos:
            raise InputError(f"gestures evaluate: {folder} holds no JPEG, PNG, BMP or WebP photo")
        folders.append((label, photos))
    return folders


def evaluate(pose_model: PoseModel, classifier: GestureClassifier, folders: list[tuple[str, list[Path]]],
             max_pixels: int) -> Confusion:
    """How the classifier reads each labelled photo's most confident body."""
    confusion = Confusion()
    for label, photos in folders:
        for photo in photos:
            confusion.add(label, read_gesture(pose_model, classifier, read_image(photo, max_pixels)))
    return confusion
