"""Recognition accuracy on real labelled photos (bench/datasets.py), so a preprocessing or model change that
hurts it fails CI. The figures behind the floors are in docs/accuracy.md."""

import pytest

from bench.accuracy import (
    detect_largest,
    door_protocol,
    embed_ours,
    joined_view,
    ours_identify,
    pair_distances,
    pair_metrics,
)
from bench.common import default_fused, default_model
from bench.datasets import DatasetMissing, labelled_photos
from edge.config import config_from_dict
from edge.identity.fusion import fusion_id
from edge.identity.operating import operating_point
from edge.inference.embedder import read_sidecar
from tests.conftest import ROOT

# The door's default identity (config.py: embedder.model fused with embedder.fuse_with, FaceNet + MobileFaceNet).
# Measured with it (docs/accuracy.md): AUC 0.998, 981 of 1160 door probes recognised at k=1. The floor on
# recognition keeps "refuse everybody" from passing as "no stranger accepted".
MIN_AUC = 0.99
MIN_RECOGNISED_K1 = 0.78
DEFAULT_PARTS = (default_model(), *default_fused())


def default_identity(photos, pad: bool = False):
    """(each part's View, the default identity's View joined from them, its model id) over the photos."""
    for part in DEFAULT_PARTS:
        if not part.is_file():
            pytest.fail(f"{part} is missing: run scripts/bootstrap")
    detections = detect_largest(photos, pad=pad)
    augmentations = config_from_dict({}, ROOT).matcher.augmentations
    views = {part: embed_ours(part, detections, augmentations=augmentations) for part in DEFAULT_PARTS}
    model_id = fusion_id([read_sidecar(part, verify_hash=False)["model_id"] for part in DEFAULT_PARTS])
    return views, joined_view(DEFAULT_PARTS, views), model_id


@pytest.fixture(scope="module")
def measured():
    try:
        photos = labelled_photos()
    except DatasetMissing as exc:
        pytest.fail(str(exc))
    _, view, model_id = default_identity(photos)
    return photos, view, model_id


def test_the_data_is_real_and_labelled(measured):
    photos, view, _ = measured
    people = {p.person for p in photos}
    assert len(photos) >= 120 and len(people) >= 9
    assert sum(v is not None for v in view.vectors) >= 0.95 * len(photos), "the detector lost faces it used to find"


def test_default_model_separates_people(measured):
    photos, view, _ = measured
    metrics = pair_metrics(view, photos)
    assert metrics["auc"] >= MIN_AUC, metrics["auc"]
    assert metrics["impostor_pairs"] > 5000 and metrics["genuine_pairs"] > 1000


def test_shipped_operating_point_accepts_no_measured_impostor(measured):
    photos, view, model_id = measured
    point = operating_point(model_id)
    assert point is not None, f"no operating point for {model_id}: python -m bench.accuracy --write-operating-points"
    dist, same = pair_distances(view, photos)
    assert float(dist[~same].min()) > point.threshold, "an impostor pair now falls within the shipped threshold"
    assert float((dist[same] <= point.threshold).mean()) >= 0.75


def test_door_protocol_one_photo_each_names_nobody_wrongly(measured):
    photos, view, model_id = measured
    point = operating_point(model_id)
    counts = door_protocol(view, photos, 1, lambda v, p, e: ours_identify(v, p, e, point.threshold))
    assert counts["rounds"] == 20
    assert counts["strangers_accepted"] == 0, counts
    assert counts["wrong_person"] == 0, counts
    assert counts["recognised"] / counts["genuine_probes"] >= MIN_RECOGNISED_K1, counts



# East Asian faces (faces-east-asian in the shared data folder; docs/accuracy.md). FaceNet alone separates these
# people far less well (AUC 0.941 against 0.996; the default identity 0.959). Per photo the floors below hold what
# the default identity and the roster's bound bought (2026-12-04): at k = 1 (a photo judged without the visit shift
# predicted for a track) 42.2 % recognised, 22 of 19,734 named wrongly, 0.84 % of stranger photos accepted (FaceNet
# alone before the default fused it: 40.0 %, 49, 1.81 %); at k = 3 (each person's template, the shift measured)
# 41.7 %, 0 wrong, 0.24 % of strangers. A change that lets more strangers in, names more people wrongly, or stops
# recognising fails CI (at k = 3 one probe of 18,018 named wrongly is let through: int8 kernels move distances a
# little between hosts).
EA_MIN_AUC = 0.95
EA_MAX_STRANGER_RATE = {1: 0.011, 3: 0.004}
EA_MAX_WRONG_RATE = {1: 0.0015, 3: 0.0001}
EA_MIN_RECOGNISED = {1: 0.40, 3: 0.39}


@pytest.fixture(scope="module")
def east_asian():
    """(photos, each part's View, the default identity's View, its model id)."""
    from bench.datasets import east_asian_photos

    try:
        photos = east_asian_photos()
    except DatasetMissing as exc:
        pytest.skip(f"East Asian regression skipped: {exc}")
    return (photos, *default_identity(photos, pad=True))


