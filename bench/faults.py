"""The fault suite: a real daemon and a real mosquitto on loopback, attacked and broken on purpose.

    .venv/bin/python -m bench.faults [--only kills,fuzz,bomb,disk,cluster] [--long-outage-s 35]

Scenarios, one line of figures each (sent / received / lost / duplicates / peak RSS / frames dropped):
- kills: broker kill -9 three times (one long outage) and daemon kill -9 twice while events flow;
  also how long after each broker return the door was back online (a live, not retained, `online`).
- fuzz: 400 malformed, unsigned, oversized and unknown commands in about 25 s, plus real signed enrolments
  and reloads, while the camera replays at 10 fps in real time.
- bomb: a 20000 x 20000 PNG, a JPEG that claims 60000 x 60000, 21 tiny images, 20 PNGs of 5000 x 5000
  (just under the pixel limit) and 100k-deep JSON.
- disk: the outbox on a 1 MiB tmpfs filled to the last byte while events flow (needs root), then freed.
- cluster: three doors (MQTT 3.1.1) first on three different RabbitMQ nodes, a fourth deciding 50 events/s,
  two AMQP backends (examples/backend_amqp.py) into one store; each node killed with -9 in turn and restarted
  under load; the site roster published before and after. Also: stored twice, longest gap, longest wait from
  decision to store, each door's time to reach another node, the roster on every door and node.
Writes bench/results/faults.json. Takes about 6 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import yaml

from bench.common import ROOT, SMOKE_HELP, PeakRss, default_embedder, default_model, machine, smoke_mode, write
from edge.cli.local_broker import Broker
from edge.messaging.outbox import Outbox
from edge.samples import sample
from testkit.brokers import Subscriber, wait_until
from testkit.disk import fill, small_tmpfs
from testkit.hostile import jpeg_claiming, png_bomb

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
    from edge.cli.demo import render_clip
    from edge.config import config_from_dict
    from edge.identity.gallery import GalleryFile
    from edge.recognition.enroll import enrol
    from edge.service.assembly import build_identifier

    render_clip(work / "frames")
    model = default_model()
    config = config_from_dict({"models": {"dir": str(model.parent)}, "embedder": default_embedder(),
                               "matcher": {"gallery": str(work / "gallery.npz")}}, base_dir=work)
    identifier = build_identifier(config, with_matcher=False)
    for name, photos in {"Barack Obama": ["obama-1.jpg", "obama-2.jpg"], "Joe Biden": ["biden-1.jpg"]}.items():
        enrol(identifier, GalleryFile.from_config(config), name, [sample(p) for p in photos], None, 4)
    (work / "command-key").write_text(SITE_KEY + "\n")
    return {
        "device_id": DEVICE,
        "camera": {"kind": "replay", "path": str(work / "frames"), "fps": 10, "loop": True, "realtime": True},
        "models": {"dir": str(model.parent)},
        "embedder": default_embedder(),
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
            seen = sub.live_online(BASE)
            broker.start()
            returned = time.monotonic()
            sub.wait_for(lambda: sub.live_online(BASE) > seen, 30)
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
    from edge.security.command_auth import sign

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


def scenario_bomb(work: Path, base: dict, rounds: int = 3) -> dict:
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
        for name, payload in attacks * rounds:
            sub.client.publish(f"{BASE}/cmd/{name}", payload, qos=1)
            time.sleep(0.5)
        sub.wait_for(lambda: len([t for t, _, _ in sub.messages if t.endswith("/result")]) >= len(attacks) * rounds, 60)
        time.sleep(2)
        end_health = last_health(sub)
        results = [json.loads(p) for t, p, _ in sub.messages if t.endswith("/result")]
        code = door.stop()
        return {**delivery(sub, outbox), "attacks": len(attacks) * rounds, "refused": sum(1 for r in results if not r["ok"]),
                "peak_rss_mb": round(door.rss.peak_kb / 1024),
                "frames_dropped": end_health.get("frames_dropped", 0) - start_health.get("frames_dropped", 0),
                "exit_code": code}


def scenario_disk(work: Path, base: dict) -> dict:
    if os.geteuid() != 0:
        return {"skipped": "mounting a tmpfs needs root"}
    with small_tmpfs(work / "disk-small") as mount:
        return disk_full_run(work, base, mount)


def disk_full_run(work: Path, base: dict, mount: Path) -> dict:
    """A door whose outbox lies on `mount`: the file system filled while events flow, the broker away too, then
    space given back."""
    broker = Broker(work / "disk-broker").start()
    config, log, _ = scenario_dir(work, "disk", base, broker.port)
    data = yaml.safe_load(config.read_text())
    data["outbox"] = {"path": str(mount / "outbox.sqlite")}
    config.write_text(yaml.safe_dump(data))
    sub = Subscriber(broker.port, [f"{BASE}/events", f"{BASE}/health", f"{BASE}/status"], client_id="disk")
    door = Door(config, log)
    try:
        wait_events(sub, 3)
        filler = fill(mount)
        full_at = len(sub.on(f"{BASE}/events"))
        sub.wait_for(lambda: any(h.get("disk_full") for h in sub.events(f"{BASE}/health")), 30)
        wait_events(sub, full_at + 8)
        online = sub.live_online(BASE)
        broker.stop()  # broker away too: events wait in memory only
        time.sleep(3)
        broker.start()
        sub.wait_for(lambda: sub.live_online(BASE) > online, 30)
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


CLUSTER_SITE = "cluster"
CLUSTER_DOORS = ("door-1", "door-2", "door-3")
AMQP_BACKEND = ROOT / "examples" / "backend_amqp.py"


def rfc3339_seconds(text: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def rotated(items: list, first: int) -> list:
    return items[first:] + items[:first]


def connections(log: Path) -> list[tuple[float, str]]:
    """(wall time, host:port) of every broker connection a door logged (log.format json)."""
    found = []
    for text in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            continue
        if record.get("msg", "").startswith("connected to "):
            found.append((rfc3339_seconds(record["ts"]), record["msg"].split()[2]))
    return found


def node_in_use(log: Path, at: float) -> str | None:
    before = [node for when, node in connections(log) if when <= at]
    return before[-1] if before else None


def reconnected_after(log: Path, at: float, timeout: float = 30.0) -> float | None:
    """Seconds from `at` to the door's next broker connection (None if none within timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        later = [when for when, _ in connections(log) if when > at]
        if later:
            return round(later[0] - at, 2)
        time.sleep(0.1)
    return None


