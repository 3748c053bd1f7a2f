"""The site's own operating point: `facecheck calibrate FOLDER`.

A model's operating point was measured on somebody else's people (the Western accuracy photos); on East Asian
faces the same model's impostor distances lie 0.35 closer (docs/accuracy.md). A site has its own people and its
own camera, so it can measure where its impostors lie: photos of the site's population, one sub-folder per
person (people the door will enrol or not), each photo embedded as enrolment embeds it. The distances are the
door's: each person's template (the mean of their photos) against every other person's photos, moved in by how
much nearer a visit comes than one photo (matcher.visit_impostors); the smallest, less the same safety margin as
the model's point, is the site's point. The genuine distances it reports are each photo against the template of
the same person's other photos. The matcher takes the tighter of the site's point and the model's
(edge/identity/operating.py), never the looser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from edge.errors import InputError
from edge.events import rfc3339_now
from edge.identity.matcher import visit_impostors
from edge.identity.operating import SitePoint, similarity_distance, site_point_from
from edge.images import read_image
from edge.recognition.enroll import embed_person_images, image_paths
from edge.recognition.pipeline import Identifier


@dataclass
class Calibration:
    point: SitePoint
    skipped: dict[str, str] = field(default_factory=dict)  # photo -> why it was not used


def calibrate(identifier: Identifier, folder: Path, max_pixels: int) -> Calibration:
    """The site point from the photos in folder/<person>/; photos without one usable face are skipped, said why."""
    if not folder.is_dir():
        raise InputError(f"calibrate {folder}: not a folder (it holds one sub-folder of photos per person)")
    people = sorted(d for d in folder.iterdir() if d.is_dir())
    vectors, labels, skipped = [], [], {}
    for index, person in enumerate(people):
        images = [(str(p), partial(read_image, p, max_pixels)) for p in image_paths([person])]
        embedded, original, _used, reasons = embed_person_images(identifier, images, 0)
        skipped.update(reasons)
        vectors += list(embedded[original])
        labels += [index] * int(original.sum())
    counted = len(set(labels))
    if counted < 2:
        raise InputError(f"calibrate {folder}: usable photos of {counted} people; at least two people are needed "
                         "(one sub-folder of photos each)")
    matrix, who = np.stack(vectors).astype(np.float32), np.array(labels)
    impostor, shift, _ = visit_impostors(matrix, who, identifier.model_id)
    genuine = own_template_distances(matrix, who)
    point = site_point_from(identifier.model_id, np.concatenate([impostor - shift, genuine]),
                            np.r_[np.zeros(len(impostor), bool), np.ones(len(genuine), bool)], counted, len(matrix),
                            str(folder), rfc3339_now())
    return Calibration(point, skipped)


def own_template_distances(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each photo's distance to the template of the same person's other photos (people with two or more)."""
    out = []
    for person in np.unique(labels):
        mine = embeddings[labels == person]
        if len(mine) < 2:
            continue
        others = mine.sum(axis=0)[None, :] - mine
        others /= np.maximum(np.linalg.norm(others, axis=1, keepdims=True), 1e-12)
        out.append(similarity_distance(np.sum(mine * others, axis=1)))
    return np.concatenate(out) if out else np.zeros(0)
