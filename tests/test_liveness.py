"""Passive anti-spoofing on real models and real photos: parity with PyTorch, upstream's crop contract, the
verdicts of `facecheck identify`, the daemon on a replayed clip, and the decision rules."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import ConfigError, ConfirmationConfig, config_from_dict
from edge.inference.liveness import MODELS, RETINA, BoxShape, LivenessRule, MiniFasNet, TrackLiveness, crop, softmax
from edge.inference.tflite import TfliteModel, bundle_model
from edge.recognition.decision import Confirmation, Observation
from tests.conftest import ROOT, run_cli, write_yaml


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bundled_models_reproduce_pytorch_on_upstreams_crops(name, liveness_models, antispoof):
    file_name, scale = MODELS[name]
    model = TfliteModel(bundle_model(liveness_models, file_name), 1)
    key = f"{name}_{scale}"
    for image, expected in json.loads((antispoof / "reference_outputs.json").read_text())["crops"].items():
        patch = cv2.imread(str(antispoof / "samples" / f"{image}_crop_{key}.png"))
        got = softmax(model.run(patch[None].astype(np.float32))[0][0])
        assert np.abs(got - np.array(expected[key])).max() < 1e-4, (image, got, expected[key])


def test_upstreams_state_dicts_become_tflite_that_reproduces_pytorch(antispoof, tmp_path):
    """facecheck-convert liveness: upstream's .pth files, read without PyTorch, converted by the project's own
    network definition; the sidecars name the source and the licence."""
    pytest.importorskip("tensorflow", reason="the converters extra (TensorFlow) is not installed")
    from converters.liveness import ACCEPTED, check_reference, install

    folder = tmp_path / "upstream"
    folder.mkdir()
    for accepted in ACCEPTED.values():  # only the .pth files, as an operator has them
        (folder / accepted.state_dict_name).symlink_to(antispoof / accepted.state_dict_name)
    written = install(folder, tmp_path / "bundle", reference=antispoof, log=lambda _: None)
    assert [p.name for p in written] == [MODELS["v2"][0], MODELS["v1se"][0]]
    for name, path in zip(("v2", "v1se"), written):
        model = TfliteModel(path, 1)
        worst = check_reference(name, lambda crop, m=model: softmax(m.run(crop[None].astype(np.float32))[0][0]),
                                antispoof)
        assert worst < 1e-5, (name, worst)
        meta = json.loads(path.with_name(path.name + ".json").read_text())
        assert ACCEPTED[name].state_dict_sha256 in meta["source"] and meta["licence"].startswith("Apache-2.0")


def test_a_state_dict_that_would_run_code_is_refused_before_it_can(tmp_path):
    """Every pickle in the file goes through the restricted unpickler, the header's too: a global other than a
    tensor's rebuild is refused, never called."""
    import pickle

    from converters.liveness import LivenessConversionError, read_state_dict

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    crafted = tmp_path / "crafted.pth"
    crafted.write_bytes(pickle.dumps(Payload()) + pickle.dumps(1001) + pickle.dumps({}))
    with pytest.raises(LivenessConversionError, match=r"holds builtins.print, not only tensors; refused"):
        read_state_dict(crafted)


def test_a_file_that_is_not_upstreams_is_refused_by_name(tmp_path):
    from converters.liveness import LivenessConversionError, install

    (tmp_path / "2.7_80x80_MiniFASNetV2.pth").write_bytes(b"not the weights")
    with pytest.raises(LivenessConversionError, match=r"no file is MiniFASNet v2: expected upstream's "
                                                      r"2.7_80x80_MiniFASNetV2.pth \(sha256 a5eb02e1"):
        install(tmp_path, tmp_path / "bundle", log=lambda _: None)


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
    track.add(0.95)  # one frame of an attack the model took for live does not make the track live (a mean would)
    assert track.as_dict(rule)["verdict"] == "spoof"


def test_box_shapes_reshape_blazefaces_box_about_its_centre():
    assert BoxShape(1.0, 1.0, 0.0).of((10, 20, 100, 50)) == (10.0, 20.0, 100.0, 50.0)
    x, y, w, h = BoxShape(1.2, 1.3, 0.05).of((0, 0, 100, 100))
    assert (w, h) == pytest.approx((120.0, 130.0)) and x + w / 2 == pytest.approx(50.0)
    assert y + h / 2 == pytest.approx(45.0)  # 0.05 box heights up
    assert RETINA.width == pytest.approx(1.0, abs=0.05)  # the measured RetinaFace geometry stays near BlazeFace's


def test_liveness_thresholds_out_of_order_name_the_keys():
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"liveness": {"spoof_below": 0.3, "live_from": 0.1}}, ROOT)
    assert "live_from" in str(caught.value) and "spoof_below" in str(caught.value)


def test_monochrome_faces_get_no_score(liveness_models, antispoof):
    model = MiniFasNet(liveness_models)
    from edge.service.assembly import build_detector

    image = cv2.imread(str(antispoof / "samples" / "image_T1.jpg"))
    face = build_detector(config_from_dict({"models": {"dir": str(liveness_models)}}, ROOT)).detect(image)[0]
    assert model.assess(image, face).score > 0.5
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assessment = model.assess(grey, face)
    assert assessment.monochrome and assessment.score is None


def _enrol_t1(base_config, tmp_path, samples: Path) -> Path:
    config = write_yaml(tmp_path / "config.yaml", base_config)
    result = run_cli("enroll", "-c", str(config), "--name", "Ms Sample", str(samples / "image_T1.jpg"))
    assert result.returncode == 0, result.stderr
    return config


