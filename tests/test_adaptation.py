"""Learning from confirmed visits: the guards, what a learned template may and may not change, and that a look-alike
who keeps coming is never absorbed. Embeddings are the real FaceNet's of the shipped sample photos."""

import json

import numpy as np
import pytest

from edge.cli.demo import ENROL
from edge.config import AdaptationConfig, config_from_dict
from edge.events import Decision
from edge.identity.gallery import Gallery, GalleryFile
from edge.identity.matcher import NearestMatcher
from edge.recognition.adaptation import learn, refusal
from edge.recognition.enroll import enrol
from edge.samples import sample
from edge.service.assembly import build_identifier
from tests.conftest import embed_photo, enrol_obama_and_biden, run_cli, write_yaml

LIVE = {"liveness": {"verdict": "live"}, "track_id": 7}


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, facenet_model):
    """(gallery with Obama and Biden from the sample photos, identifier, embeddings of other real photos)."""
    root = tmp_path_factory.mktemp("adaptation")
    config = config_from_dict({"models": {"dir": str(facenet_model.parent)},
                               "embedder": {"model": str(facenet_model), "fuse_with": []},
                               "matcher": {"gallery": str(root / "g.npz")}},
                              base_dir=root)
    identifier = build_identifier(config, with_matcher=False)
    for name, photos in ENROL.items():
        enrol(identifier, GalleryFile.from_config(config), name, [sample(p) for p in photos], None, 4)
    others = {p: embed_photo(identifier, p) for p in ("obama-3.jpg", "obama-partial.jpg", "collins-1.jpg",
                                                       "cameraman.jpg")}
    return GalleryFile.from_config(config).load(), others


def fresh(enrolled) -> NearestMatcher:
    gallery, _ = enrolled
    return NearestMatcher(Gallery.from_bytes(gallery.to_bytes(), "copy"))


def check_in(matcher, name: str, **extra) -> Decision:
    gallery = matcher.gallery
    return Decision("check_in", gallery.person_ids[gallery.names.index(name)], name, 0.9, None, {**LIVE, **extra})


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_each_guard_refuses_with_its_reason(enrolled):
    matcher = fresh(enrolled)
    _, others = enrolled
    config = AdaptationConfig(enabled=True)
    obama = others["obama-3.jpg"]

    def why(decision, vector=obama, quality=0.9, frames=20, liveness_on=True, cfg=config):
        return refusal(cfg, matcher, decision, vector, quality, frames, liveness_on)[0]

    assert why(check_in(matcher, "Barack Obama")) is None
    assert "not a check-in" in why(Decision("rejected", matcher.gallery.person_ids[0], "Barack Obama", extra=LIVE))
    assert "liveness verdict 'spoof'" in why(check_in(matcher, "Barack Obama", liveness={"verdict": "spoof"}))
    assert why(check_in(matcher, "Barack Obama", liveness={"verdict": "spoof"}), liveness_on=False) is None
    assert "without a confirming gesture" in why(check_in(matcher, "Barack Obama"), frames=3)
    gestured = Decision("check_in", matcher.gallery.person_ids[0], "Barack Obama", 0.9, "confirm", LIVE)
    assert why(gestured, frames=3) is None
    assert "min_quality" in why(check_in(matcher, "Barack Obama"), quality=0.2)
    assert "from the enrolled template" in why(check_in(matcher, "Barack Obama"), vector=others["collins-1.jpg"])
    assert "next person" in why(check_in(matcher, "Barack Obama"), cfg=AdaptationConfig(enabled=True, min_margin=1.9))
    own_photo = matcher.gallery.embeddings[matcher.gallery.original & (matcher.gallery.labels == 0)][0]
    assert "nothing new" in why(check_in(matcher, "Barack Obama"), vector=own_photo)
    assert why(check_in(matcher, "Barack Obama"), cfg=AdaptationConfig(enabled=False)) == "adaptation.enabled is false"


