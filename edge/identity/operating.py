"""Each FaceNet model's measured operating point: the distance threshold chosen from real impostor pairs.

`python -m bench.accuracy --write-operating-points` measures every built model on real labelled photos
and writes edge/data/operating_points.json; the matcher uses the entry of the model it runs as its
default threshold, and doctor and the health payload report it. The rule: the largest distance at which
no impostor pair of the benchmark is accepted, less SAFETY. SAFETY covers how far the same model's
distances move between hosts and their kernels: the int8 model on (emulated) arm64 moved them by at most
0.0014 against x86_64 (scripts/check-arm64), so 0.02 leaves more than ten times that. Each precision has
its own point (int8 moves distances by up to 0.016 against float32). SAFETY was 0.05 while the robust
alignment fit jumped between keypoint pairs and moved distances across hosts by up to 0.045. With none
of N impostor pairs accepted, the per-comparison false-accept rate is below 3/N at 95 % confidence
(the rule of three); a stranger meets every person's template (one per person: never more comparisons than
photos), so for a roster of P photos 1 - (1 - 3/N)^P bounds it on the safe side.

A point measured on one population proves nothing about another: on East Asian faces the same model's
impostor distances lie 0.35 lower (docs/accuracy.md). So the threshold in force is also bounded by the
enrolled roster itself (`roster_point`): its people are the door's population, and the distances between
different enrolled people are impostor pairs of that population, even with one photo each.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from statistics import NormalDist

POINTS_FILE = Path(__file__).resolve().parents[1] / "data" / "operating_points.json"
SAFETY = 0.02


@dataclass(frozen=True)
class OperatingPoint:
    model_id: str
    threshold: float
    impostor_pairs: int
    genuine_pairs: int
    far: float  # measured false accepts per impostor comparison at the threshold
    far_bound_95: float  # upper 95 % bound on it
    tar: float  # measured true accepts per genuine comparison at the threshold
    dataset: str
    impostor_mean: float | None = None  # the measured impostor distances' mean and spread (roster_point's prior)
    impostor_std: float | None = None
    genuine_similarity: float | None = None  # mean cosine similarity of two photos of one person (predicted_shift)

    def stranger_far_bound(self, photos: int) -> float:
        """Upper bound on a stranger being accepted by a roster of `photos` enrolled photos."""
        return 1.0 - (1.0 - self.far_bound_95) ** max(photos, 1)

    def as_dict(self) -> dict:
        return {key: (round(value, 6) if isinstance(value, float) else value) for key, value in asdict(self).items()}


def from_distances(model_id: str, impostor, genuine, dataset: str) -> OperatingPoint:
    """The operating point that the rule above picks from measured pair distances."""
    import numpy as np

    impostor, genuine = np.asarray(impostor), np.asarray(genuine)
    threshold = _floor(float(impostor.min()) - SAFETY)
    return OperatingPoint(model_id, threshold, int(impostor.size), int(genuine.size),
                          float((impostor <= threshold).mean()), min(1.0, 3.0 / impostor.size),
                          float((genuine <= threshold).mean()), dataset, float(impostor.mean()), float(impostor.std()),
                          float((1.0 - genuine ** 2 / 2.0).mean()))


# The roster's bound. The door judges a face by its distance to each person's template (the mean of their enrolled
# photos, edge/identity/matcher.py), so the roster's impostor distances are from each person's template to every
# other person's photos. The smallest of them less NEAREST_MARGIN: no enrolled person may be taken for another. And
# a normal model of them: the threshold at which a stranger of this population comes within it of any of the
# roster's P templates with probability `target` per visit, so per comparison target / P. The roster's own spread
# is pooled with PRIOR_PAIRS pseudo-pairs of the model's measured spread, so two or three people (one to three
# pairs) cannot claim a narrow spread; the mean is the roster's own, less the visit shift. FALLBACK_IMPOSTOR_STD
# stands in for a model without a measured spread (the default model's, on the accuracy photos).
NEAREST_MARGIN = 0.02
PRIOR_PAIRS = 20
VISIT_LOOKS = 8  # the most embeddings a track fuses into its identity: tracking.fuse_frames' default (the door's own)
MEASURED = "the roster"  # RosterPoint.visit_shift_from for a shift measured on the roster's own photos
FALLBACK_IMPOSTOR_STD = 0.085
DEFAULT_STRANGER_FAR = 1e-4


@dataclass(frozen=True)
class RosterPoint:
    """What the enrolled roster says about the threshold: its bound and the evidence behind it."""

    threshold: float | None  # None: fewer than two people, the roster says nothing
    rule: str  # which bound is the tighter one
    people: int  # also the templates a stranger's visit is compared with
    photos: int
    impostor_pairs: int  # (template, another person's photo) pairs
    nearest_impostor: float | None
    impostor_mean: float | None  # a visit's: the pairs' mean less visit_shift
    impostor_std: float | None  # pooled with the prior
    target: float  # stranger false accepts per visit the normal model aims at
    visit_shift: float = 0.0  # how much closer a visit's fused identity comes to another's template than one photo
    visit_shift_from: str = MEASURED  # or predicted (one photo each: predicted_shift)
    photo_threshold: float | None = None  # the bound for one still photo (roster_point; matcher.photo_bound)

    def modelled_far(self, threshold: float) -> float | None:
        """The normal model's stranger false-accept rate per visit at a threshold (a model, not a measure)."""
        if self.impostor_mean is None or not self.impostor_std:
            return None
        per_comparison = NormalDist(self.impostor_mean, self.impostor_std).cdf(threshold)
        return 1.0 - (1.0 - per_comparison) ** max(self.people, 1)

    def as_dict(self, threshold: float) -> dict:
        body = {key: (round(value, 5) if isinstance(value, float) else value) for key, value in asdict(self).items()}
        far = self.modelled_far(threshold)
        return {**body, "modelled_stranger_far_per_visit": None if far is None else float(f"{far:.3g}")}


