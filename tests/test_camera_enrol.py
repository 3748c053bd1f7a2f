"""Enrolment at the door from its own camera (a replay camera over frames of real sample photos standing in the
doorway: the camera node itself cannot run here), and recognition on a later clip from that camera."""

import json

import cv2
import numpy as np

from edge.cli.demo import in_doorway, render_clip, visitor
from edge.inference.detector import FaceBox
from edge.inference.quality import FaceQuality, head_turn
from edge.recognition.camera_enrol import CameraEnrolment, pose_of
from tests.conftest import run_cli, write_yaml


def test_head_turn_reads_a_turned_face_and_its_mirror_image_as_opposite_sides():
    from edge.inference.detector import BlazeFaceDetector
    from edge.samples import sample

    detector = BlazeFaceDetector(tiles=True)
    image = cv2.imread(str(sample("obama-2.jpg")))  # turned to his right
    yaw, pitch = head_turn(detector.detect(image)[0].keypoints)
    mirrored_yaw, mirrored_pitch = head_turn(detector.detect(np.ascontiguousarray(image[:, ::-1]))[0].keypoints)
    assert pose_of(yaw, 0.0) == "right" and pose_of(mirrored_yaw, 0.0) == "left"
    assert abs(pitch - mirrored_pitch) < 0.03
    assert pose_of(0.0, 0.0) == "frontal" and pose_of(0.0, 0.08) == "down" and pose_of(0.0, -0.08) == "up"
    assert pose_of(0.1, 0.0) is None and pose_of(0.6, 0.0) is None  # between poses, and beyond them


def face_with(yaw: float, pitch: float) -> FaceBox:
    """Keypoints of a face turned by (yaw, pitch) as head_turn measures them (eyes 40 px apart, mouth 40 px down)."""
    points = np.array([[100, 100], [140, 100], [120 + 40 * yaw, 100 + 40 * pitch], [120, 140], [90, 110], [150, 110]],
                      np.float32)
    return FaceBox((80, 70, 80, 90), 0.9, points)


def test_a_session_keeps_one_frame_per_pose_frontal_first_and_refuses_near_duplicates():
    session = CameraEnrolment(frames=3)
    good = FaceQuality(120, 100, 0.95)
    rng = np.random.default_rng(0)
    image = np.zeros((8, 8, 3), np.uint8)

    def vector():
        v = rng.standard_normal(128)
        return v / np.linalg.norm(v)

    assert session.offer(image, [], None, None) == "no face"
    assert "2 faces" in session.offer(image, [face_with(0, 0.5)] * 2, good, vector())
    assert "first" in session.offer(image, [face_with(0.2, 0.5)], good, vector())  # turned before any frontal
    assert "enrolment needs" in session.offer(image, [face_with(0, 0.5)], FaceQuality(30, 100, 0.95), vector())
    first = vector()
    assert session.offer(image, [face_with(0.0, 0.5)], good, first) == "kept frontal"
    assert "already kept" in session.offer(image, [face_with(0.0, 0.5)], good, vector())
    assert "too like" in session.offer(image, [face_with(0.2, 0.5)], good, first + 0.001)
    assert session.offer(image, [face_with(0.2, 0.5)], good, vector()) == "kept left"
    assert session.guidance() == "turn your head a little to your right"
    assert session.offer(image, [face_with(0.0, 0.6)], good, vector()) == "kept down"  # nose lower than frontal's
    assert session.done and [k.pose for k in session.kept] == ["frontal", "left", "down"]
    assert session.summary()["missing_poses"] == ["right", "up"]