def test_east_asian_faces_are_found_and_separated(east_asian):
    photos, _, view, _ = east_asian
    assert len(photos) == 312 and sum(v is not None for v in view.vectors) >= 300
    assert pair_metrics(view, photos)["auc"] >= EA_MIN_AUC


@pytest.mark.parametrize("k", [1, 3])
def test_east_asian_door_protocol_at_the_shipped_point_bounded_by_the_roster(east_asian, k):
    photos, _, view, model_id = east_asian
    point = operating_point(model_id)
    counts = door_protocol(view, photos, k, lambda v, p, e: ours_identify(v, p, e, point.threshold))
    assert counts["rounds"] == 286
    assert counts["strangers_accepted"] / counts["stranger_probes"] <= EA_MAX_STRANGER_RATE[k], counts
    assert counts["wrong_person"] / counts["genuine_probes"] <= EA_MAX_WRONG_RATE[k], counts
    assert counts["recognised"] / counts["genuine_probes"] >= EA_MIN_RECOGNISED[k], counts


@pytest.mark.parametrize("population", ["western", "east asian"])
def test_per_visit_learning_names_nobody_wrongly_and_never_learns_from_a_stranger(population, tmp_path):
    """One round of the per-visit stream (bench/visits.py: 7 people enrolled with 5 photos, 7 strangers, two visits
    each, one time order), replayed with learning from visits off and on through the door's own pipeline and the
    default identity: nobody named wrongly either way, no template learned from a stranger or under someone else's
    name, learning recognises at least as many visits, and no stranger is checked in (docs/accuracy.md)."""
    import numpy as np

    from bench import visits
    from bench.datasets import east_asian_photos

    try:
        photos = labelled_photos() if population == "western" else east_asian_photos()
    except DatasetMissing as exc:
        if population == "western":
            pytest.fail(str(exc))
        pytest.skip(f"East Asian per-visit check skipped: {exc}")
    by_person: dict = {}
    for photo in photos:
        by_person.setdefault(photo.person, []).append(photo.path)
    counts = visits.one_round(DEFAULT_PARTS, by_person, visits.face_crops(photos), 5, np.random.default_rng(31),
                              tmp_path, max_visits=2)
    off, on = counts["off"], counts["on"]
    assert off["visits"] >= 10 and off["stranger_visits"] >= 1, off
    assert off["named_wrongly"] == on["named_wrongly"] == 0, counts
    assert on["learned_from_strangers"] == on["learned_as_someone_else"] == 0, on
    assert on["templates_learned"] >= 1 and off["templates_learned"] == 0, counts
    assert on["recognised_within_2s"] >= off["recognised_within_2s"], counts
    assert off["strangers_checked_in"] == on["strangers_checked_in"] == 0, counts


# Stranger visits by the thousand at the matcher (bench/visits.py: at_scale): each visit's identity the mean of four
# photos' embeddings, the product's matcher (each person's template, the mean of their enrolled photos) and threshold
# with the roster's bound modelling a visit, learning off and on. 400 rounds (2026-12-03), learning off: FaceNet
# 67.9 % recognised, 0 wrong, 6 of 13,479 strangers (0.045 %); MobileFaceNet 76.7 %, 0 wrong, 3 (0.022 %); fused
# 84.5 %, 0 wrong, 12 (0.089 %: at the bar of 0.1 %, 4 of 3,356 in the first 100 rounds run here); learning
# on: 17, 5 and 37. The floors hold the bar with learning off for each model alone, the fusion at most half again
# over it (where it is measured to sit), and the recognition bought.
EA_SCALE_ROUNDS = 100
FUSED = "facenet-keras-int8full+mobilefacenet-float32"
EA_SCALE_FLOORS = {"facenet-keras-int8full": 0.60, "mobilefacenet-float32": 0.70, FUSED: 0.78}
EA_SCALE_STRANGERS = {"facenet-keras-int8full": 0.001, "mobilefacenet-float32": 0.001, FUSED: 0.0015}


@pytest.mark.parametrize("system", sorted(EA_SCALE_FLOORS))
def test_east_asian_stranger_visits_at_the_matcher_stay_under_the_bar(east_asian, system):
    from bench.visits import at_scale

    photos, views, _, _ = east_asian
    by_stem = {part.stem: part for part in views}
    parts = tuple(by_stem[stem] for stem in system.split("+"))
    both = at_scale(parts, photos, views, 5, EA_SCALE_ROUNDS)
    off, on = both["off"], both["on"]
    assert off["stranger_visits"] > 3000 and off["visits"] > 2500, off
    assert off["named_wrongly"] == on["named_wrongly"] == 0, both
    assert off["strangers_accepted"] / off["stranger_visits"] <= EA_SCALE_STRANGERS[system], off  # learning off
    assert off["recognised"] / off["visits"] >= EA_SCALE_FLOORS[system], off
    # learning lets more strangers in (about three times: why it is off by default); it must stay within 0.5 %
    assert on["strangers_accepted"] / on["stranger_visits"] <= 0.005 and on["recognised"] >= off["recognised"], both
