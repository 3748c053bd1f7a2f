"""The site's own operating point (`facecheck calibrate FOLDER`): measured from photos of the site's people, it can
only tighten the model's threshold; health, doctor and identify --explain say which point is in force."""

import json
import shutil

import pytest

from bench.datasets import EAST_ASIAN
from edge.config import ConfigError, config_from_dict
from edge.identity.gallery import Gallery
from edge.identity.matcher import resolve
from edge.identity.operating import SitePointError, load_site_point, operating_point, save_site_point, site_point_from
from edge.samples import sample
from edge.service.assembly import build_matcher_for
from tests.conftest import run_cli, write_yaml

MODEL_ID = "facenet-keras-ms1m-int8full-m00-prewhiten"


def _site(threshold_pairs: list[float], model_id: str = MODEL_ID):
    same = [False] * len(threshold_pairs) + [True]
    return site_point_from(model_id, [*threshold_pairs, 0.5], same, 3, 6, "folder", "2026-12-03T00:00:00Z")


def test_a_site_point_only_ever_tightens_the_models():
    model = operating_point(MODEL_ID)
    assert model is not None
    tight, loose = _site([0.80, 0.95]), _site([1.60, 1.70])
    assert tight.threshold == 0.78 and tight.impostor_pairs == 2 and tight.genuine_pairs == 1
    empty = Gallery(MODEL_ID, 128)
    assert resolve(empty, None, None, tight)[0] == pytest.approx(0.78)
    assert "site operating point" in resolve(empty, None, None, tight)[1]
    assert resolve(empty, None, None, loose)[0] == pytest.approx(model.threshold)  # never loosened
    assert resolve(empty, 0.9, None, tight)[0] == 0.9  # matcher.distance_threshold still wins, as before
    with pytest.raises(ValueError, match="two people"):
        site_point_from(MODEL_ID, [0.5], [True], 1, 2, "folder", "now")


def test_a_site_point_of_another_model_is_refused_by_name(tmp_path, base_config):
    path = tmp_path / "site-point.json"
    save_site_point(_site([0.8], model_id="mobilefacenet-sirius-float32-arcface5-fixed"), path)
    with pytest.raises(SitePointError, match="calibrate FOLDER"):
        load_site_point(path, MODEL_ID)
    config = config_from_dict({**base_config, "matcher": {**base_config["matcher"], "site_point": str(path)}}, tmp_path)
    with pytest.raises(ConfigError, match="measured with 'mobilefacenet"):
        build_matcher_for(config, Gallery(MODEL_ID, 128))
    path.write_text("{not json")
    with pytest.raises(SitePointError, match="not a site operating point"):
        load_site_point(path, MODEL_ID)


def _people_folder(root, people: dict[str, list]):
    for person, photos in people.items():
        (root / person).mkdir(parents=True)
        for photo in photos:
            shutil.copy(photo, root / person / photo.name)
    return root


def test_calibrate_on_the_sample_people_writes_the_point_and_doctor_reports_it(base_config, tmp_path):
    folder = _people_folder(tmp_path / "site", {
        "obama": [sample(p) for p in ("obama-1.jpg", "obama-2.jpg", "obama-3.jpg")],
        "biden": [sample("biden-1.jpg")], "collins": [sample("collins-1.jpg")]})
    config = write_yaml(tmp_path / "config.yaml", base_config)
    result = run_cli("calibrate", "--config", str(config), str(folder))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    point = report["site_point"]
    assert (point["people"], point["photos"], point["impostor_pairs"], point["genuine_pairs"]) == (3, 5, 9, 3)
    assert report["threshold_in_force"] == min(point["threshold"], report["model_point"])
    written = load_site_point((tmp_path / "state" / "site-point.json"), point["model_id"])
    assert written is not None and written.threshold == point["threshold"]
    doctor = run_cli("doctor", "--config", str(config))
    assert "site point from 3 of the site's people (9 impostor pairs" in doctor.stdout, doctor.stdout


def test_the_site_is_measured_as_the_door_judges_a_visit_against_templates():
    """Impostors: each person's template against every other person's photos (Obama's template against Biden's and
    Collins' photos; theirs, one photo each, against each other once and against Obama's three); genuine: each photo
    against the template of the same person's other photos (Obama's three; nobody else has two)."""
    import numpy as np

    from edge.recognition.calibration import own_template_distances

    rng = np.random.default_rng(3)
    photos = rng.standard_normal((5, 16)).astype(np.float32)
    photos /= np.linalg.norm(photos, axis=1, keepdims=True)
    labels = np.array([0, 0, 0, 1, 2], np.int32)
    genuine = own_template_distances(photos, labels)
    rest = photos[1] + photos[2]
    assert len(genuine) == 3
    assert genuine[0] == pytest.approx(np.linalg.norm(photos[0] - rest / np.linalg.norm(rest)), abs=1e-5)


def test_calibrate_on_east_asian_faces_tightens_the_threshold(base_config, tmp_path):
    """East Asian impostors lie closer than the Western photos the model's point was measured on: the site point
    of a few East Asian people is tighter, and the matcher takes it."""
    if not EAST_ASIAN.is_dir():
        pytest.skip(f"{EAST_ASIAN} is absent: the East Asian faces lie in the shared data folder beside the project")
    people = sorted(d for d in EAST_ASIAN.iterdir() if d.is_dir())[:5]
    folder = _people_folder(tmp_path / "site", {d.name: sorted(d.glob("*.jpg"))[:6] for d in people})
    config_path = write_yaml(tmp_path / "config.yaml", base_config)
    result = run_cli("calibrate", "--config", str(config_path), str(folder), timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["site_point"]["threshold"] < report["model_point"], report
    assert report["threshold_in_force"] == report["site_point"]["threshold"]
    config = config_from_dict(base_config, tmp_path)
    matcher = build_matcher_for(config, Gallery(report["site_point"]["model_id"], 128))
    assert matcher.threshold == pytest.approx(report["site_point"]["threshold"])
    assert matcher.threshold_origin.startswith("site operating point"), matcher.threshold_origin
