"""A door under test: `facecheck run` as a child process, its topic base, and signed commands to it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = "facecheck/test-door"
SITE_KEY = "0123456789abcdef" * 4


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def write_key(path: Path) -> Path:
    path.write_text(SITE_KEY + "\n")
    return path


def signed(name: str, body: dict, device: str = "test-door", **kwargs) -> bytes:
    from edge.security.command_auth import sign

    return json.dumps(sign(SITE_KEY.encode(), device, name, body, **kwargs)).encode()


class DaemonProcess:
    def __init__(self, config: dict, tmp_path: Path, name: str = "config.yaml"):
        self.path = write_yaml(tmp_path / name, config)
        self.log = open(tmp_path / "daemon.log", "a")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "-c", str(self.path)], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.log)

    def terminate(self, timeout=30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def wait(self, timeout=60) -> int:
        return self.proc.wait(timeout)


def looping(config: dict) -> dict:
    config = dict(config)
    config["camera"] = dict(config["camera"], loop=True)
    return config


def assert_every_event_once_in_order(events: list[dict], last_seq: int) -> None:
    by_seq: dict[int, str] = {}
    for event in events:
        previous = by_seq.setdefault(event["seq"], event["event_id"])
        assert previous == event["event_id"], f"seq {event['seq']} carried two different events"
    assert last_seq > 0
    assert sorted(by_seq) == list(range(1, last_seq + 1)), "an event is missing from the sequence"
    first_seen = []
    for event in events:
        if event["seq"] not in first_seen:
            first_seen.append(event["seq"])
    assert first_seen == sorted(first_seen), "events first arrived out of order"
