"""Reloads that do what they say, and slow work beside the frame loop (edge/service/reload.py, edge/jobs.py)."""

import threading
import time

import pytest

from edge.config import load_config
from edge.inference.detector import BlazeFaceDetector
from edge.inference.gestures import GestureStage
from edge.inference.pose import BlazePose
from edge.jobs import BackgroundJobs, JobFailed, Outcome
from edge.samples import sample
from testkit.brokers import wait_until
from tests.conftest import run_cli, write_yaml
from tests.test_gestures import ARMS, make_pose


def test_jobs_work_off_the_loop_and_swap_in_the_loop():
    jobs = BackgroundJobs()
    seen = {}

    def work():
        seen["work"] = threading.current_thread().name
        time.sleep(0.2)
        return Outcome({"n": 1}, lambda: seen.setdefault("apply", threading.current_thread().name))

    answers = []
    started = time.monotonic()
    jobs.submit("slow", work, answers.append)
    jobs.submit("refused", lambda: (_ for _ in ()).throw(JobFailed("no such person")), answers.append)
    jobs.submit("broken", lambda: 1 / 0, answers.append)
    assert time.monotonic() - started < 0.05, "submit never waits for the work"
    assert jobs.busy() == 3 and answers == []
    deadline = time.monotonic() + 10
    while len(answers) < 3 and time.monotonic() < deadline:
        jobs.pump()
        time.sleep(0.01)
    assert answers[0] == {"ok": True, "error": None, "n": 1}
    assert answers[1] == {"ok": False, "error": "no such person"}
    assert answers[2]["ok"] is False and "internal error: division by zero" in answers[2]["error"]
    assert seen["work"] == "facecheck-jobs" and seen["apply"] == threading.current_thread().name
    assert jobs.busy() == 0 and jobs.finish(1.0)


class GestureAtTheFace:
    """Stands in for the pose model once the stage exists: a body doing `gesture`, built from geometry, whose
    nose and eyes sit in the face the real detector finds (no registry photo shows an O)."""

    def __init__(self, gesture: str):
        self.gesture = gesture
        self.faces = BlazeFaceDetector(threads=1)
        self.calls = 0

    def poses(self, image, tiles=True):
        self.calls += 1
        poses = []
        for face in self.faces.detect(image):
            x, y, w, h = face.box
            scale = 0.8 * w
            poses.append(make_pose(ARMS[self.gesture], scale=scale, origin=(x + w / 2, y + h / 2 + 0.65 * scale)))
        return poses


@pytest.fixture
def door(base_config, tmp_path):
    """A config file on the demo clip with Obama enrolled, faces only."""
    from edge.cli.demo import render_clip

    render_clip(tmp_path / "frames")
    base_config["camera"] = {"kind": "replay", "path": str(tmp_path / "frames"), "fps": 30, "loop": True,
                             "realtime": True}
    base_config["confirmation"] = {"require_gesture": False, "cooldown_s": 0, "unknown_interval_s": 0}
    path = write_yaml(tmp_path / "config.yaml", base_config)
    assert run_cli("enroll", "-c", str(path), "--name", "Barack Obama", str(sample("obama-1.jpg")),
                   str(sample("obama-2.jpg"))).returncode == 0
    return path, base_config


def test_sighup_turns_gestures_on_and_then_an_o_confirms(door):
    from edge.service.daemon import Daemon

    path, data = door
    daemon = Daemon(load_config(path), sinks=[])
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        assert wait_until(lambda: any(e.type == "check_in" for e in daemon.events), 60), "face-only check-in first"
        assert all(e.gesture is None for e in daemon.events) and daemon.pipeline.gestures is None
        data["confirmation"] = dict(data["confirmation"], require_gesture=True)
        write_yaml(path, data)
        before = daemon.pipeline
        daemon.reload_requested.set()  # what SIGHUP sets
        assert wait_until(lambda: daemon.pipeline is not before, 60), "the rebuilt pipeline is swapped in"
        stage = daemon.pipeline.gestures
        assert isinstance(stage, GestureStage) and isinstance(stage.pose, BlazePose), "the real pose stage"
        assert daemon.config.confirmation.require_gesture and daemon.pipeline.identifier.embedder is \
            before.identifier.embedder, "models are reused, not reloaded"
        stage.pose = GestureAtTheFace("confirm")
        count = len(daemon.events)
        assert wait_until(lambda: any(e.type == "check_in" and e.gesture == "confirm"
                                      for e in list(daemon.events)[count:]), 60)
        confirmed = next(e for e in list(daemon.events)[count:] if e.type == "check_in")
        assert confirmed.name == "Barack Obama" and stage.pose.calls > 0
    finally:
        daemon.stop_requested.set()
        runner.join(30)


def test_reload_refuses_restart_only_and_unbuildable_changes_and_keeps_serving(door, tmp_path):
    from edge.jobs import run_job
    from edge.service.daemon import Daemon

    path, data = door
    daemon = Daemon(load_config(path), sinks=[])
    running = daemon.pipeline
    write_yaml(path, dict(data, camera=dict(data["camera"], fps=5), matcher=dict(data["matcher"], augmentations=2)))
    refused = run_job("reload", daemon.reloader.config)
    assert refused.result["ok"] is False and refused.apply is None
    assert "camera changed" in refused.result["error"] and "takes a restart" in refused.result["error"]
    write_yaml(path, dict(data, confirmation=dict(data["confirmation"], require_gesture=True),
                          gestures={"classifier": "trained", "trained_model": str(tmp_path / "none.npz")}))
    unbuildable = run_job("reload", daemon.reloader.config)
    assert unbuildable.result["ok"] is False and "none.npz: no gesture model there" in unbuildable.result["error"]
    path.write_text("camera: [unclosed\n")
    broken = run_job("reload", daemon.reloader.config)
    assert broken.result["ok"] is False and "config refused" in broken.result["error"]
    assert daemon.pipeline is running and daemon.config.confirmation.require_gesture is False
    write_yaml(path, dict(data, confirmation=dict(data["confirmation"], hold_frames=5, hold_window=5),
                          tracking={"max_age_s": 0.3}))
    applied = run_job("reload", daemon.reloader.config)
    assert applied.result == {"ok": True, "error": None, "people": 1, "roster_version": 1,
                              "reloaded": ["confirmation", "tracking"]}
    assert daemon.pipeline is running, "nothing changes before the loop applies the swap"
    applied.apply()
    assert daemon.pipeline is not running and daemon.pipeline.confirmation.config.hold_frames == 5
    assert daemon.pipeline.tracker.max_age_s == 0.3 and daemon.pipeline.identifier.detector is running.identifier.detector
    daemon.outbox.close()