def test_enrolled_at_the_door_then_recognised_on_a_later_clip(base_config, tmp_path):
    """`enroll --camera` on a camera showing Obama (two real photos of him, each held a second in the doorway,
    jittered): it keeps a frontal frame and a turned one, refuses the jittered copies, stores templates only; the
    daemon then recognises him on the demo clip (a third photo) from the same camera."""
    frames = tmp_path / "enrol-frames"
    frames.mkdir()
    rng = np.random.default_rng(3)
    for n, photo in enumerate(["obama-1.jpg"] * 6 + ["obama-2.jpg"] * 6):
        cv2.imwrite(str(frames / f"{n:03d}.jpg"), in_doorway(visitor(photo), rng))
    base_config["camera"] = {"kind": "replay", "path": str(frames), "fps": 10, "realtime": False}
    config = write_yaml(tmp_path / "enrol.yaml", base_config)
    enrolled = run_cli("enroll", "-c", str(config), "--camera", "--name", "Barack Obama", "--frames", "2")
    assert enrolled.returncode == 0, enrolled.stderr
    result = json.loads(enrolled.stdout)
    assert [f["pose"] for f in result["frames"]] == ["frontal", "right"], enrolled.stderr
    assert "too like a frame already kept" in enrolled.stderr or "already kept" in enrolled.stderr
    written = {p.name for p in tmp_path.rglob("*") if p.is_file() and frames not in p.parents}
    assert written == {"enrol.yaml", "gallery.npz", "gallery.key"}, written  # templates only: no frame kept
    listed = [json.loads(line) for line in run_cli("roster", "list", "-c", str(config)).stdout.splitlines()]
    assert [(p["name"], p["photos"]) for p in listed] == [("Barack Obama", 2)]

    render_clip(tmp_path / "frames")  # the demo's visitors: Obama in a photo not used for enrolment, then others
    base_config["camera"] = {"kind": "replay", "path": str(tmp_path / "frames"), "fps": 10, "realtime": False}
    base_config["sinks"] = {"stdout": True}
    run = run_cli("run", "-c", str(write_yaml(tmp_path / "run.yaml", base_config)))
    assert run.returncode == 0, run.stderr
    checked_in = [json.loads(line)["name"] for line in run.stdout.splitlines()
                  if json.loads(line)["type"] == "check_in"]
    assert checked_in == ["Barack Obama"], run.stdout


def test_camera_enrolment_names_what_is_wrong(base_config, tmp_path):
    frames = tmp_path / "empty-doorway"
    frames.mkdir()
    for n in range(5):
        cv2.imwrite(str(frames / f"{n}.jpg"), np.full((480, 640, 3), 120, np.uint8))
    base_config["camera"] = {"kind": "replay", "path": str(frames), "fps": 10, "realtime": False}
    config = write_yaml(tmp_path / "c.yaml", base_config)
    result = run_cli("enroll", "-c", str(config), "--camera", "--name", "Nobody", "--timeout", "5")
    assert result.returncode == 2 and "no usable frame of Nobody" in result.stderr and "snapshot" in result.stderr
    bad = run_cli("enroll", "-c", str(config), "--camera", "--name", "X", "--frames", "0")
    assert bad.returncode == 2 and "--frames 0" in bad.stderr


def test_a_shared_session_ends_when_done_when_its_time_is_up_or_when_the_door_stops():
    """The MQTT camera form: the loop offers frames, a job waits. Done ends the wait at once; so does the door
    stopping (close); a timeout returns what was kept, and offers after it are ignored."""
    import time
    from types import SimpleNamespace

    from edge.recognition.camera_enrol import SharedSession

    image = np.zeros((8, 8, 3), np.uint8)
    frontal = SimpleNamespace(face=face_with(0.0, 0.5), quality=FaceQuality(120, 100, 0.95),
                              embedding=np.eye(128)[0])
    done = SharedSession(1)
    done.offer(image, [frontal])
    started = time.monotonic()
    assert [k.pose for k in done.wait(30).kept] == ["frontal"] and time.monotonic() - started < 1
    stopped = SharedSession(1)
    stopped.close()
    started = time.monotonic()
    assert stopped.wait(30).kept == [] and time.monotonic() - started < 1
    late = SharedSession(1)
    assert late.wait(0.1).kept == []
    late.offer(image, [frontal])
    assert late.session.kept == [] and late.over


def test_a_camera_that_gives_no_frame_ends_the_enrolment_at_its_timeout(base_config, tmp_path):
    """A camera that never answers (here a URL nothing listens on) must not hold `enroll --camera` forever."""
    base_config["camera"] = {"kind": "url", "url": "rtsp://127.0.0.1:9/none", "reconnect_initial_s": 0.5}
    config = write_yaml(tmp_path / "c.yaml", base_config)
    result = run_cli("enroll", "-c", str(config), "--camera", "--name", "X", "--timeout", "3", timeout=60)
    assert result.returncode == 2 and "gave no frame in 3 s" in result.stderr and "doctor" in result.stderr
