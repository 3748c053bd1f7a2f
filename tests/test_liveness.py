"""Passive anti-spoofing on real models and real photos: parity with PyTorch, upstream's crop contract, the
verdicts of `facecheck identify`, the daemon on a replayed clip, and the decision rules."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import ConfigError, ConfirmationConfig, config_from_dict
from edge.inference.liveness import MODELS, LivenessRule, MiniFasNet, TrackLiveness, crop, softmax
from edge.inference.tflite import TfliteModel, bundle_model
from edge.recognition.decision import Confirmation, Observation
from tests.conftest import MODELS as MODELS_DIR
from tests.conftest import ROOT, run_cli, write_yaml

DATA = ROOT / "tests" / "data" / "liveness"  # upstream's sample photos, crops and PyTorch outputs (NOTICE)
REFERENCE = json.loads((DATA / "reference_outputs.json").read_text())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bundled_models_reproduce_pytorch_on_upstreams_crops(name):
    file_name, scale = MODELS[name]
    model = TfliteModel(bundle_model(MODELS_DIR, file_name), 1)
    key = f"{name}_{scale}"
    for image, expected in REFERENCE["crops"].items():
        patch = cv2.imread(str(DATA / f"{image}_crop_{key}.png"))
        got = softmax(model.run(patch[None].astype(np.float32))[0][0])
        assert np.abs(got - np.array(expected[key])).max() < 1e-4, (image, got, expected[key])


def test_crop_shifts_a_box_that_leaves_the_image_back_inside_rather_than_padding():
    image = np.arange(200 * 300 * 3, dtype=np.uint32).reshape(200, 300, 3).astype(np.uint8)
    image[:, :, 0] = np.arange(300)[None, :] % 256  # column index in blue
    corner = crop(image, (0.0, 0.0, 40.0, 40.0), 2.7)  # 108 px wide, centred on (20, 20): shifted to x=0
    expected = cv2.resize(image[0:109, 0:109], (80, 80))
    assert corner.shape == (80, 80, 3)
    assert np.array_equal(corner, expected)
    # 400 px asked, the image is 200 high: the scale is limited to 1.99 (199 px), rows 0..199 after the shift
    whole = crop(image, (100.0, 50.0, 100.0, 100.0), 4.0)
    assert np.array_equal(whole, cv2.resize(image[0:200, 50:250], (80, 80)))


def test_verdicts_and_track_fusion():
    rule = LivenessRule(0.005, 0.05)
    assert [rule.verdict(s) for s in (0.001, 0.02, 0.9, None)] == ["spoof", "uncertain", "live", "uncertain"]
    track = TrackLiveness(keep=3)
    for score in (0.9, None, 0.001, 0.002, 0.003):  # None: a frame the models cannot judge adds nothing
        track.add(score)
    assert track.as_dict(rule) == {"score": 0.002, "verdict": "spoof", "frames": 3}


def test_liveness_thresholds_out_of_order_name_the_keys():
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"liveness": {"spoof_below": 0.3, "live_from": 0.1}}, ROOT)
    assert "live_from" in str(caught.value) and "spoof_below" in str(caught.value)


def test_monochrome_faces_get_no_score():
    model = MiniFasNet(MODELS_DIR)
    from edge.service.assembly import build_detector

    image = cv2.imread(str(DATA / "image_T1.jpg"))
    face = build_detector(config_from_dict({"models": {"dir": str(MODELS_DIR)}}, ROOT)).detect(image)[0]
    assert model.assess(image, face).score > 0.5
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assessment = model.assess(grey, face)
    assert assessment.monochrome and assessment.score is None


def _enrol_t1(base_config, tmp_path) -> Path:
    config = write_yaml(tmp_path / "config.yaml", base_config)
    result = run_cli("enroll", "-c", str(config), "--name", "Ms Sample", str(DATA / "image_T1.jpg"))
    assert result.returncode == 0, result.stderr
    return config


def test_identify_names_the_attacks_spoofs_and_the_live_face_live(base_config, tmp_path):
    config = _enrol_t1(base_config, tmp_path)
    result = run_cli("identify", "-c", str(config), *[str(DATA / f"image_{n}.jpg") for n in ("T1", "F1", "F2")])
    assert result.returncode == 0, result.stderr
    live, printed, tablet = [json.loads(line)["faces"][0] for line in result.stdout.splitlines()]
    assert live["name"] == "Ms Sample" and live["liveness"]["verdict"] == "live"
    # Both attacks are of the enrolled woman and are recognised as her: only liveness stops them.
    for attack in (printed, tablet):
        assert attack["known"] and attack["name"] == "Ms Sample"
        assert attack["liveness"]["verdict"] == "spoof", attack
    explained = run_cli("identify", "--explain", "-c", str(config), str(DATA / "image_F2.jpg"))
    why = json.loads(explained.stdout)["faces"][0]["explain"]["liveness"]
    assert "spoof" in why["why"] and set(why["models"]) == {"v2"}


def _still_clip(folder: Path, photos: list[str], frames: int = 12, gap: int = 8) -> None:
    """A replayed clip made of still photos: each photo held for `frames` frames, moved a pixel or two per
    frame (as a hand-held print or tablet moves), then an empty doorway. Still images, not video."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = 0
    for photo in photos:
        image = cv2.imread(str(DATA / photo))
        for _ in range(frames):
            dx, dy = rng.integers(-2, 3, 2)
            moved = cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), image.shape[1::-1],
                                   borderMode=cv2.BORDER_REPLICATE)
            cv2.imwrite(str(folder / f"frame-{n:05d}.jpg"), moved, [cv2.IMWRITE_JPEG_QUALITY, 92])
            n += 1
        for _ in range(gap):
            cv2.imwrite(str(folder / f"frame-{n:05d}.jpg"), np.full_like(image, 120))
            n += 1


