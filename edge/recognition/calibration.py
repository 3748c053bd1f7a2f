"""The site's own operating point: `facecheck calibrate FOLDER`.

A model's operating point was measured on somebody else's people (the Western accuracy photos); on East Asian
faces the same model's impostor distances lie 0.35 closer (docs/accuracy.md). A site has its own people and its
own camera, so it can measure where its impostors lie: photos of the site's population, one sub-folder per
person (people the door will enrol or not), each photo embedded as enrolment embeds it. The smallest distance
between two different people, less the same safety margin as the model's point, is the site's point; the
matcher takes the tighter of it and the model's (edge/identity/operating.py), never the looser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from edge.errors import InputError
from edge.events import rfc3339_now
from edge.identity.operating import SitePoint, site_point_from
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
    matrix, who = np.stack(vectors), np.array(labels)
    upper = np.triu_indices(len(matrix), 1)
    distances = np.sqrt(np.clip(2.0 - 2.0 * matrix @ matrix.T, 0.0, 4.0))[upper]
    same = (who[:, None] == who[None, :])[upper]
    point = site_point_from(identifier.model_id, distances, same, counted, len(matrix), str(folder),
                            rfc3339_now())
    return Calibration(point, skipped)
