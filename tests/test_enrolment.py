"""Enrolment refuses bad photos with the reason, warns about look-alikes and wrong photos, and identify
--explain says why a face was or was not named. Real photos, some degraded by the transform named."""

import json

import cv2
import numpy as np
import pytest

from edge.config import config_from_dict
from edge.identity.gallery import GalleryFile
from edge.recognition.enroll import InputError, enrol
from edge.samples import sample
from edge.service.assembly import build_identifier
from tests.conftest import ROOT, run_cli, write_yaml

REAL = ROOT / "tests" / "data" / "registry"


@pytest.fixture
def door(base_config, tmp_path):
    config = config_from_dict(base_config, base_dir=tmp_path)
    return config, build_identifier(config, with_matcher=False)


def degraded(tmp_path, photo: str, name: str, transform) -> str:
    path = tmp_path / name
    cv2.imwrite(str(path), transform(cv2.imread(str(sample(photo)))))
    return path


def refusal(door, path) -> str:
    config, identifier = door
    with pytest.raises(InputError) as caught:
        enrol(identifier, GalleryFile.from_config(config), "Someone", [path], None, 0)
    return str(caught.value)


def test_no_face(door, tmp_path):
    # the top-left corner of the astronaut photo: a real photo region with no face in it
    path = degraded(tmp_path, "collins-1.jpg", "corner.jpg", lambda im: im[:120, :120])
    assert "no face found" in refusal(door, path)


def test_several_faces_names_them(door):
    # a real group photo (ultralytics' bus.jpg, fetched by scripts/bootstrap): its faces are ~60 px
    # in 810x1080, found only by the tiled search that photos always get
    message = refusal(door, REAL / "bus.jpg")
    assert "faces (x, y, w, h: [" in message and "which one? crop the photo" in message


def test_face_under_the_minimum_size(door, tmp_path):
    # scaled so the face is about 44 px: found by the detector (40 px), too small to enrol from (48 px)
    path = degraded(tmp_path, "collins-1.jpg", "small.jpg", lambda im: cv2.resize(im, None, fx=0.47, fy=0.47))
    assert "enrolment needs at least 48 px" in refusal(door, path)


def test_too_blurred_and_force_accepts_it(door, tmp_path):
    config, identifier = door
    path = degraded(tmp_path, "collins-1.jpg", "blurred.jpg", lambda im: cv2.GaussianBlur(im, (0, 0), 3))
    message = refusal(door, path)
    assert "too blurred" in message and "--force accepts it anyway" in message
    report = enrol(identifier, GalleryFile.from_config(config), "Eileen Collins", [path], None, 0, force=True)
    assert report.used == [path]


def test_strongly_turned(door):
    # a real near-profile from the 5-celebrity set that scripts/bootstrap fetches (bench/datasets.py)
    profile = REAL / "5-celebrity-faces" / "train" / "ben_afflek" / "httpssmediacacheakpinimgcomxedaedabcbefbcbabbjpg.jpg"
    assert profile.is_file(), "run scripts/bootstrap: it fetches the labelled photos"
    assert "face strongly turned" in refusal(door, profile)


def test_look_alike_and_wrong_photo_warnings(base_config, tmp_path):
    config = write_yaml(tmp_path / "config.yaml", base_config)
    first = run_cli("enroll", "-c", str(config), "--name", "Barack Obama", str(sample("obama-1.jpg")))
    assert first.returncode == 0, first.stderr
    twice = run_cli("enroll", "-c", str(config), "--name", "Barry", str(sample("obama-2.jpg")))
    assert twice.returncode == 0
    assert "warning: " in twice.stderr and "within the match threshold of Barack Obama" in twice.stderr
    # a fresh door: with the same man enrolled twice above, the roster's own bound (no two enrolled people
    # within the threshold) has tightened the threshold below his own photos' spread
    fresh = write_yaml(tmp_path / "fresh.yaml", dict(base_config, matcher={
        **base_config["matcher"], "gallery": str(tmp_path / "fresh" / "gallery.npz")}))
    folder = tmp_path / "biden"
    folder.mkdir()
    for photo in ("obama-1.jpg", "obama-2.jpg", "obama-3.jpg", "collins-1.jpg"):
        folder.joinpath(photo).write_bytes(sample(photo).read_bytes())
    wrong = run_cli("enroll", "-c", str(fresh), "--name", "Obama folder", str(folder))
    assert wrong.returncode == 0, wrong.stderr
    assert "collins-1.jpg lies far from this person's other photos" in wrong.stderr
    assert "obama-3.jpg lies far" not in wrong.stderr