def test_a_learned_template_widens_who_is_recognised_but_never_the_threshold(enrolled):
    matcher = fresh(enrolled)
    _, others = enrolled
    threshold, roster = matcher.threshold, matcher.roster
    obama_id = matcher.gallery.person_ids[0]
    # a later visit lies farther from the enrolled photos than the threshold, but near the visit the door learned
    visit = others["obama-3.jpg"]
    later = unit(visit + 0.35 * np.random.default_rng(0).standard_normal(len(visit)) / np.sqrt(len(visit)))
    far_from_photos = float(matcher.enrolled_distances(later)[0])
    got = learn(AdaptationConfig(enabled=True), matcher, check_in(matcher, "Barack Obama"), visit, 0.9, 20, True, at=1.0)
    assert got is not None and got.person_id == obama_id and got.templates == 1
    assert matcher.threshold == threshold and matcher.roster == roster
    rebuilt = NearestMatcher(matcher.gallery)  # a reload: the bound is computed again from enrolled photos only
    assert rebuilt.threshold == threshold
    result = matcher.match(later)
    assert result.known and result.person_id == obama_id
    assert result.distance < far_from_photos
    audit = got.audit()
    assert audit.type == "template_added" and audit.extra["template"]["templates"] == 1


def test_at_most_max_per_person_learned_the_oldest_leave_and_reset_forgets(enrolled):
    gallery = Gallery.from_bytes(enrolled[0].to_bytes(), "copy")
    version = gallery.version  # a site roster's version on a door that follows one: learning must not change it
    rng = np.random.default_rng(1)
    obama, biden = gallery.person_ids
    for at in range(5):
        evicted = gallery.adapt(obama, unit(rng.standard_normal(gallery.dim)), float(at), keep=3)
        assert evicted == (1 if at >= 3 else 0)
    gallery.adapt(biden, unit(rng.standard_normal(gallery.dim)), 9.0, keep=3)
    assert gallery.adapted_counts() == {obama: 3, biden: 1}
    assert sorted(gallery.adapted.added_at[gallery.adapted.labels == 0]) == [2.0, 3.0, 4.0]
    originals = int(gallery.original.sum())
    restored = Gallery.from_bytes(gallery.to_bytes(), "round trip")
    assert restored.adapted_counts() == {obama: 3, biden: 1} and int(restored.original.sum()) == originals
    restored.remove(obama)  # Biden's learned template follows his new label
    assert restored.adapted_counts() == {biden: 1} and restored.adapted_templates()[1].tolist() == [0]
    assert gallery.reset_adapted(obama) == 3 and gallery.adapted_counts() == {obama: 0, biden: 1}
    assert gallery.reset_adapted() == 1 and gallery.adapted is None
    assert gallery.version == version


def test_a_new_site_roster_keeps_what_the_door_learned_for_the_people_it_still_holds(enrolled):
    door = Gallery.from_bytes(enrolled[0].to_bytes(), "door")
    obama, biden = door.person_ids
    door.adapt(obama, door.embeddings[0], 1.0, keep=5)
    door.adapt(biden, door.embeddings[-1], 2.0, keep=5)
    roster = Gallery.from_bytes(enrolled[0].to_bytes(), "roster")
    roster.remove(obama)
    assert roster.carry_adapted(door) == 1
    assert roster.adapted_counts() == {biden: 1}


def test_a_look_alike_who_keeps_coming_is_never_absorbed(enrolled):
    """A stranger made to look more like Obama at every visit (a blend of two real strangers' faces drifting
    towards him). Each step is close to the last, so a door that judged visits against what it had learned would
    follow the drift and end up naming the stranger as Obama; judged against the enrolled photos only, the door
    learns Obama's real visits, never the look-alike's, and every learned template stays within the threshold of
    Obama's enrolled photos."""
    matcher = fresh(enrolled)
    _, others = enrolled
    config = AdaptationConfig(enabled=True, novel_beyond=0.0, max_per_person=1000)
    obama = matcher.gallery.person_ids[0]
    photos = matcher.gallery.embeddings[matcher.gallery.original & (matcher.gallery.labels == 0)]
    centre = unit(photos.mean(axis=0))
    stranger = unit(others["collins-1.jpg"] + others["cameraman.jpg"])
    learned_from_stranger, accepted = 0, []
    for step, alpha in enumerate(np.linspace(0.0, 0.55, 60)):
        lookalike = unit((1 - alpha) * stranger + alpha * centre)
        base = float(matcher.enrolled_distances(lookalike)[0])
        if base <= matcher.threshold:  # past this point the enrolled photos themselves accept them: stop
            break
        accepted.append(matcher.match(lookalike).known)
        got = learn(config, matcher, check_in(matcher, "Barack Obama"), lookalike, 0.9, 20, True, at=float(step))
        learned_from_stranger += got is not None
        # Obama himself keeps coming too
        learn(config, matcher, check_in(matcher, "Barack Obama"), others["obama-3.jpg"], 0.9, 20, True, at=step + 0.5)
    assert len(accepted) >= 20, "the walk should take many visits before the photos accept the look-alike"
    assert learned_from_stranger == 0
    learned, labels = matcher.gallery.adapted_templates()
    assert len(learned) >= 1 and (labels == 0).all()
    for template in learned:
        assert matcher.enrolled_distances(template)[0] <= matcher.threshold
    assert not any(accepted), "the look-alike was never accepted as Obama on the way"
    assert matcher.gallery.adapted_counts()[obama] == len(learned)


