"""Identity from an embedding, with open-set rejection: a stranger is `unknown`, never somebody else.

Two matchers share one rule for `known`: the chosen person's template (the unit mean of their enrolled photos'
embeddings, person_templates) must lie within the distance threshold. The SVC (the seed's recipe) chooses among a
small roster; the nearest-neighbour matcher chooses by distance and stays fast at 100k identities.

The threshold depends on what is judged. The door judges visits: a track's identity fused from its frames comes
nearer other people's templates than any one photo (the roster's visit shift), so `threshold` is the visit's
bound. A still photo (`facecheck identify`, the identify command, a snapshot) is one look: `photo_threshold` is
not held to a shift that was only predicted for a visit (one photo each; operating.roster_point says why a
measured one is kept). A query is a visit unless the caller says it is one photo.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edge.identity.gallery import Gallery
from edge.identity.operating import VISIT_LOOKS, RosterPoint, SitePoint, learned_threshold, similarity_distance
from edge.identity.search import CANDIDATES, COMPACT_FROM, build_search
from edge.identity.svc import LinearOvo, fit_in_child

log = logging.getLogger(__name__)

# Used only for a model without a measured operating point (edge/identity/operating.py): strict, so
# a stranger is refused rather than named. Enrolment-time calibration may lower a threshold by at most
# MAX_TIGHTENING, never raise it.
FALLBACK_THRESHOLD = 0.8
MAX_TIGHTENING = 0.2
CALIBRATION_SAMPLE = 2000
SVC_SAMPLES_PER_PERSON = 42


@dataclass(frozen=True)
class Match:
    known: bool
    person_id: str | None
    name: str | None
    score: float  # cosine similarity to the chosen person's enrolled template, in [0, 1]
    distance: float  # L2 distance to the chosen person's enrolled template (or a learned one, scaled)

    def as_dict(self) -> dict:
        return {"known": self.known, "person_id": self.person_id, "name": self.name,
                "score": round(self.score, 4), "distance": round(self.distance, 4)}


UNKNOWN_EMPTY = Match(False, None, None, 0.0, 2.0)

# A face this much closer to its best person than to the next one is not told apart from the next
# one (look-alikes, twins): it is unknown rather than a coin toss between two people.
DEFAULT_AMBIGUITY_MARGIN = 0.05


@dataclass(frozen=True)
class Candidate:
    person_id: str
    name: str
    distance: float  # to the person's enrolled template (or a learned one, scaled)


class Matcher(Protocol):
    kind: str
    threshold: float  # a visit's (a track's fused identity)
    photo_threshold: float  # one still photo's (photo_bound)
    threshold_origin: str
    ambiguity_margin: float
    roster: RosterPoint | None  # the enrolled roster's own bound on the threshold, where it has one
    site: SitePoint | None  # the site's own operating point (facecheck calibrate), where one was measured
    learned_threshold: float  # the radius a template learned at the door accepts within (operating.learned_threshold)
    gallery: Gallery

    def match(self, embedding: np.ndarray, photo: bool = False) -> Match: ...

    def candidates(self, embedding: np.ndarray, k: int = 3) -> list[Candidate]: ...

    def enrolled_distances(self, embedding: np.ndarray) -> np.ndarray: ...

    def templates_changed(self) -> None: ...


def _sample(gallery: Gallery) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, labels) of the roster's original (non-augmented) photos, at most CALIBRATION_SAMPLE of them: every
    photo of people picked at random (a fixed draw, so a 100k roster calibrates in milliseconds; whole people, so each
    one's template is the one the door matches against)."""
    originals = _originals(gallery)
    rows = np.flatnonzero(originals)
    if len(rows) > CALIBRATION_SAMPLE:
        counts = np.bincount(gallery.labels[rows], minlength=gallery.people)
        order = np.random.default_rng(0).permutation(gallery.people)
        taken = order[: max(1, int(np.searchsorted(np.cumsum(counts[order]), CALIBRATION_SAMPLE, side="right")))]
        picked = np.zeros(gallery.people, bool)
        picked[taken] = True
        rows = rows[picked[gallery.labels[rows]]]
    return gallery.embeddings[rows], gallery.labels[rows]