class LoadDoor(threading.Thread):
    """A fourth door that decides `rate` events a second throughout the scenario: the daemon's own delivery
    stack (Outbox, MqttLink with mqtt.hosts, OutboxPublisher) without camera and models, so that nodes die
    with messages in flight. Its events are counted like the others'."""

    DEVICE = "load-door"

    def __init__(self, work: Path, hosts: list[str], rate: float = 50.0):
        from edge.config import config_from_dict
        from edge.messaging.link import MqttLink
        from edge.messaging.publisher import OutboxPublisher

        super().__init__(name="load-door", daemon=True)
        config = config_from_dict({"device_id": self.DEVICE, "mqtt": {"protocol": "3.1.1", "hosts": hosts,
                                                                     "keepalive_s": 5}}, base_dir=work)
        self.outbox = Outbox(work / "load-outbox.sqlite", self.DEVICE)
        self.link = MqttLink(config)
        self.publisher = OutboxPublisher(self.outbox, self.link)
        self.rate = rate
        self.stopping = threading.Event()

    def run(self) -> None:
        from edge.events import Decision

        decision = Decision("check_in", "load", "Load Test", 0.9, None)
        self.link.start()
        while not self.stopping.wait(1 / self.rate):
            self.outbox.append(decision)
            self.publisher.pump()
        self.publisher.drain(60)  # what is left undelivered counts as lost in the figures
        self.link.stop()

    def finish(self) -> int:
        """Stop deciding, deliver what is pending; how many events it decided."""
        self.stopping.set()
        self.join(90)
        sent = self.outbox.last_seq()
        self.outbox.close()
        return sent