def test_identify_explain_shows_candidates_rules_and_quality(base_config, tmp_path):
    config = write_yaml(tmp_path / "config.yaml", base_config)
    for name, photo in (("Barack Obama", "obama-1.jpg"), ("Joe Biden", "biden-1.jpg")):
        assert run_cli("enroll", "-c", str(config), "--name", name, str(sample(photo))).returncode == 0
    result = run_cli("identify", "--explain", "-c", str(config), str(sample("obama-2.jpg")),
                     str(sample("collins-1.jpg")))
    assert result.returncode == 0, result.stderr
    known, stranger = (json.loads(line) for line in result.stdout.splitlines())
    face = known["faces"][0]
    assert face["name"] == "Barack Obama" and face["explain"]["why"].startswith("Barack Obama: distance")
    assert [c["name"] for c in face["explain"]["candidates"]] == ["Barack Obama", "Joe Biden"]
    assert set(face["explain"]["quality"]) == {"size_px", "sharpness", "frontal", "weight"}
    why = stranger["faces"][0]["explain"]["why"]
    assert stranger["faces"][0]["known"] is False and why.startswith("no enrolled person within the threshold")


def test_ambiguous_look_alikes_are_unknown(door):
    from edge.identity.gallery import Gallery
    from edge.identity.matcher import NearestMatcher

    gallery = Gallery("m", 3)
    a = np.array([1.0, 0.0, 0.0], np.float32)
    twin = np.array([0.999, 0.045, 0.0], np.float32) / np.linalg.norm([0.999, 0.045, 0.0])
    gallery.add("ann", "Ann", a[None], np.array([True]), "m")
    gallery.add("anna", "Anna", twin[None].astype(np.float32), np.array([True]), "m")
    probe = np.array([0.995, 0.02, 0.1], np.float32)
    probe /= np.linalg.norm(probe)
    strict = NearestMatcher(gallery, threshold=0.5, ambiguity_margin=0.05).match(probe)
    assert strict.known is False, "between two near-identical people: unknown, not a coin toss"
    assert NearestMatcher(gallery, threshold=0.5, ambiguity_margin=0.0).match(probe).known
    candidates = NearestMatcher(gallery, threshold=0.5).candidates(probe)
    assert [c.person_id for c in candidates] == ["ann", "anna"] and candidates[0].distance < candidates[1].distance


def test_a_badge_style_photo_the_face_fills_is_enrolled(door, tmp_path):
    """Collins's face cropped 10 % inside its detected box and scaled to 150 x 150 (a badge photo): the
    detector finds nothing in it as it is; enrolment pads it and finds the face."""
    from edge.inference.detector import BlazeFaceDetector
    from edge.inference.detector import box_iou as iou

    config, identifier = door
    image = cv2.imread(str(sample("collins-1.jpg")))
    x, y, w, h = BlazeFaceDetector().detect(image)[0].box
    badge = cv2.resize(image[y + h // 10:y + h - h // 10, x + w // 10:x + w - w // 10], (150, 150))
    path = tmp_path / "badge.jpg"
    cv2.imwrite(str(path), badge)
    assert identifier.faces(badge) == [], "as a door frame, the tight crop shows no face"
    report = enrol(identifier, GalleryFile.from_config(config), "Eileen Collins", [path], None, 0)
    assert report.used == [path]
    # and it is the same person: the full photo matches the badge enrolment
    from edge.service.assembly import build_matcher_for, load_gallery

    identifier.matcher = build_matcher_for(config, load_gallery(config, identifier.model_id, identifier.dim))
    assert identifier.identify(image)[0].match.name == "Eileen Collins"
    # identify pads a badge photo as enrolment does, and reports the box in the badge's own pixels
    [found] = identifier.identify(badge)
    assert found.match.name == "Eileen Collins"
    scale_x, scale_y = 150 / (w - 2 * (w // 10)), 150 / (h - 2 * (h // 10))
    expected = (-(w // 10) * scale_x, -(h // 10) * scale_y, w * scale_x, h * scale_y)  # the full photo's box
    assert iou(found.face.box, expected) > 0.7, (found.face.box, expected)
    assert all(found.face.contains(tuple(p)) for p in found.face.keypoints[:4]), "eyes, nose and mouth in the box"