def similarity_distance(similarity):
    """The L2 distance between unit vectors from their cosine similarity (array or matrix), clipped to [0, 2]."""
    import numpy as np

    return np.sqrt(np.clip(2.0 - 2.0 * similarity, 0.0, 4.0))


def predicted_shift(impostor, genuine_similarity: float, looks: int = VISIT_LOOKS) -> float:
    """How much closer a visit comes to another person than one photo does, predicted where the roster cannot
    measure it (one photo per person). A visit's identity is the mean of `looks` embeddings of one face whose
    pairwise cosine similarity is `genuine_similarity` (the model's, measured on the accuracy photos: about 0.62;
    East Asian faces 0.69, which predicts a smaller shift, so the Western figure errs on the tight side): its norm
    before re-normalising is sqrt((1 + (looks - 1) g) / looks), so its similarity to anything the photos share with
    another person grows by that factor's inverse. Each impostor distance is moved as it would be and the mean
    difference returned. It is 0 where people share nothing (similarity 0: Western faces for FaceNet, about -0.02)
    and large where a population's faces share much (East Asian faces for FaceNet, 0.41: 0.09 at eight looks,
    against 0.05-0.06 measured for four photos). `looks` independent photos is more than a visit's correlated
    frames give: the tight side again."""
    import numpy as np

    distances = np.asarray(impostor, np.float64)
    if distances.size == 0:
        return 0.0
    grow = 1.0 / math.sqrt((1.0 + (looks - 1) * genuine_similarity) / looks)
    return max(0.0, float((distances - similarity_distance((1.0 - distances ** 2 / 2.0) * grow)).mean()))


