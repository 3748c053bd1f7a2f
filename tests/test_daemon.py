"""`facecheck run` end to end on replayed frames: events out, timing logged, clean stop on SIGTERM."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from edge.cli.demo import render_clip
from tests.conftest import ROOT, enrol_obama_and_biden, run_cli, write_yaml


@pytest.mark.parametrize("embedder", ["facenet", "mobilefacenet", "both fused"])
def test_run_replays_frames_and_emits_identities_until_the_end(base_config, tmp_path, embedder, request):
    """The same clip, the same events, with either embedder (embedder.model) or both fused (embedder.fuse_with). Obama's
    visit is a photo the door was not enrolled with, so after his track ends the door learns it (adaptation, on here; off by
    default) and says so; Biden's visitor is his enrolment photo itself, nothing new to learn."""
    mobilefacenet = str(request.getfixturevalue("mobilefacenet_model")) if embedder != "facenet" else None
    if embedder == "mobilefacenet":
        base_config["embedder"] = {"model": mobilefacenet, "fuse_with": []}
    elif embedder == "both fused":
        base_config["embedder"] = {"model": base_config["embedder"]["model"], "fuse_with": [mobilefacenet]}
    expected = render_clip(tmp_path / "frames")
    base_config["sinks"] = {"stdout": True}
    base_config["confirmation"] = {"require_gesture": False, "unknown_frames": 4, "unknown_interval_s": 0}
    base_config["adaptation"] = {"enabled": True}
    config = write_yaml(tmp_path / "config.yaml", base_config)
    enrol_obama_and_biden(config)
    result = run_cli("run", "-c", str(config))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["type"], e["name"]) for e in events] == [
        ("check_in", "Barack Obama"), ("template_added", "Barack Obama"), ("unknown_face", None),
        ("check_in", "Joe Biden"), ("unknown_face", None)]
    assert expected == ["Barack Obama", None, "Joe Biden", None]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert all(e["device_id"] == "test-door" and e["ts"].endswith("Z") for e in events)
    assert "stopped after 92 frames" in result.stderr
    if embedder == "both fused":  # what it learned through the fused identity is kept beside each model's templates
        from edge.config import load_config
        from edge.identity.gallery import GalleryFile

        stored = GalleryFile.from_config(load_config(config)).load()
        assert len(stored.models) == 2 and stored.adapted.model_id == "fusion:" + "+".join(stored.models)


def test_run_logs_stage_timing_and_stops_cleanly_on_sigterm(base_config, tmp_path):
    render_clip(tmp_path / "frames")
    base_config["camera"] = {"kind": "replay", "path": str(tmp_path / "frames"), "fps": 20, "loop": True,
                             "realtime": True}
    base_config["log"] = {"stage_timing_every_s": 1}
    config = write_yaml(tmp_path / "config.yaml", base_config)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "-c", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if "timing: fps" in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=20)
    log = "".join(lines) + rest
    assert proc.returncode == 0, log
    timing = next(line for line in lines if "timing: fps" in line)
    for stage in ("detect", "align", "embed", "match", "decide", "frame"):
        assert stage in timing, timing
    assert "SIGTERM received" in log
    assert "stopped after" in log


def test_run_with_a_missing_replay_folder_fails_with_the_path(base_config, tmp_path):
    config = write_yaml(tmp_path / "config.yaml", base_config)
    result = run_cli("run", "-c", str(config))
    assert result.returncode == 2
    assert str(tmp_path / "frames") in result.stderr


def test_with_gestures_required_nobody_checks_in_without_one(base_config, tmp_path):
    """The clip's visitors make no gesture: recognised people time out, strangers are still reported,
    and pose runs only while someone awaits confirmation."""
    render_clip(tmp_path / "frames")
    base_config["sinks"] = {"stdout": True}
    base_config["confirmation"] = {"require_gesture": True, "timeout_s": 0.5, "unknown_frames": 4,
                                   "unknown_interval_s": 0}
    base_config["log"] = {"stage_timing_every_s": 0, "level": "info"}
    config = write_yaml(tmp_path / "config.yaml", base_config)
    enrol_obama_and_biden(config)
    result = run_cli("run", "-c", str(config))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["type"] for e in events] == ["unknown_face", "unknown_face"]
    assert "Barack Obama recognised; awaiting a confirmation gesture" in result.stderr
    assert "did not confirm within 0.5s" in result.stderr
    pose = re.search(r"pose [0-9.]+/[0-9.]+ms", result.stderr)
    assert pose, "pose ran while a confirmation was pending"
    frames = int(re.search(r"stopped after (\d+) frames", result.stderr).group(1))
    assert frames == 92


def test_demo_recognises_the_sample_people():
    result = run_cli("demo", timeout=300)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["type"], e["name"]) for e in events] == [
        ("check_in", "Barack Obama"), ("unknown_face", None), ("check_in", "Joe Biden"), ("unknown_face", None)]
    assert "recognised and checked in: Barack Obama, Joe Biden" in result.stderr
    assert "learned from confirmed visits (adaptation): off" in result.stderr, "learning is off by default"