class Backends:
    """examples/backend_amqp.py run twice, as a site would, on two nodes, into one store."""

    def __init__(self, work: Path, cluster, first_nodes: tuple[int, ...] = (1, 2)):
        self.db = work / "attendance.sqlite"
        self.logs = [work / f"backend-{i}.log" for i in range(len(first_nodes))]
        self.procs = []
        for first, log in zip(first_nodes, self.logs):
            nodes = [arg for n in rotated(cluster.nodes, first) for arg in ("--node", f"127.0.0.1:{n.amqp_port}")]
            self.procs.append(subprocess.Popen([sys.executable, str(AMQP_BACKEND), "--db", str(self.db), *nodes],
                                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(log, "w")))
        deadline = time.monotonic() + 60
        while not all("consuming on" in log.read_text() for log in self.logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError("the AMQP backends did not start: " + " | ".join(f.read_text()[-500:] for f in self.logs))
            time.sleep(0.2)

    def query(self, sql: str, *args) -> list[tuple]:
        import sqlite3

        db = sqlite3.connect(str(self.db), timeout=30)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def seqs(self, device: str) -> set[int]:
        return {r[0] for r in self.query("SELECT seq FROM attendance WHERE device_id = ?", device)}

    def health(self, device: str) -> dict:
        rows = self.query("SELECT health FROM doors WHERE device_id = ?", device)
        return json.loads(rows[0][0]) if rows and rows[0][0] else {}

    def stop(self) -> dict:
        """Stop both; how many events they were handed (received) and stored new, from their last lines."""
        totals = {"received": 0, "new": 0, "reconnects": 0}
        for proc, log in zip(self.procs, self.logs):
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            last = [line for line in log.read_text().splitlines() if "stopped: received" in line][-1].split()
            totals["received"] += int(last[last.index("received") + 1].rstrip(","))
            totals["new"] += int(last[last.index("stored") + 1])
            totals["reconnects"] += int(last[last.index("reconnects") - 1])
        return totals


def publish_roster(station: Path, version: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "edge", "roster", "-c", str(station), "publish", "--version",
                          str(version)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"roster publish failed ({out.returncode}): {out.stderr}")
    return json.loads(out.stdout)


def retained_versions(cluster, station: Path) -> list[int | None]:
    """The roster version each node holds retained, read by a clean MQTT 3.1.1 client on that node."""
    from edge.config import load_config
    from edge.messaging.link import each_broker
    from edge.messaging.roster import read_retained_manifest

    config = load_config(station)
    with each_broker(config, "retained-check") as (clients, _unreachable):
        manifests = {name: read_retained_manifest(client, config.roster_topic) for name, client in clients.items()}
    return [(manifests.get(node.hostport) or {}).get("version") for node in cluster.nodes]


def commands_across_nodes(cluster, doors) -> int:
    """A `health` command to every door from an MQTT 3.1.1 client on the first node, the results read on the
    last node: how many doors answered on <base>/cmd/health/result with the request's request_id (3.1.1 has
    no response topic or correlation data)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    answered, subscribed = set(), threading.Event()
    reader = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cluster-results", protocol=mqtt.MQTTv311)
    reader.on_subscribe = lambda *a: subscribed.set()

    def on_result(_client, _userdata, message):
        result, door = json.loads(message.payload), message.topic.split("/")[1]
        if result.get("ok") and result.get("request_id") == f"cluster-{door}":
            answered.add(door)

    reader.on_message = on_result
    reader.connect("127.0.0.1", cluster.nodes[-1].mqtt_port)
    reader.loop_start()
    reader.subscribe("facecheck/+/cmd/health/result", qos=1)
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cluster-commands", protocol=mqtt.MQTTv311)
    sender.connect("127.0.0.1", cluster.nodes[0].mqtt_port)
    sender.loop_start()
    try:
        subscribed.wait(10)
        for door in doors:
            sender.publish(f"facecheck/{door}/cmd/health", json.dumps({"request_id": f"cluster-{door}"}), qos=1
                           ).wait_for_publish(10)
        wait_until(lambda: len(answered) == len(doors), 30)
        return len(answered)
    finally:
        for client in (reader, sender):
            client.disconnect()
            client.loop_stop()


def cluster_configs(work: Path, base: dict, cluster) -> tuple[Path, dict[str, Path]]:
    """The enrolment station's config and one per door: MQTT 3.1.1, every node in mqtt.hosts, each door's list
    starting at a different node, all following one site roster."""
    from edge.security.sealing import generate

    keys = work / "keys"
    generate("roster", keys / "roster.key")
    generate("signing", keys / "station.key")
    hosts = [n.hostport for n in cluster.nodes]
    privacy = {"roster_key_file": str(keys / "roster.key"), "roster_verify_key_file": str(keys / "station.pub")}
    mqtt = {"protocol": "3.1.1", "keepalive_s": 5, "health_interval_s": 1}
    station = work / "station.yaml"
    station.write_text(yaml.safe_dump(dict(base, device_id="station", mqtt=dict(mqtt, hosts=hosts),
                                           roster={"site": CLUSTER_SITE},
                                           privacy=dict(privacy, roster_signing_key_file=str(keys / "station.key")))))
    doors = {}
    for i, name in enumerate(CLUSTER_DOORS):
        folder = work / name
        folder.mkdir()
        gallery = folder / "gallery.npz"
        source = Path(base["matcher"]["gallery"])
        shutil.copy(source, gallery)
        shutil.copy2(source.with_suffix(".key"), gallery.with_suffix(".key"))
        doors[name] = folder / "config.yaml"
        doors[name].write_text(yaml.safe_dump(dict(
            base, device_id=name, matcher=dict(base["matcher"], gallery=str(gallery)),
            outbox={"path": str(folder / "outbox.sqlite")}, mqtt=dict(mqtt, hosts=rotated(hosts, i)),
            roster={"site": CLUSTER_SITE}, privacy=privacy, log={"format": "json", "stage_timing_every_s": 0},
            camera=dict(base["camera"], fps=5))))
    return station, doors


def scenario_cluster(work: Path, base: dict, down_s: float = 6.0) -> dict:
    """Three doors on three RabbitMQ nodes (MQTT 3.1.1, quorum queues), two AMQP backends on two of them; each
    node in turn killed with -9 while events flow, then restarted under load. A site roster is published
    before the doors start and again after the kills: every door must apply both, whatever node it is on."""
    from testkit.cluster import ClusterUnavailable, RabbitCluster, rabbitmq_installed

    if not rabbitmq_installed():
        return {"skipped": "Debian's rabbitmq-server is not installed (scripts/test installs it)"}
    work = work / "cluster"
    cluster = RabbitCluster(work / "nodes")
    doors: dict[str, Door] = {}
    backends = load = None
    try:
        started = time.monotonic()
        cluster.start()
        cluster.wait_formed()
        cluster_start_s = round(time.monotonic() - started, 1)
        station, configs = cluster_configs(work, base, cluster)
        backends = Backends(work, cluster)
        first = publish_roster(station, 1000)
        logs = {name: work / f"{name}.log" for name in configs}
        doors = {name: Door(path, logs[name]) for name, path in configs.items()}
        load = LoadDoor(work, [n.hostport for n in cluster.nodes])
        load.start()
        applied = lambda version: all(backends.health(d).get("roster", {}).get("version") == version  # noqa: E731
                                      for d in doors)
        if not wait_until(lambda: applied(1000) and all(len(backends.seqs(d)) >= 2 for d in doors), 120):
            raise RuntimeError("the doors did not start delivering with roster 1000: "
                               + " | ".join(logs[d].read_text()[-400:] for d in doors))
        reconnect_s, node_restart_s = [], []
        for i, node in enumerate(cluster.nodes):
            killed_at = time.time()
            on_node = [d for d in doors if node_in_use(logs[d], killed_at) == node.hostport]
            cluster.kill(i)
            reconnect_s += [reconnected_after(logs[d], killed_at) for d in on_node]
            time.sleep(down_s)
            restarted = time.monotonic()
            cluster.start(i)
            cluster.wait_formed()
            node_restart_s.append(round(time.monotonic() - restarted, 1))
            time.sleep(3)
        second = publish_roster(station, 2000)
        roster_applied = wait_until(lambda: applied(2000), 60)
        retained = retained_versions(cluster, station)
        commands_answered = commands_across_nodes(cluster, doors)
        sent = {LoadDoor.DEVICE: load.finish()}
        for name, door in doors.items():
            door.stop()
            box = Outbox(Path(yaml.safe_load(configs[name].read_text())["outbox"]["path"]), name)
            sent[name] = box.last_seq()
            box.close()
        wait_until(lambda: all(backends.seqs(d) >= set(range(1, n + 1)) for d, n in sent.items()), 60)
        stored = backends.query("SELECT device_id, seq, ts, stored_at FROM attendance ORDER BY stored_at")
        statuses = dict(backends.query("SELECT device_id, status FROM doors"))
        statuses = [statuses.get(d) for d in doors]
        handed = backends.stop()
        backends = None
        received = {(d, s) for d, s, _, _ in stored}
        times = [t for *_, t in stored]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        delays = [at - rfc3339_seconds(ts) for _, _, ts, at in stored]  # from the door's decision to the store
        return {"sent": sum(sent.values()), "sent_by_camera_doors": sum(sent.values()) - sent[LoadDoor.DEVICE],
                "load_events_per_s": load.rate, "received": len(received),
                "lost": sum(1 for d, n in sent.items() for seq in range(1, n + 1) if (d, seq) not in received),
                "duplicates": handed["received"] - handed["new"], "stored": len(stored),
                "stored_twice": len(stored) - len(received), "longest_gap_s": round(max(gaps, default=0.0), 1),
                "median_gap_s": round(float(np.median(gaps)) if gaps else 0.0, 1),
                "longest_delay_s": round(max(delays, default=0.0), 2),
                "door_reconnect_s": reconnect_s, "node_kills": len(cluster.nodes),
                "node_restart_s": node_restart_s, "cluster_start_s": cluster_start_s,
                "backend_reconnects": handed["reconnects"],
                "roster_versions": [first["version"], second["version"]],
                "roster_nodes_published": [len(first["nodes"]), len(second["nodes"])],
                "roster_applied_by_all": roster_applied, "roster_retained_per_node": retained,
                "commands_answered": commands_answered, "doors": len(doors), "status_after_stop": statuses,
                "peak_rss_mb": round(max(d.rss.peak_kb for d in doors.values()) / 1024),
                "exit_code": max(d.proc.returncode for d in doors.values())}
    except ClusterUnavailable as exc:
        return {"skipped": f"the RabbitMQ cluster did not start: {exc}"}
    finally:
        if load is not None:
            load.stopping.set()
        for door in doors.values():
            if door.alive():
                door.kill()
        if backends is not None:
            for proc in backends.procs:
                proc.kill()
        cluster.close()


REPUBLISH_WITHIN_S = 5.0


def cluster_failures(r: dict) -> list[str]:
    """What the cluster scenario promises, as readable failures (empty when all hold)."""
    if "skipped" in r:
        return []
    problems = []
    if r["lost"] or r["received"] != r["sent"]:
        problems.append(f"{r['lost']} of {r['sent']} events lost")
    if r["stored_twice"]:
        problems.append(f"{r['stored_twice']} events stored twice")
    slow = [s for s in r["door_reconnect_s"] if s is None or s > REPUBLISH_WITHIN_S]
    if slow or not r["door_reconnect_s"]:
        problems.append(f"doors back on another node after {r['door_reconnect_s']} s (limit {REPUBLISH_WITHIN_S})")
    if not r["roster_applied_by_all"] or any(v != r["roster_versions"][-1] for v in r["roster_retained_per_node"]):
        problems.append(f"roster not on every door and node: retained {r['roster_retained_per_node']}")
    if r["commands_answered"] != r["doors"]:
        problems.append(f"{r['commands_answered']} of {r['doors']} doors answered a command over MQTT 3.1.1")
    if r["status_after_stop"] != ["offline"] * r["doors"]:
        problems.append(f"the backends saw the stopped doors as {r['status_after_stop']}")
    if r["exit_code"] != 0:
        problems.append(f"a door exited {r['exit_code']}")
    return problems


def line(name: str, r: dict) -> str:
    if "skipped" in r:
        return f"{name:6} skipped: {r['skipped']}"
    keys = ("sent", "received", "lost", "duplicates", "peak_rss_mb", "frames_dropped", "frames_dropped_last_run",
            "online_after_broker_return_s", "answered", "accepted", "refused", "events_while_full", "stored_twice",
            "longest_gap_s", "median_gap_s", "longest_delay_s", "door_reconnect_s", "roster_applied_by_all", "commands_answered",
            "exit_code")
    return f"{name:6} " + "  ".join(f"{k} {r[k]}" for k in keys if k in r)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="kills,fuzz,bomb,disk,cluster")
    parser.add_argument("--long-outage-s", type=float, default=35.0)
    parser.add_argument("--smoke", action="store_true",
                        help=SMOKE_HELP + "; the cluster scenario is left to tests/test_cluster.py, which runs it")
    args = parser.parse_args(argv)
    smoke = smoke_mode(args.smoke)
    chosen = args.only.split(",")
    if smoke:
        args.long_outage_s = 3.0
        chosen = [name for name in chosen if name != "cluster"]
    results: dict = {"machine": machine(), "memory_max_mb": MEMORY_MAX_MB}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = prepare(work)
        runs = {"kills": lambda: scenario_kills(work, base, args.long_outage_s),
                "fuzz": lambda: scenario_fuzz(work, base, *((40, 4.0) if smoke else ())),
                "bomb": lambda: scenario_bomb(work, base, 1 if smoke else 3),
                "disk": lambda: scenario_disk(work, base), "cluster": lambda: scenario_cluster(work, base)}
        for name in chosen:
            started = time.monotonic()
            results[name] = {**runs[name](), "seconds": round(time.monotonic() - started, 1)}
            print(line(name, results[name]), flush=True)
    print(f"wrote {write('faults', results)}")
    failed = [n for n in chosen if results[n].get("lost") or results[n].get("exit_code", 0) != 0
              or results[n].get("peak_rss_mb", 0) >= MEMORY_MAX_MB or (n == "cluster" and cluster_failures(results[n]))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