def roster_point(impostor, photos: int, people: int, prior_std: float | None,
                 target: float = DEFAULT_STRANGER_FAR, visit_shift: float = 0.0,
                 visit_shift_from: str = MEASURED) -> RosterPoint:
    """The roster's bound from its impostor distances (each person's template to every other person's enrolled
    photos: matcher.template_impostors), `photos` enrolled photos of `people` people. visit_shift: how much closer a
    visit comes to another person's template than one photo does (the door decides on a track's identity fused from
    its frames, whose noise averages out); the normal model's mean moves in by it.

    photo_threshold, for one still photo: a photo is not a visit, so it is not held to a shift *predicted* for a visit's
    fused frames (one photo each: predicted_shift). A shift MEASURED on the roster (someone has two photos) is kept for
    photos too, on the tight side: per photo the normal model is optimistic for a population of look-alikes (East
    Asian faces, FaceNet, k = 3 per photo without it: 925 of 68,640 stranger photos accepted where the model aims at 1
    in 10,000; docs/accuracy.md)."""
    import numpy as np

    impostor = np.asarray(impostor, np.float64)
    if people < 2 or impostor.size == 0:
        return RosterPoint(None, "fewer than two people", people, photos, 0, None, None, None, target)
    prior = prior_std or FALLBACK_IMPOSTOR_STD
    n = int(impostor.size)
    spread = float(impostor.var(ddof=1)) if n > 1 else 0.0
    std = float(np.sqrt((PRIOR_PAIRS * prior ** 2 + (n - 1) * spread) / (PRIOR_PAIRS + n - 1)))
    mean, nearest = float(impostor.mean()) - visit_shift, float(impostor.min())
    tail = mean - NormalDist().inv_cdf(1.0 - target / people) * std
    bounds = {f"nearest impostor less {NEAREST_MARGIN}": nearest - NEAREST_MARGIN,
              f"normal model of {n} impostor distances at {target:g} per visit": tail}
    rule = min(bounds, key=lambda name: bounds[name])
    photo = min(nearest - NEAREST_MARGIN, tail if visit_shift_from == MEASURED else tail + visit_shift)
    return RosterPoint(_floor(bounds[rule]), rule, people, photos, n, nearest, mean, std, target, visit_shift,
                       visit_shift_from, _floor(photo))


def _floor(threshold: float) -> float:
    """A threshold as the bounds state it: rounded down to 0.001, so that it never loosens."""
    return float(math.floor(threshold * 1000) / 1000)


def learned_threshold(roster: RosterPoint | None, threshold: float, learned: int) -> float:
    """The radius within which a template learned at the door accepts a face. Each learned template is one more
    comparison a stranger's visit gets: under the roster's normal model of impostor distances (roster_point), keeping
    the strangers accepted per visit where they were takes the radius in by how much further into the impostor tail
    the model must go for `learned` more comparisons than the enrolled templates alone: (z(people + learned) -
    z(people)) impostor standard deviations. And a learned template is itself a visit's fused identity: the radius
    comes in by the roster's visit_shift once more (on the tight side: with photos as templates, East Asian
    fused-to-fused impostor distances lay 0.067 FaceNet / 0.072 MobileFaceNet nearer than fused-to-photo, and
    without it learning let 2 of 348 stranger visits in with the fused identity, bench.visits 20 rounds). The threshold
    itself (set on enrolled photos only) does not move; where the roster says nothing (one person), the learned
    templates get the threshold."""
    if roster is None or not roster.impostor_std or learned <= 0:
        return threshold
    people = max(roster.people, 1)
    z = NormalDist().inv_cdf
    tail = (z(1.0 - roster.target / (people + learned)) - z(1.0 - roster.target / people)) * roster.impostor_std
    return _floor(threshold - tail - roster.visit_shift)


# A site's own point (`facecheck calibrate FOLDER`): the site's people, photographed as the site photographs
# them, are the population the door serves, and their impostor distances say where its threshold lies. It can
# only tighten the model's point (site_point takes the smaller), never loosen it.