def test_identify_names_the_attacks_spoofs_and_the_live_face_live(base_config, tmp_path, liveness_models, antispoof):
    samples = antispoof / "samples"
    config = _enrol_t1(base_config, tmp_path, samples)
    result = run_cli("identify", "-c", str(config), *[str(samples / f"image_{n}.jpg") for n in ("T1", "F1", "F2")])
    assert result.returncode == 0, result.stderr
    live, printed, tablet = [json.loads(line)["faces"][0] for line in result.stdout.splitlines()]
    assert live["name"] == "Ms Sample" and live["liveness"]["verdict"] == "live"
    # Both attacks are of the enrolled woman and are recognised as her: only liveness stops them.
    for attack in (printed, tablet):
        assert attack["known"] and attack["name"] == "Ms Sample"
        assert attack["liveness"]["verdict"] == "spoof", attack
    explained = run_cli("identify", "--explain", "-c", str(config), str(samples / "image_F2.jpg"))
    why = json.loads(explained.stdout)["faces"][0]["explain"]["liveness"]
    assert "spoof" in why["why"] and set(why["models"]) == {"v2"}


def _still_clip(folder: Path, photos: list[Path], frames: int = 12, gap: int = 8) -> None:
    """A replayed clip made of still photos: each photo held for `frames` frames, moved a pixel or two per
    frame (as a hand-held print or tablet moves), then an empty doorway. Still images, not video."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = 0
    for photo in photos:
        image = cv2.imread(str(photo))
        for _ in range(frames):
            dx, dy = rng.integers(-2, 3, 2)
            moved = cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), image.shape[1::-1],
                                   borderMode=cv2.BORDER_REPLICATE)
            cv2.imwrite(str(folder / f"frame-{n:05d}.jpg"), moved, [cv2.IMWRITE_JPEG_QUALITY, 92])
            n += 1
        for _ in range(gap):
            cv2.imwrite(str(folder / f"frame-{n:05d}.jpg"), np.full_like(image, 120))
            n += 1


def test_the_daemon_refuses_a_tablet_and_a_print_and_checks_the_live_person_in(base_config, tmp_path,
                                                                                liveness_models, antispoof):
    from tests.conftest import validate

    samples = antispoof / "samples"
    _still_clip(tmp_path / "frames", [samples / f"image_{n}.jpg" for n in ("F2", "F1", "T1")])
    base_config["sinks"] = {"stdout": True}
    config = _enrol_t1(base_config, tmp_path, samples)
    result = run_cli("run", "-c", str(config))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["type"], e["name"]) for e in events] == [
        ("spoof_suspected", "Ms Sample"), ("spoof_suspected", "Ms Sample"), ("check_in", "Ms Sample")]
    for event in events:
        validate(event, "event")
    assert [e["liveness"]["verdict"] for e in events] == ["spoof", "spoof", "live"]
    assert all(e["liveness"]["frames"] >= 2 for e in events)
    assert {(e["liveness"]["policy"], e["liveness"]["check"]) for e in events} == {("refuse", "minifasnet v2")}


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


def test_absent_liveness_models_are_said_never_skipped(base_config, tmp_path, facenet_model):
    """A bundle without the anti-spoofing models (a fresh install: the operator supplies them): with the shipped
    liveness.policy refuse, `run` and `doctor` stop with exit 2 naming the install command and the setting that
    does without them; `identify` works and says `liveness: not installed`; the demo runs face-only and says so;
    with policy off, every event says no liveness was in force."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for path in facenet_model.parent.iterdir():
        if path.is_file() and not path.name.startswith("minifasnet"):
            (bundle / path.name).symlink_to(path)
    for own in (facenet_model.name, facenet_model.name + ".json"):  # a real file: the demo resolves the model's path
        (bundle / own).unlink()
        shutil.copyfile(facenet_model.parent / own, bundle / own)
    base_config.update({"models": {"dir": str(bundle)}, "embedder": {"model": str(bundle / facenet_model.name), "fuse_with": []},
                        "liveness": {"policy": "refuse"}, "sinks": {"stdout": True}})
    from edge.cli.demo import render_clip

    render_clip(tmp_path / "frames")
    config = write_yaml(tmp_path / "config.yaml", base_config)
    install = f"facecheck-convert liveness --from DIR --out {bundle}"
    for command in (("run",), ("doctor",)):
        result = run_cli(*command, "-c", str(config))
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        said = result.stdout + result.stderr
        assert install in said and "liveness.policy: off" in said and "Traceback" not in said, said
    enrolled = run_cli("enroll", "-c", str(config), "--name", "Barack Obama", str(ROOT / "edge/data/samples/obama-1.jpg"))
    assert enrolled.returncode == 0, enrolled.stderr
    identified = run_cli("identify", "-c", str(config), str(ROOT / "edge/data/samples/obama-2.jpg"))
    assert identified.returncode == 0, identified.stderr
    face = json.loads(identified.stdout)["faces"][0]
    assert face["name"] == "Barack Obama" and face["liveness"] == "not installed"
    assert "liveness: not installed" in identified.stderr and install in identified.stderr
    demo = run_cli("demo", "--model", str(bundle / facenet_model.name), timeout=300)
    assert demo.returncode == 0, demo.stderr
    assert "# liveness: not installed, so this demo ran face-only" in demo.stderr and install in demo.stderr
    off = write_yaml(tmp_path / "off.yaml", {**base_config, "liveness": {"policy": "off"}})
    events = [json.loads(line) for line in run_cli("run", "-c", str(off)).stdout.splitlines()]
    assert events and {(e["liveness"]["policy"], e["liveness"]["check"]) for e in events} == {("off", "off")}