def _pairwise(gallery: Gallery) -> tuple[np.ndarray, np.ndarray]:
    """(distances, same person) between the photos of _sample."""
    emb, labels = _sample(gallery)
    return similarity_distance(emb @ emb.T), labels[:, None] == labels[None, :]


def person_templates(embeddings: np.ndarray, labels: np.ndarray, people: int) -> np.ndarray:
    """Each person's template: the unit mean of their rows (people x dim, float32; zeros for a person without any).
    Averaging a person's photos averages each photo's noise (pose, light, expression) away and leaves what the
    photos share; a visit, itself the mean of its frames, is judged against that (docs/accuracy.md: with five
    photos each, East Asian visits at the matcher recognised 34 -> 68 % for FaceNet, with no more strangers)."""
    sums = np.zeros((people, embeddings.shape[1]), np.float32)
    if len(labels):
        order = np.argsort(labels, kind="stable")
        starts = np.searchsorted(labels[order], np.arange(people))
        present = np.bincount(labels, minlength=people) > 0
        sums[present] = np.add.reduceat(embeddings[order].astype(np.float32), starts[present])
    return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)


def _template_distances(templates: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Distance from the query to every template (2, the farthest, for a person without one)."""
    sims = templates @ query
    sims[~templates.any(axis=1)] = -1.0
    return similarity_distance(sims)


def template_impostors(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float | None]:
    """(impostor distances, visit shift) of photos `emb` of people `labels` (a roster's _sample, a site's photos):
    from each person's template to every photo of every other person (a pair of two people with one photo each
    counted once: it is one distance seen from both sides), and how much closer a visit comes to another person's
    template than one photo does.

    The shift: for each person with two or more photos, their photos fused (as a track fuses its frames) against
    everybody else's template, beside those photos one by one; the mean over people. Fusing averages a face's noise
    away, so a stranger's visit lies nearer the roster than a single photo of them (East Asian faces: 0.08 for five
    photos fused, docs/accuracy.md), and a bound modelled on single photos lets in tens of times the strangers it
    aims at. All of a person's enrolled photos are fused, more than a visit's frames vary, so the shift errs on the
    tight side. None when nobody has two photos (nothing on the roster to measure it by: visit_impostors predicts it)."""
    if len(labels) == 0:
        return np.zeros(0), None
    people, index = np.unique(labels, return_inverse=True)
    templates = person_templates(emb, index, len(people))
    to_photos = similarity_distance(templates @ emb.T)  # template of row's person -> photo
    counts = np.bincount(index, minlength=len(people))
    single = counts == 1
    person = np.arange(len(people))[:, None]
    other = person != index[None, :]
    once = ~(single[:, None] & single[index][None, :] & (person > index[None, :]))
    impostor = to_photos[other & once]
    between = similarity_distance(templates @ templates.T)
    shifts = []
    for fused in np.flatnonzero(counts >= 2) if len(people) >= 2 else []:
        mine = index == fused
        others = np.arange(len(people)) != fused
        shifts.append(float((to_photos[np.ix_(others, mine)].mean(axis=1) - between[others, fused]).mean()))
    return impostor, max(0.0, float(np.mean(shifts))) if shifts else None


def calibrate_threshold(gallery: Gallery, ceiling: float) -> float:
    """The ceiling, tightened when this roster's own people come closer to each other than it allows.

    Halfway between how far a person's photos lie from each other and how close other people come, over
    the roster's original embeddings (_pairwise). Never above the ceiling (the measured operating point),
    never more than MAX_TIGHTENING below it; the ceiling itself without two people to compare.
    """
    dist, same = _pairwise(gallery)
    if gallery.people < 2 or len(dist) < 3:
        return ceiling
    dist = dist.copy()
    np.fill_diagonal(dist, np.inf)
    inter = np.where(same, np.inf, dist).min(axis=1)
    intra_rows = np.where(same, dist, np.inf).min(axis=1)
    intra = intra_rows[np.isfinite(intra_rows)]
    high = float(np.percentile(inter, 5))
    midpoint = (float(np.percentile(intra, 90)) + high) / 2.0 if intra.size else high
    return float(min(ceiling, max(ceiling - MAX_TIGHTENING, midpoint)))


def visit_impostors(emb: np.ndarray, labels: np.ndarray, model_id: str, looks: int = VISIT_LOOKS
                    ) -> tuple[np.ndarray, float, str]:
    """(impostor distances, visit shift, where the shift comes from): template_impostors, the shift measured on the
    roster where someone has two photos, else predicted from the model's genuine similarity for a visit of `looks`
    embeddings (operating.predicted_shift; tracking.fuse_frames): one photo each does not make a stranger's visit any
    less fused."""
    from edge.identity.operating import MEASURED, operating_point, predicted_shift

    impostor, shift = template_impostors(emb, labels)
    if shift is not None:
        return impostor, shift, MEASURED
    point = operating_point(model_id)
    if point is not None and point.genuine_similarity is not None:
        return impostor, predicted_shift(impostor, point.genuine_similarity, looks), "predicted (one photo each)"
    return impostor, 0.0, "none (one photo each; no genuine similarity measured for this model)"


def roster_evidence(gallery: Gallery, target: float, looks: int = VISIT_LOOKS):
    """The roster's own bound on the threshold (edge/identity/operating.py: roster_point), from its templates and
    the visit shift (visit_impostors)."""
    from edge.identity.operating import operating_point, roster_point

    impostor, shift, shift_from = visit_impostors(*_sample(gallery), gallery.model_id, looks)
    point = operating_point(gallery.model_id)
    return roster_point(impostor, int(gallery.original.sum()), gallery.people,
                        point.impostor_std if point else None, target, shift, shift_from)


def bounded_threshold(gallery: Gallery, ceiling: float, target: float, looks: int = VISIT_LOOKS):
    """(threshold, calibrated, roster evidence): the ceiling tightened by calibration and by the roster's own
    bound (a visit of `looks` embeddings)."""
    calibrated = calibrate_threshold(gallery, ceiling)
    roster = roster_evidence(gallery, target, looks)
    return min(calibrated, roster.threshold if roster.threshold is not None else calibrated), calibrated, roster


def photo_bound(threshold: float, calibrated: float, roster: RosterPoint | None) -> float:
    """The threshold for one still photo, from a visit's (bounded_threshold's threshold, calibrated, roster): the same
    bounds with the roster's photo bound (operating.roster_point) in place of its visit bound; the visit's where the
    roster says nothing or the threshold was configured."""
    if roster is None or roster.photo_threshold is None:
        return threshold
    return max(threshold, min(calibrated, roster.photo_threshold))


def resolve(gallery: Gallery, configured: float | None, target: float | None = None, site: SitePoint | None = None,
            looks: int = VISIT_LOOKS):
    """(a visit's distance threshold, where it came from, the roster's evidence or None, one photo's threshold): the
    config's number (for both), else the model's measured operating point (or the site's own, `facecheck calibrate`,
    where it is tighter), tightened by calibration and by the roster's own bound (never loosened), else a strict
    fallback (tightened likewise). target: strangers accepted per decision the roster's bound aims at; looks: the
    embeddings a track fuses into a visit's identity (tracking.fuse_frames)."""
    from edge.identity.operating import DEFAULT_STRANGER_FAR, operating_point

    if configured is not None:
        return configured, "config matcher.distance_threshold", None, configured
    point = operating_point(gallery.model_id)
    ceiling = point.threshold if point else FALLBACK_THRESHOLD
    origin = "operating point" if point else "fallback (no operating point measured for this model)"
    if site is not None and site.threshold < ceiling:
        ceiling = site.threshold
        origin = f"site operating point ({site.people} people, {site.impostor_pairs} impostor pairs; tighter than the {origin})"
    threshold, calibrated, roster = bounded_threshold(gallery, ceiling,
                                                      DEFAULT_STRANGER_FAR if target is None else target, looks)
    if threshold < calibrated:
        origin += f", tightened by this roster ({roster.rule})"
    elif threshold < ceiling:
        origin += ", tightened by this roster"
    return threshold, origin, roster, photo_bound(threshold, calibrated, roster)


def _originals(gallery: Gallery) -> np.ndarray:
    """Mask of the photos' own embeddings (augmented variants excluded); every row for a gallery that
    marks none as original."""
    return gallery.original if gallery.original.any() else np.ones(len(gallery.labels), bool)


def enrolled_templates(gallery: Gallery) -> np.ndarray:
    """Each person's template from their enrolled photos' own embeddings (person_templates; augmented variants and
    learned templates left out)."""
    originals = _originals(gallery)
    return person_templates(gallery.embeddings[originals], gallery.labels[originals], gallery.people)


def _person_blocks(embeddings: np.ndarray, labels: np.ndarray, people: int) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings grouped by person, each person's start and end row)."""
    order = np.argsort(labels, kind="stable")
    return embeddings[order], np.searchsorted(labels[order], np.arange(people + 1))


def _block_distances(blocks: tuple[np.ndarray, np.ndarray], query: np.ndarray, people: int) -> np.ndarray:
    """Distance from the query to each person's nearest row of their block (2, the farthest, for an empty one)."""
    ordered, bounds = blocks
    sims = ordered @ query
    starts = bounds[:-1]
    best = np.full(people, -1.0, np.float32)
    filled = starts < bounds[1:]
    if filled.any():
        best[filled] = np.maximum.reduceat(sims, starts[filled])
    return similarity_distance(best)


class _Base:
    kind = "base"

    def __init__(self, gallery: Gallery, threshold: float | None, ambiguity_margin: float = DEFAULT_AMBIGUITY_MARGIN,
                 stranger_far: float | None = None, site: SitePoint | None = None, learned_per_person: int = 0,
                 visit_looks: int = VISIT_LOOKS):
        """learned_per_person: templates a person may learn at the door (adaptation.max_per_person), which sets the
        radius learned templates accept within (learned_threshold); visit_looks: the embeddings a track fuses into a
        visit's identity (tracking.fuse_frames), which the roster's predicted visit shift assumes."""
        self.gallery = gallery
        self.ambiguity_margin = ambiguity_margin
        self.site = site
        self.threshold, self.threshold_origin, self.roster, self.photo_threshold = resolve(
            gallery, threshold, stranger_far, site, visit_looks)
        self.learned_threshold = learned_threshold(self.roster, self.threshold, gallery.people * learned_per_person)
        self._templates: np.ndarray | None = None
        self._learned: tuple[np.ndarray, np.ndarray] | tuple[()] | None = None

    def _enrolled(self) -> np.ndarray:
        """The people's enrolled templates for the open-set check, built on first use (enrolled_templates; augmented
        variants left out: they widen a person's region and would let look-alikes in)."""
        if self._templates is None:
            self._templates = enrolled_templates(self.gallery)
        return self._templates

    def enrolled_distances(self, embedding: np.ndarray) -> np.ndarray:
        """Distance from the embedding to every person's enrolled template (learned templates left out: what a visit
        is judged against before the door may learn from it)."""
        return _template_distances(self._enrolled(), np.asarray(embedding, np.float32))

    def _learned_blocks(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The same over the templates learned at the door; None without any."""
        if self._learned is None:
            learned, labels = self.gallery.adapted_templates()
            self._learned = _person_blocks(learned, labels, self.gallery.people) if len(labels) else ()
        return self._learned or None

    @property
    def learned_scale(self) -> float:
        """A learned template's distance times this is what counts: it accepts a face only within
        learned_threshold, the tighter radius its extra comparisons call for (operating.learned_threshold)."""
        return self.threshold / self.learned_threshold if self.learned_threshold > 0 else float("inf")

    def templates_changed(self) -> None:
        """The gallery gained or lost templates learned at the door: match against them from the next face on. The
        threshold stays (it is set on enrolled photos only) and so does the SVC (trained on them)."""
        self._learned = None

    def _person_distances(self, embedding: np.ndarray) -> np.ndarray:
        """Distance from the embedding to every person: to their enrolled template, or to their nearest learned
        template times learned_scale, whichever is less."""
        query = embedding.astype(np.float32, copy=False)
        distances = _template_distances(self._enrolled(), query)
        learned = self._learned_blocks()
        if learned is not None:
            distances = np.minimum(distances, _block_distances(learned, query, self.gallery.people) * self.learned_scale)
        return distances

    def candidates(self, embedding: np.ndarray, k: int = 3) -> list[Candidate]:
        """The k nearest people, nearest first (for --explain)."""
        if self.gallery.people == 0:
            return []
        distances = self._person_distances(embedding)
        order = np.argsort(distances, kind="stable")[:k]
        return [Candidate(self.gallery.person_ids[i], self.gallery.names[i], round(float(distances[i]), 4))
                for i in order]

    def _runner_up(self, person: int, distances: np.ndarray) -> float:
        """The nearest other person, from the distances to every person (_person_distances)."""
        others = np.delete(distances, person)
        return float(others.min()) if len(others) else float("inf")

    def _result(self, person: int, score: float, distance: float, evidence: Any, photo: bool) -> Match:
        """evidence: what _runner_up needs (the distances to every person; the nearest matcher's candidates); photo:
        the query is one still photo, judged by photo_threshold (else a visit, by threshold)."""
        known = distance <= (self.photo_threshold if photo else self.threshold) and (
            self.ambiguity_margin <= 0 or self._runner_up(person, evidence) - distance >= self.ambiguity_margin)
        return Match(known, self.gallery.person_ids[person] if known else None,
                     self.gallery.names[person] if known else None, float(score), float(distance))


class NearestMatcher(_Base):
    """Nearest neighbour over the people's enrolled templates (and learned ones): exact for small rosters, compact
    codes with exact re-scoring for big ones (edge/identity/search.py)."""

    kind = "nearest"

    def __init__(self, gallery: Gallery, threshold: float | None = None,
                 ambiguity_margin: float = DEFAULT_AMBIGUITY_MARGIN, stranger_far: float | None = None,
                 site: SitePoint | None = None, learned_per_person: int = 0, compact_from: int = COMPACT_FROM,
                 visit_looks: int = VISIT_LOOKS):
        super().__init__(gallery, threshold, ambiguity_margin, stranger_far, site, learned_per_person, visit_looks)
        self.compact_from = compact_from
        self._index()

    def _index(self) -> None:
        """The search over the enrolled templates and, after them, the learned templates (rows from _enrolled_rows
        on)."""
        gallery = self.gallery
        mask = _originals(gallery)
        learned, learned_labels = gallery.adapted_templates()
        self._enrolled_rows = gallery.people  # one template per person
        if not len(learned_labels) and np.array_equal(np.bincount(gallery.labels[mask], minlength=gallery.people),
                                                      np.ones(gallery.people, np.int64)):
            # one photo each (a big roster's common case): the photo is the template; read the gallery's own array
            # in place (no copy of a 100k roster)
            self._labels = gallery.labels[mask]
            self.search = build_search(gallery.embeddings, np.nonzero(mask)[0], self.compact_from)
            return
        embeddings = np.concatenate([self._enrolled(), learned]) if len(learned_labels) else self._enrolled()
        self._labels = np.concatenate([np.arange(gallery.people, dtype=gallery.labels.dtype), learned_labels])
        self.search = build_search(embeddings, np.arange(len(embeddings)), self.compact_from)

    def templates_changed(self) -> None:
        super().templates_changed()
        self._index()

    def _found(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, distances) of the k best candidates, nearest first, a learned template's distance scaled."""
        rows, sims = self.search.top(query, k)
        distances = similarity_distance(sims.astype(np.float64))
        distances = np.where(rows >= self._enrolled_rows, distances * self.learned_scale, distances)
        order = np.argsort(distances, kind="stable")
        return rows[order], distances[order]

    def match(self, embedding: np.ndarray, photo: bool = False) -> Match:
        if len(self._labels) == 0:
            return UNKNOWN_EMPTY
        query = embedding.astype(np.float32, copy=False)
        rows, distances = self._found(query, CANDIDATES)
        person, distance = int(self._labels[rows[0]]), float(distances[0])
        return self._result(person, max(0.0, 1.0 - distance * distance / 2.0), distance, (query, rows, distances),
                            photo)

    def _runner_up(self, person: int, evidence) -> float:
        """The nearest other person among the candidates already found, looking further only when every
        candidate is the chosen person (someone enrolled with many photos)."""
        query, rows, distances = evidence
        while True:
            others = distances[self._labels[rows] != person]
            if len(others):
                return float(others.min())
            if len(rows) >= len(self._labels):
                return float("inf")
            rows, distances = self._found(query, 4 * len(rows))


class SvcMatcher(_Base):
    """The seed's classifier: a linear SVC over (augmented) embeddings, retrained at load, never unpickled.

    Trained without Platt scaling (probability=True costs five extra fits: 4.3 s instead of 0.8 s
    for 150 people here) and on at most SVC_SAMPLES_PER_PERSON embeddings per person, so a reload
    stays in seconds; trained in a child process so scikit-learn never stays in the door's memory
    (edge/identity/svc.py). The SVC chooses the person; the open-set distance check decides `known`.
    """

    kind = "svc"

    def __init__(self, gallery: Gallery, threshold: float | None = None,
                 ambiguity_margin: float = DEFAULT_AMBIGUITY_MARGIN, stranger_far: float | None = None,
                 site: SitePoint | None = None, fit: Callable[[np.ndarray, np.ndarray], LinearOvo] = fit_in_child,
                 learned_per_person: int = 0, visit_looks: int = VISIT_LOOKS):
        super().__init__(gallery, threshold, ambiguity_margin, stranger_far, site, learned_per_person, visit_looks)
        if gallery.people < 2:
            raise ValueError("the SVC needs at least two enrolled people")
        keep = _per_person_subset(gallery, SVC_SAMPLES_PER_PERSON)
        started = time.monotonic()
        self._svc = fit(gallery.embeddings[keep], gallery.labels[keep])
        log.info("SVC trained on %d embeddings of %d people in %.1fs", int(keep.sum()), gallery.people,
                 time.monotonic() - started)

    def match(self, embedding: np.ndarray, photo: bool = False) -> Match:
        person = self._svc.predict(embedding)
        distances = self._person_distances(embedding)  # once: the chosen person's and the runner-up's
        distance = float(distances[person])
        return self._result(person, max(0.0, 1.0 - distance * distance / 2.0), distance, distances, photo)


def _per_person_subset(gallery: Gallery, limit: int) -> np.ndarray:
    """Mask keeping every original embedding and augmented ones up to `limit` per person."""
    keep = gallery.original.copy()
    rng = np.random.default_rng(0)
    for person in range(gallery.people):
        augmented = np.nonzero((gallery.labels == person) & ~gallery.original)[0]
        room = max(0, limit - int(((gallery.labels == person) & gallery.original).sum()))
        keep[rng.permutation(augmented)[:room]] = True
    return keep


def build_matcher(gallery: Gallery, kind: str = "auto", threshold: float | None = None,
                  svc_max_identities: int = 2000, ambiguity_margin: float = DEFAULT_AMBIGUITY_MARGIN,
                  stranger_far: float | None = None, site: SitePoint | None = None,
                  svc_fit: Callable[[np.ndarray, np.ndarray], LinearOvo] = fit_in_child,
                  learned_per_person: int = 0, visit_looks: int = VISIT_LOOKS) -> Matcher:
    """The configured matcher; `auto` uses the SVC for 2..svc_max_identities people, else nearest.
    svc_fit: where the SVC trains (a child process; a benchmark that builds hundreds of rosters trains here)."""
    if kind == "svc" and gallery.people < 2:
        log.warning("matcher.kind svc needs two or more people (roster has %d); using nearest", gallery.people)
        kind = "nearest"
    if kind == "auto":
        kind = "svc" if 2 <= gallery.people <= svc_max_identities else "nearest"
    matcher: Matcher = (
        SvcMatcher(gallery, threshold, ambiguity_margin, stranger_far, site, svc_fit, learned_per_person, visit_looks)
        if kind == "svc"
        else NearestMatcher(gallery, threshold, ambiguity_margin, stranger_far, site, learned_per_person,
                            visit_looks=visit_looks))
    log.info("matcher %s over %d people, distance threshold %.3f per visit, %.3f per photo (%s)", matcher.kind,
             gallery.people, matcher.threshold, matcher.photo_threshold, matcher.threshold_origin)
    return matcher
