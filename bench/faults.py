"""The fault suite: a real daemon and a real mosquitto on loopback, attacked and broken on purpose.

    .venv/bin/python -m bench.faults [--only kills,fuzz,bomb,disk] [--long-outage-s 35]

Scenarios, one line of figures each (sent / received / lost / duplicates / peak RSS / frames dropped):
- kills: broker kill -9 three times (one long outage) and daemon kill -9 twice while events flow;
  also how long after each broker return the door was back online (a live, not retained, `online`).
- fuzz: 400 malformed, unsigned, oversized and unknown commands in about 25 s, plus real signed enrolments
  and reloads, while the camera replays at 10 fps in real time.
- bomb: a 20000 x 20000 PNG, a JPEG that claims 60000 x 60000, 21 tiny images, 20 PNGs of 5000 x 5000
  (just under the pixel limit) and 100k-deep JSON.
- disk: the outbox on a 1 MiB tmpfs filled to the last byte while events flow (needs root), then freed.
Writes bench/results/faults.json. Takes about 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import yaml

from bench.common import ROOT, PeakRss, default_model, machine, write
from edge.mqtt.embedded import Broker
from edge.outbox import Outbox
from edge.samples import sample
from tests.broker import Subscriber

DEVICE = "fault-door"
BASE = f"facecheck/{DEVICE}"
SITE_KEY = os.urandom(32).hex()
MEMORY_MAX_MB = 1024  # systemd/facecheck.service MemoryMax=1G


class Door:
    """`facecheck run` as a child process; samples its own peak RSS (VmHWM) while it lives."""

    def __init__(self, config: Path, log: Path):
        self.proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "-c", str(config)], cwd=ROOT,
                                     env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), stdout=subprocess.DEVNULL,
                                     stderr=open(log, "a"))
        self.rss = PeakRss(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def prepare(work: Path) -> dict:
    """The demo clip, a gallery with Obama and Biden, a site key: a config dict for one door."""
    from edge.app import build_identifier, gallery_file
    from edge.config import config_from_dict
    from edge.demo import render_clip
    from edge.enroll import enrol

    render_clip(work / "frames")
    model = default_model()
    config = config_from_dict({"models": {"dir": str(model.parent)}, "embedder": {"model": str(model)},
                               "matcher": {"gallery": str(work / "gallery.npz")}}, base_dir=work)
    identifier = build_identifier(config, with_matcher=False)
    for name, photos in {"Barack Obama": ["obama-1.jpg", "obama-2.jpg"], "Joe Biden": ["biden-1.jpg"]}.items():
        enrol(identifier, gallery_file(config), name, [sample(p) for p in photos], None, 4)
    (work / "command-key").write_text(SITE_KEY + "\n")
    return {
        "device_id": DEVICE,
        "camera": {"kind": "replay", "path": str(work / "frames"), "fps": 10, "loop": True, "realtime": True},
        "models": {"dir": str(model.parent)},
        "embedder": {"model": str(model)},
        "matcher": {"gallery": str(work / "gallery.npz"), "augmentations": 4},
        "confirmation": {"require_gesture": False, "unknown_frames": 4, "unknown_interval_s": 0, "cooldown_s": 0},
        "commands": {"allow": ["reload", "health", "roster", "enroll", "remove", "snapshot"],
                     "signing_key_file": str(work / "command-key"), "per_minute": 30},
        "log": {"stage_timing_every_s": 0},
    }


def scenario_dir(work: Path, name: str, base: dict, broker_port: int, **changes) -> tuple[Path, Path, Path]:
    folder = work / name
    folder.mkdir()
    gallery = folder / "gallery.npz"
    source = Path(base["matcher"]["gallery"])
    shutil.copy(source, gallery)
    shutil.copy2(source.with_suffix(".key"), gallery.with_suffix(".key"))  # sealed: no use without its key
    data = dict(base, matcher=dict(base["matcher"], gallery=str(gallery)),
                outbox={"path": str(folder / "outbox.sqlite")},
                mqtt={"port": broker_port, "keepalive_s": 5, "health_interval_s": 1}, **changes)
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    return config, folder / "daemon.log", Path(data["outbox"]["path"])


def delivery(sub: Subscriber, outbox: Path) -> dict:
    """sent = every seq the door decided; lost = decided and never received; duplicates = extra copies."""
    box = Outbox(outbox, DEVICE)
    sent, depth = box.last_seq(), box.depth()
    box.close()
    sub.wait_for(lambda: {e["seq"] for e in sub.events(f"{BASE}/events")} >= set(range(1, sent + 1)), 30)
    events = sub.events(f"{BASE}/events")
    seqs = [e["seq"] for e in events]
    ids = {}
    for e in events:
        ids.setdefault(e["seq"], set()).add(e["event_id"])
    return {"sent": sent, "received": len(set(seqs)), "lost": len(set(range(1, sent + 1)) - set(seqs)),
            "duplicates": len(seqs) - len(set(seqs)), "outbox_depth_after": depth,
            "seq_reused": sum(1 for v in ids.values() if len(v) > 1)}


def last_health(sub: Subscriber) -> dict:
    health = sub.events(f"{BASE}/health")
    return health[-1] if health else {}


def live_online(sub: Subscriber) -> int:
    with sub.lock:
        return sum(1 for t, p, retained in sub.messages if t == f"{BASE}/status" and p == b"online" and not retained)


def wait_events(sub: Subscriber, at_least: int, timeout: float = 60) -> bool:
    return sub.wait_for(lambda: len(sub.on(f"{BASE}/events")) >= at_least, timeout)


def scenario_kills(work: Path, base: dict, long_outage: float) -> dict:
    broker = Broker(work / "kills-broker").start()
    config, log, outbox = scenario_dir(work, "kills", base, broker.port)
    sub = Subscriber(broker.port, [f"{BASE}/events", f"{BASE}/status", f"{BASE}/health"], client_id="kills")
    doors = [Door(config, log)]
    back_s = []
    try:
        wait_events(sub, 3)
        for outage in (3.0, long_outage, 3.0):
            before = len(sub.on(f"{BASE}/events"))
            broker.kill()
            time.sleep(outage)
            seen = live_online(sub)
            broker.start()
            returned = time.monotonic()
            sub.wait_for(lambda: live_online(sub) > seen, 30)
            back_s.append(round(time.monotonic() - returned, 2))
            wait_events(sub, before + 3)
            if len(doors) < 3:  # a daemon kill -9 after the first two outages, and a restart
                doors[-1].kill()
                time.sleep(1)
                doors.append(Door(config, log))
                wait_events(sub, len(sub.on(f"{BASE}/events")) + 2)
        code = doors[-1].stop()
        result = {**delivery(sub, outbox), "peak_rss_mb": round(max(d.rss.peak_kb for d in doors) / 1024),
                  "frames_dropped_last_run": last_health(sub).get("frames_dropped"), "exit_code": code,
                  "online_after_broker_return_s": back_s, "broker_kills": 3, "daemon_kills": 2,
                  "long_outage_s": long_outage}
    finally:
        for door in doors:
            if door.alive():
                door.kill()
        sub.close()
        broker.kill()
    return result


def signed(name: str, body: dict, device: str = DEVICE, **kwargs) -> bytes:
    from edge.auth import sign

    return json.dumps(sign(SITE_KEY.encode(), device, name, body, **kwargs)).encode()


def fuzz_payloads(rng: random.Random, n: int) -> list[tuple[str, bytes]]:
    """Malformed, unsigned, replayed, oversized, wrongly shaped and unknown commands."""
    makers = [
        lambda: ("health", b"{not json"),
        lambda: ("health", b'{"a":' + b"[" * 3000 + b"]" * 3000 + b"}"),
        lambda: ("roster", json.dumps({"unexpected": rng.random()}).encode()),
        lambda: ("enroll", b'{"name": "Eve", "images": ["AAAA"]}'),
        lambda: ("enroll", signed("enroll", {"name": "X", "images": ["!!!"]})),
        lambda: ("remove", b'{"person_id": "../../etc/passwd"}'),
        lambda: ("remove", signed("remove", {"person_id": "x"}, device="other-door")),
        lambda: ("snapshot", signed("snapshot", {}, ts=int(time.time()) - 3600)),
        lambda: (rng.choice(["selfdestruct", "exec", "$SYS", "a" * 60]), b"{}"),
        lambda: ("reload", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2000)))),
        lambda: ("enroll", b"x" * 4_000_001),
        lambda: ("health", b"[]"),
    ]
    return [rng.choice(makers)() for _ in range(n)]


@contextmanager
def serving_door(work: Path, name: str, base: dict):
    """A broker, a door serving events on it and a subscriber to all of its topics, for one scenario;
    yields (door, subscriber, outbox path) once events flow, and kills what is left afterwards."""
    broker = Broker(work / f"{name}-broker").start()
    config, log, outbox = scenario_dir(work, name, base, broker.port)
    sub = Subscriber(broker.port, [f"{BASE}/#"], client_id=name)
    door = Door(config, log)
    try:
        wait_events(sub, 2)
        time.sleep(2)
        yield door, sub, outbox
    finally:
        if door.alive():
            door.kill()
        sub.close()
        broker.kill()


def scenario_fuzz(work: Path, base: dict, commands: int = 400, seconds: float = 25.0) -> dict:
    with serving_door(work, "fuzz", base) as (door, sub, outbox):
        start_health = last_health(sub)
        payloads = fuzz_payloads(random.Random(7), commands)
        jpeg = base64.b64encode(sample("collins-1.jpg").read_bytes()).decode()
        # Real heavy work among the junk, early enough that the per-topic rate limit still admits it.
        real = {5: ("enroll", signed("enroll", {"name": "Eileen Collins", "images": [jpeg]})),
                15: ("reload", b"{}"),
                25: ("enroll", signed("enroll", {"name": "Eileen Collins", "person_id": "collins",
                                                 "images": [jpeg] * 3}))}
        for i, (name, payload) in enumerate(payloads):
            name, payload = real.get(i, (name, payload))
            sub.client.publish(f"{BASE}/cmd/{name}", payload, qos=1)
            time.sleep(seconds / commands)
        answered = lambda: len([t for t, _, _ in sub.messages if t.endswith("/result")])  # noqa: E731
        sub.wait_for(lambda: answered() >= commands, 30)
        time.sleep(2)
        end_health = last_health(sub)
        results = [json.loads(p) for t, p, _ in sub.messages if t.endswith("/result")]
        code = door.stop()
        return {**delivery(sub, outbox), "commands_sent": commands, "answered": len(results),
                "accepted": sum(1 for r in results if r["ok"]),
                "enrolled": sum(1 for r in results if r["ok"] and r.get("person_id")),
                "peak_rss_mb": round(door.rss.peak_kb / 1024),
                "frames_dropped": end_health.get("frames_dropped", 0) - start_health.get("frames_dropped", 0),
                "frames": end_health.get("frames", 0) - start_health.get("frames", 0),
                "fps": end_health.get("fps"), "alive_until_stopped": code == 0, "exit_code": code}


def scenario_bomb(work: Path, base: dict) -> dict:
    from tests.test_hostile import jpeg_claiming, png_bomb

    with serving_door(work, "bomb", base) as (door, sub, outbox):
        start_health = last_health(sub)
        tiny = base64.b64encode(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()).decode()
        big = base64.b64encode(png_bomb(5000, 5000)).decode()
        attacks = [
            ("enroll", signed("enroll", {"name": "Bomb", "images": [base64.b64encode(png_bomb()).decode()]})),
            ("enroll", signed("enroll", {"name": "Liar", "images": [base64.b64encode(jpeg_claiming(60000, 60000)).decode()]})),
            ("enroll", signed("enroll", {"name": "Many", "images": [tiny] * 21})),
            ("enroll", signed("enroll", {"name": "Tiny", "images": [tiny] * 20})),
            ("enroll", signed("enroll", {"name": "Big", "images": [big] * 20})),  # 20 x 75 MB decoded, allowed size
            ("health", b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ]
        for name, payload in attacks * 3:
            sub.client.publish(f"{BASE}/cmd/{name}", payload, qos=1)
            time.sleep(0.5)
        sub.wait_for(lambda: len([t for t, _, _ in sub.messages if t.endswith("/result")]) >= len(attacks) * 3, 60)
        time.sleep(2)
        end_health = last_health(sub)
        results = [json.loads(p) for t, p, _ in sub.messages if t.endswith("/result")]
        code = door.stop()
        return {**delivery(sub, outbox), "attacks": len(attacks) * 3, "refused": sum(1 for r in results if not r["ok"]),
                "peak_rss_mb": round(door.rss.peak_kb / 1024),
                "frames_dropped": end_health.get("frames_dropped", 0) - start_health.get("frames_dropped", 0),
                "exit_code": code}


def scenario_disk(work: Path, base: dict) -> dict:
    from tests.conftest import fill

    if os.geteuid() != 0:
        return {"skipped": "mounting a tmpfs needs root"}
    broker = Broker(work / "disk-broker").start()
    mount = work / "disk-small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    config, log, _ = scenario_dir(work, "disk", base, broker.port)
    data = yaml.safe_load(config.read_text())
    data["outbox"] = {"path": str(mount / "outbox.sqlite")}
    config.write_text(yaml.safe_dump(data))
    sub = Subscriber(broker.port, [f"{BASE}/events", f"{BASE}/health"], client_id="disk")
    door = Door(config, log)
    try:
        wait_events(sub, 3)
        filler = fill(mount)
        full_at = len(sub.on(f"{BASE}/events"))
        sub.wait_for(lambda: any(h.get("disk_full") for h in sub.events(f"{BASE}/health")), 30)
        wait_events(sub, full_at + 8)
        broker.stop()  # broker away too: events wait in memory only
        time.sleep(3)
        broker.start()
        wait_events(sub, full_at + 12)
        during_full = len(sub.on(f"{BASE}/events")) - full_at
        filler.unlink()
        seen = len(sub.on(f"{BASE}/health"))
        sub.wait_for(lambda: any(not h["disk_full"] for h in sub.events(f"{BASE}/health")[seen:]), 30)
        code = door.stop()
        return {**delivery(sub, mount / "outbox.sqlite"), "events_while_full": during_full,
                "peak_rss_mb": round(door.rss.peak_kb / 1024), "exit_code": code,
                "frames_dropped": last_health(sub).get("frames_dropped"),
                "logged_disk_full": "DISK FULL OR FAILING" in log.read_text(),
                "logged_recovery": "disk writable again" in log.read_text()}
    finally:
        if door.alive():
            door.kill()
        sub.close()
        broker.kill()
        subprocess.run(["umount", "-l", str(mount)], check=False)


def line(name: str, r: dict) -> str:
    if "skipped" in r:
        return f"{name:6} skipped: {r['skipped']}"
    keys = ("sent", "received", "lost", "duplicates", "peak_rss_mb", "frames_dropped", "frames_dropped_last_run",
            "online_after_broker_return_s", "answered", "accepted", "refused", "events_while_full", "exit_code")
    return f"{name:6} " + "  ".join(f"{k} {r[k]}" for k in keys if k in r)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="kills,fuzz,bomb,disk")
    parser.add_argument("--long-outage-s", type=float, default=35.0)
    args = parser.parse_args(argv)
    chosen = args.only.split(",")
    results: dict = {"machine": machine(), "memory_max_mb": MEMORY_MAX_MB}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = prepare(work)
        runs = {"kills": lambda: scenario_kills(work, base, args.long_outage_s),
                "fuzz": lambda: scenario_fuzz(work, base), "bomb": lambda: scenario_bomb(work, base),
                "disk": lambda: scenario_disk(work, base)}
        for name in chosen:
            started = time.monotonic()
            results[name] = {**runs[name](), "seconds": round(time.monotonic() - started, 1)}
            print(line(name, results[name]), flush=True)
    print(f"wrote {write('faults', results)}")
    failed = [n for n in chosen if results[n].get("lost") or results[n].get("exit_code", 0) != 0
              or results[n].get("peak_rss_mb", 0) >= MEMORY_MAX_MB]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