def test_the_daemon_learns_from_a_check_in_says_so_and_keeps_it(base_config, tmp_path):
    """The demo clip: Obama checks in, his track ends, the door learns his visit (every guard on), publishes a
    template_added audit event after the check-in, and the template is in the sealed gallery on disk."""
    from edge.cli.demo import render_clip
    from tests.conftest import validate

    render_clip(tmp_path / "frames")
    base_config["sinks"] = {"stdout": True}
    base_config["confirmation"] = {"require_gesture": False, "unknown_frames": 4, "unknown_interval_s": 0}
    base_config["adaptation"] = {"enabled": True, "novel_beyond": 0.0, "min_frames": 5}  # the clip's visits are short and alike
    config = write_yaml(tmp_path / "config.yaml", base_config)
    enrol_obama_and_biden(config)
    result = run_cli("run", "-c", str(config))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [(e["type"], e["name"]) for e in events]
    assert kinds.index(("template_added", "Barack Obama")) > kinds.index(("check_in", "Barack Obama")), kinds
    for event in events:
        validate(event, "event")
    added = [e for e in events if e["type"] == "template_added"]
    assert all(e["template"]["distance"] <= 1.1 and e["template"]["templates"] >= 1 for e in added)
    listed = [json.loads(line) for line in run_cli("roster", "list", "-c", str(config)).stdout.splitlines()]
    assert {p["name"]: p["adapted"] for p in listed}["Barack Obama"] >= 1
    reset = run_cli("roster", "reset-adapted", "-c", str(config))
    assert reset.returncode == 0 and "forgot" in reset.stdout
    listed = [json.loads(line) for line in run_cli("roster", "list", "-c", str(config)).stdout.splitlines()]
    assert all(p["adapted"] == 0 for p in listed)


def test_a_learned_template_accepts_only_within_its_own_tighter_radius(enrolled):
    """Each learned template is one more comparison per visit, so it accepts a face only within learned_threshold:
    the roster's own normal model of impostor distances asked for the same strangers per visit with the enrolled
    photos and every template people may learn compared (operating.learned_threshold); the threshold stays."""
    gallery, others = enrolled
    plain = NearestMatcher(Gallery.from_bytes(gallery.to_bytes(), "copy"))
    matcher = NearestMatcher(Gallery.from_bytes(gallery.to_bytes(), "copy"), learned_per_person=10)
    assert matcher.threshold == plain.threshold and matcher.learned_threshold < matcher.threshold
    template = others["obama-3.jpg"]
    matcher.gallery.adapt(matcher.gallery.person_ids[0], template, 1.0, keep=10)
    matcher.templates_changed()
    photos = matcher.gallery.embeddings[matcher.gallery.original & (matcher.gallery.labels == 0)]
    away = template - unit(photos.mean(axis=0))
    away = unit(away - float(away @ template) * template)  # orthogonal to the template, away from his photos

    def at(distance: float) -> np.ndarray:
        angle = np.arccos(1.0 - distance * distance / 2.0)
        return unit(np.cos(angle) * template + np.sin(angle) * away)

    inside, between = at(0.97 * matcher.learned_threshold), at((matcher.learned_threshold + matcher.threshold) / 2)
    for face in (inside, between):
        assert matcher.enrolled_distances(face)[0] > matcher.threshold, "only the learned template is near"
    assert matcher.match(inside).known
    assert not matcher.match(between).known
    assert matcher.match(between).distance == pytest.approx(
        np.linalg.norm(between - template) * matcher.threshold / matcher.learned_threshold, abs=1e-4)