@dataclass(frozen=True)
class SitePoint:
    model_id: str
    threshold: float  # what the site's pairs allow: the smallest impostor distance less SAFETY, floored to 0.001
    model_threshold: float | None  # the model's measured point when calibrated
    people: int
    photos: int
    impostor_pairs: int
    genuine_pairs: int
    far_bound_95: float
    tar: float  # the site's genuine pairs accepted at min(threshold, model_threshold)
    impostor_min: float
    impostor_mean: float
    folder: str
    measured_at: str

    @property
    def in_force(self) -> float:
        """The threshold the matcher runs with this point: the tighter of it and the model's."""
        return self.threshold if self.model_threshold is None else min(self.threshold, self.model_threshold)

    def as_dict(self) -> dict:
        return {key: (round(value, 6) if isinstance(value, float) else value) for key, value in asdict(self).items()}


def site_point_from(model_id: str, distances, same, people: int, photos: int, folder: str, measured_at: str
                    ) -> SitePoint:
    """The site's point from its pairs (`same`: the pair shows one person); at least two people needed."""
    import numpy as np

    distances, same = np.asarray(distances, np.float64), np.asarray(same, bool)
    impostor, genuine = distances[~same], distances[same]
    if people < 2 or impostor.size == 0:
        raise ValueError("calibration needs photos of at least two people (one sub-folder each)")
    point = operating_point(model_id)
    site = SitePoint(model_id, _floor(float(impostor.min()) - SAFETY),
                     point.threshold if point else None, people, photos, int(impostor.size), int(genuine.size),
                     min(1.0, 3.0 / impostor.size), 0.0, float(impostor.min()), float(impostor.mean()), folder,
                     measured_at)
    return replace(site, tar=float((genuine <= site.in_force).mean()) if genuine.size else 0.0)


def save_site_point(point: SitePoint, path: Path) -> None:
    from edge.atomic import atomic_write

    text = json.dumps(point.as_dict(), indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: handle.write(text.encode()))


class SitePointError(ValueError):
    pass


def load_site_point(path: Path | None, model_id: str) -> SitePoint | None:
    """The site's point at path (None where there is no file). A point measured with another embedder says
    nothing about this one: an error naming the fix, never silently ignored."""
    if path is None or not path.is_file():
        return None
    try:
        point = SitePoint(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise SitePointError(f"{path}: not a site operating point ({exc}); run `facecheck calibrate FOLDER` again "
                             "or remove the file") from None
    if point.model_id != model_id:
        raise SitePointError(f"{path}: site point measured with {point.model_id!r}, the embedder is {model_id!r}: "
                             "run `facecheck calibrate FOLDER` again with this model, or remove the file")
    return point


def summary(threshold: float, origin: str, point: OperatingPoint | None, photos: int,
            roster: RosterPoint | None = None, site: SitePoint | None = None) -> dict:
    """What the health payload and doctor say about the threshold in force and what it buys."""
    measured = None
    if point is not None:
        measured = {"model_id": point.model_id, "threshold": point.threshold, "far_bound_95": point.far_bound_95,
                    "tar": round(point.tar, 4), "impostor_pairs": point.impostor_pairs,
                    "stranger_far_bound": round(point.stranger_far_bound(photos), 4), "roster_photos": photos}
    return {"threshold": round(threshold, 4), "threshold_origin": origin, "operating_point": measured,
            "site_point": None if site is None else site.as_dict(),
            "roster_point": None if roster is None else roster.as_dict(threshold)}


def load_points(path: Path = POINTS_FILE) -> dict[str, OperatingPoint]:
    if not path.is_file():
        return {}
    return {key: OperatingPoint(**value) for key, value in json.loads(path.read_text()).items()}


def operating_point(model_id: str) -> OperatingPoint | None:
    return load_points().get(model_id)


def save_points(points: dict[str, OperatingPoint], path: Path = POINTS_FILE) -> None:
    from edge.atomic import atomic_write

    text = json.dumps({key: points[key].as_dict() for key in sorted(points)}, indent=2) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))