def test_the_daemon_refuses_a_tablet_and_a_print_and_checks_the_live_person_in(base_config, tmp_path):
    from tests.conftest import validate

    _still_clip(tmp_path / "frames", ["image_F2.jpg", "image_F1.jpg", "image_T1.jpg"])
    base_config["sinks"] = {"stdout": True}
    config = _enrol_t1(base_config, tmp_path)
    result = run_cli("run", "-c", str(config))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["type"], e["name"]) for e in events] == [
        ("spoof_suspected", "Ms Sample"), ("spoof_suspected", "Ms Sample"), ("check_in", "Ms Sample")]
    for event in events:
        validate(event, "event")
    assert [e["liveness"]["verdict"] for e in events] == ["spoof", "spoof", "live"]
    assert all(e["liveness"]["frames"] >= 2 for e in events)


def _observation(verdict, track=1):
    return Observation(track, True, "p-1", "Alice", 0.9, liveness={"score": 0.5, "verdict": verdict, "frames": 2})


@pytest.mark.parametrize("policy, verdict, expected", [
    ("refuse", "spoof", "spoof_suspected"), ("refuse", "uncertain", "check_in"), ("refuse", "live", "check_in"),
    ("flag", "spoof", "check_in"), ("off", "spoof", "check_in")])
def test_policy_decides_what_a_spoof_verdict_does(policy, verdict, expected):
    machine = Confirmation(ConfirmationConfig(require_gesture=False, recognise_frames=2), policy)
    decisions = [d for i in range(3) for d in machine.update(i / 10, [_observation(verdict)])]
    assert [d.type for d in decisions] == [expected]
    assert decisions[0].extra["liveness"]["verdict"] == verdict


def test_a_refused_spoof_does_not_start_the_real_persons_cooldown():
    machine = Confirmation(ConfirmationConfig(require_gesture=False, recognise_frames=2, cooldown_s=60), "refuse")
    decisions = [d for i in range(3) for d in machine.update(i / 10, [_observation("spoof", track=1)])]
    decisions += [d for i in range(3, 6) for d in machine.update(i / 10, [_observation("live", track=2)], {2})]
    assert [d.type for d in decisions] == ["spoof_suspected", "check_in"]


def test_a_spoof_making_the_gesture_is_still_refused():
    machine = Confirmation(ConfirmationConfig(require_gesture=True, recognise_frames=2, hold_frames=2), "refuse")
    obs = Observation(1, True, "p-1", "Alice", 0.9, "confirm", liveness={"score": 0.001, "verdict": "spoof",
                                                                          "frames": 4})
    decisions = [d for i in range(6) for d in machine.update(i / 10, [obs])]
    assert [(d.type, d.gesture) for d in decisions] == [("spoof_suspected", "confirm")]
