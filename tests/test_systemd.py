"""Running under systemd: the unit file, sd_notify over a real datagram socket, watchdog, SIGHUP, doctor, snapshot.

systemd is not PID 1 here, so the unit is checked with systemd-analyze and the notify protocol with a
real AF_UNIX datagram socket standing in for systemd's.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.camera.base import SourceUnavailable
from edge.config import config_from_dict
from edge.samples import sample
from tests.conftest import ROOT, run_cli, write_yaml

UNIT = ROOT / "systemd" / "facecheck.service"


def local_unit(tmp_path: Path) -> Path:
    """The shipped unit with ExecStart pointing at this checkout's venv (verify wants a real binary)."""
    text = UNIT.read_text().replace("/opt/facecheck/venv/bin/facecheck", str(Path(sys.executable).parent / "facecheck"))
    path = tmp_path / "facecheck.service"
    path.write_text(text)
    return path


@pytest.fixture
def analyze():
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return tool


def test_systemd_analyze_verify_accepts_the_unit(analyze, tmp_path):
    result = subprocess.run([analyze, "verify", str(local_unit(tmp_path))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "facecheck.service" not in result.stderr, result.stderr


def test_unit_security_exposure_is_at_most_2_5(analyze, tmp_path):
    result = subprocess.run([analyze, "security", "--offline=yes", str(local_unit(tmp_path))],
                            capture_output=True, text=True)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security exposure: {exposure}")
    assert exposure <= 2.5


def test_unit_declares_what_operators_rely_on():
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "SupplementaryGroups=video",
                 "StateDirectory=facecheck", "CacheDirectory=facecheck", "ConfigurationDirectory=facecheck",
                 "LoadCredential=mqtt-password:", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                 "NoNewPrivileges=yes", "RestrictAddressFamilies=", "SystemCallFilter=@system-service",
                 "DeviceAllow=char-video4linux", "MemoryMax=", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in text, line


class NotifySocket:
    """A real AF_UNIX datagram socket playing systemd's part."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def lines(self, prefix: str = "") -> list[str]:
        return [m for _, m in self.messages if m.startswith(prefix)]

    def close(self):
        self._stop.set()
        self._thread.join()
        self.sock.close()


def replay_config(base_config, tmp_path, **camera):
    from edge.cli.demo import render_clip

    render_clip(tmp_path / "frames")
    base_config["camera"] = {"kind": "replay", "path": str(tmp_path / "frames"), "fps": 20, "loop": True,
                             "realtime": True, **camera}
    return base_config


def test_sd_notify_ready_status_watchdog_and_stopping(base_config, tmp_path):
    notify = NotifySocket(tmp_path / "notify.sock")
    config = write_yaml(tmp_path / "config.yaml", replay_config(base_config, tmp_path))
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="400000", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "-c", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(notify.lines("WATCHDOG=1")) < 4:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.stderr.read()
    time.sleep(0.3)
    notify.close()
    lines = [m for _, m in notify.messages]
    assert lines[0] == "STATUS=loading models"
    assert "STATUS=opening camera replay:" + str(tmp_path / "frames") in lines
    ready = lines.index("READY=1")
    assert lines[ready + 1].startswith("STATUS=running: 0 enrolled, camera up, no broker configured")
    watchdog = [t for t, m in notify.messages if m == "WATCHDOG=1"]
    assert len(watchdog) >= 4
    gaps = np.diff(watchdog)
    assert gaps.max() < 0.4, "pinged at least once per WatchdogSec while frames flow"
    assert lines[-2:] == ["STOPPING=1", "STATUS=stopping: flushing events"]


class StallingCamera:
    """Stands in for a camera device node: delivers frames, then hangs like a wedged USB camera."""

    name = "stalling-camera"
    realtime = True

    def __init__(self, frames: int):
        self.frames = frames
        self.stall = threading.Event()
        self.release = threading.Event()

    def open(self):
        pass

    def read(self):
        if self.frames <= 0:
            self.stall.set()
            self.release.wait(30)
            raise SourceUnavailable("released")
        self.frames -= 1
        time.sleep(0.02)
        return np.full((480, 640, 3), 120, np.uint8), None

    def close(self):
        pass


def test_watchdog_stops_when_frames_stall(base_config, tmp_path, monkeypatch):
    from edge.service.daemon import Daemon

    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    base_config["camera"] = {"kind": "replay", "path": str(tmp_path)}
    daemon = Daemon(config_from_dict(base_config, base_dir=tmp_path))
    camera = StallingCamera(frames=40)
    daemon.capture.source = camera
    runner = threading.Thread(target=daemon.run)
    runner.start()
    assert camera.stall.wait(30)
    stalled_at = time.monotonic()
    time.sleep(1.5)
    daemon.stop_requested.set()
    camera.release.set()
    runner.join(30)
    notify.close()
    pings = [t for t, m in notify.messages if m == "WATCHDOG=1"]
    assert len([t for t in pings if t < stalled_at]) >= 3, "pinged while frames flowed"
    assert not [t for t in pings if t > stalled_at + 0.1], "no ping once frames stopped"


def test_sighup_reloads_a_changed_gallery_and_config(base_config, tmp_path):
    config_data = replay_config(base_config, tmp_path)
    config_data["log"] = {"stage_timing_every_s": 0}
    config = write_yaml(tmp_path / "config.yaml", config_data)
    assert run_cli("enroll", "-c", str(config), "--name", "Joe Biden", str(sample("biden-1.jpg"))).returncode == 0
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    log = open(tmp_path / "daemon.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "-c", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        def wait_log(text, timeout=60):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if text in (tmp_path / "daemon.log").read_text():
                    return True
                time.sleep(0.1)
            return False

        assert wait_log("running: device test-door")
        assert run_cli("enroll", "-c", str(config), "--name", "Barack Obama",
                       str(sample("obama-1.jpg"))).returncode == 0
        config_data["confirmation"] = dict(config_data["confirmation"], cooldown_s=5)
        write_yaml(config, config_data)
        proc.send_signal(signal.SIGHUP)
        assert wait_log("config reloaded (confirmation); gallery: 2 people"), (tmp_path / "daemon.log").read_text()
        config_data["camera"] = dict(config_data["camera"], fps=5)
        write_yaml(config, config_data)
        proc.send_signal(signal.SIGHUP)
        assert wait_log("reload refused: camera changed in"), (tmp_path / "daemon.log").read_text()
        assert "takes a restart (systemctl restart facecheck); nothing was reloaded" in (tmp_path / "daemon.log").read_text()
        assert proc.poll() is None, "still running, camera untouched"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_doctor_passes_on_a_good_setup(base_config, tmp_path, broker):
    config_data = replay_config(base_config, tmp_path, realtime=False)
    config_data["mqtt"] = {"enabled": True, "port": broker.port}
    config = write_yaml(tmp_path / "config.yaml", config_data)
    assert run_cli("enroll", "-c", str(config), "--name", "Joe Biden", str(sample("biden-1.jpg"))).returncode == 0
    result = run_cli("doctor", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:8]] == [
        ["PASS", "models"], ["PASS", "matching"], ["PASS", "gallery"], ["PASS", "camera"], ["PASS", "framing"],
        ["PASS", "broker"], ["PASS", "outbox"], ["PASS", "clock"]]
    assert re.search(r"framing +\d+ bodies seen, their wrists and elbows inside the frame", lines[4]), lines[4]
    assert re.search(r"matching +operating point of facenet-keras-ms1m-int8full-\S+: threshold [01]\.\d+, 0 of \d+ impostor",
                     lines[1]), lines[1]
    assert re.search(r"learning from visits off: 0 learned template\(s\) \(at most 10 per person\), each accepting within "
                     r"[01]\.\d{3}$", lines[1]), lines[1]
    assert lines[-1] == "8/8 checks passed"


def test_doctor_reports_each_failing_check_and_exits_1(base_config, tmp_path, facenet_model):
    from edge.cli.local_broker import free_port

    model = tmp_path / "model.tflite"
    shutil.copy(facenet_model, model)
    shutil.copy(str(facenet_model) + ".json", str(model) + ".json")
    with open(model, "r+b") as handle:
        handle.seek(10_000)
        handle.write(b"\x00" * 16)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "gallery.npz").write_bytes(b"corrupt")
    base_config.update({
        "embedder": {"model": str(model), "fuse_with": []},
        "camera": {"kind": "replay", "path": str(tmp_path / "no-frames")},
        "mqtt": {"enabled": True, "port": free_port()},
    })
    result = run_cli("doctor", "-c", str(write_yaml(tmp_path / "config.yaml", base_config)), timeout=120)
    assert result.returncode == 1
    out = result.stdout
    assert re.search(r"FAIL models .*does not match its sidecar", out), out
    assert re.search(r"FAIL gallery .*gallery.npz", out), out
    assert re.search(r"FAIL camera .*no images", out), out
    assert re.search(r"FAIL broker .*127.0.0.1", out), out
    assert "PASS outbox" in out and "PASS clock" in out and "PASS matching" in out
    assert re.search(r"WARN framing +skipped: no frame", out), out
    assert out.splitlines()[-1] == "4/8 checks passed"


def test_snapshot_writes_an_annotated_jpeg(base_config, tmp_path):
    import cv2

    config = write_yaml(tmp_path / "config.yaml", replay_config(base_config, tmp_path, realtime=False))
    assert run_cli("enroll", "-c", str(config), "--name", "Barack Obama", str(sample("obama-1.jpg")),
                   str(sample("obama-2.jpg"))).returncode == 0
    out = tmp_path / "aim.jpg"
    result = run_cli("snapshot", "-c", str(config), "-o", str(out))
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["faces"][0]["name"] == "Barack Obama"
    image = cv2.imread(str(out))
    assert image.shape == (480, 640, 3)
    green = (image[:, :, 1] > 150) & (image[:, :, 0] < 100) & (image[:, :, 2] < 100)
    assert green.sum() > 100, "the known face's box is drawn in green"
    bad = run_cli("snapshot", "-c", str(config), "-o", str(tmp_path / "nope" / "x.jpg"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_install_service_dry_run_prints_the_steps():
    result = run_cli("install-service", "--dry-run")
    assert result.returncode == 0
    for step in ("python3 -m venv /opt/facecheck/venv", "facecheck-convert bundle --out models",
                 "SRC/models/*.tflite SRC/models/*.tflite.json /var/lib/facecheck/models/",
                 "systemd/facecheck.service /etc/systemd/system/facecheck.service", "systemctl enable --now facecheck",
                 "facecheck doctor"):
        assert step in result.stdout, step
    assert run_cli("install-service").returncode == 2
