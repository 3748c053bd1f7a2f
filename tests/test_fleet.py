"""A site of doors: one roster published centrally, applied (or refused) atomically by every device,
and Home Assistant discovery. Two device instances run in this test process against a real mosquitto."""

import json
import threading

import numpy as np
import pytest

from edge.config import config_from_dict
from edge.daemon import Daemon
from edge.inference.gallery import Gallery
from edge.roster import package
from edge.samples import sample
from tests.broker import Subscriber
from tests.conftest import run_cli, validate, write_yaml

SITE = "hq"
ROSTER = f"facecheck/site/{SITE}/roster"


@pytest.fixture
def station(base_config, tmp_path, broker):
    """The enrolment station: its own gallery, publishing to the site."""
    cfg = dict(base_config, device_id="station", mqtt={"enabled": True, "port": broker.port},
               roster={"site": SITE}, matcher={"gallery": str(tmp_path / "station" / "gallery.npz"),
                                               "augmentations": 2})
    path = write_yaml(tmp_path / "station.yaml", cfg)
    for name, photos in {"Barack Obama": ["obama-1.jpg", "obama-2.jpg"], "Joe Biden": ["biden-1.jpg"]}.items():
        result = run_cli("enroll", "-c", str(path), "--name", name, *[str(sample(p)) for p in photos])
        assert result.returncode == 0, result.stderr
    return path


def start_door(name, base_config, tmp_path, broker, clip):
    cfg = dict(base_config, device_id=name,
               camera={"kind": "replay", "path": str(clip), "fps": 20, "loop": True, "realtime": True},
               matcher={"gallery": str(tmp_path / name / "gallery.npz")},
               outbox={"path": str(tmp_path / name / "outbox.sqlite")},
               mqtt={"enabled": True, "port": broker.port, "health_interval_s": 0.5},
               roster={"site": SITE}, homeassistant={"enabled": True})
    daemon = Daemon(config_from_dict(cfg, base_dir=tmp_path), sinks=[])
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    return daemon, thread


@pytest.fixture
def doors(base_config, tmp_path, broker):
    from edge.demo import render_clip

    clip = tmp_path / "clip"
    render_clip(clip)
    running = [start_door(n, base_config, tmp_path, broker, clip) for n in ("door-a", "door-b")]
    for daemon, _ in running:
        assert daemon.link.connected.wait(30)
    yield [d for d, _ in running]
    for daemon, thread in running:
        daemon.stop_requested.set()
        thread.join(30)


def results(sub, door):
    return sub.events(f"facecheck/{door}/roster/result")


def gallery_names(tmp_path, door):
    path = tmp_path / door / "gallery.npz"
    return sorted(Gallery.load(path).names) if path.exists() else []


def test_roster_update_and_erasure_reach_every_door(station, doors, tmp_path, broker):
    sub = Subscriber(broker.port, ["facecheck/+/roster/result", "facecheck/+/health"])
    first = run_cli("roster", "-c", str(station), "publish", "--version", "100")
    assert first.returncode == 0, first.stderr
    manifest = json.loads(first.stdout)
    validate(manifest, "roster-manifest")
    assert manifest["version"] == 100 and manifest["people"] == 2 and manifest["topic"] == ROSTER
    for door in ("door-a", "door-b"):
        assert sub.wait_for(lambda: any(r["ok"] and r["version"] == 100 for r in results(sub, door)), 30)
        assert gallery_names(tmp_path, door) == ["Barack Obama", "Joe Biden"]
        assert sub.wait_for(lambda: any(h["roster"]["version"] == 100 for h in sub.events(f"facecheck/{door}/health")))

    # erasure: Biden is removed at the station and the new version goes out
    listing = [json.loads(l) for l in run_cli("roster", "-c", str(station), "list").stdout.splitlines()]
    biden = next(p["person_id"] for p in listing if p["name"] == "Joe Biden")
    assert run_cli("roster", "-c", str(station), "remove", biden).returncode == 0
    assert run_cli("roster", "-c", str(station), "publish", "--version", "101").returncode == 0
    for door in ("door-a", "door-b"):
        assert sub.wait_for(lambda: any(r["ok"] and r["version"] == 101 for r in results(sub, door)), 30)
        gallery = Gallery.load(tmp_path / door / "gallery.npz")
        assert gallery.names == ["Barack Obama"] and biden not in gallery.person_ids
        assert gallery.people == 1 and set(np.unique(gallery.labels)) == {0}, "no embedding of Biden is left"
    for result in results(sub, "door-a"):
        validate(result, "roster-result")
    # an older version is not accepted by the publisher either
    stale = run_cli("roster", "-c", str(station), "publish", "--version", "50")
    assert stale.returncode == 2 and "not newer" in stale.stderr
    sub.close()


def test_corrupt_or_mismatched_roster_is_refused_and_the_old_one_keeps_serving(station, doors, tmp_path, broker):
    sub = Subscriber(broker.port, ["facecheck/+/roster/result"])
    assert run_cli("roster", "-c", str(station), "publish", "--version", "200").returncode == 0
    for door in ("door-a", "door-b"):
        assert sub.wait_for(lambda: any(r["ok"] for r in results(sub, door)), 30)

    gallery = Gallery.load(tmp_path / "station" / "gallery.npz")
    manifest, chunks = package(gallery, 201)
    validate(chunks[0], "roster-chunk")
    manifest["sha256"] = "0" * 64  # corrupt: the checksum does not match the chunks
    for chunk in chunks:
        sub.client.publish(f"{ROSTER}/chunk/{chunk['index']}", json.dumps(chunk), qos=1, retain=True)
    sub.client.publish(f"{ROSTER}/manifest", json.dumps(manifest), qos=1, retain=True)
    for door in ("door-a", "door-b"):
        assert sub.wait_for(lambda: any(not r["ok"] and "checksum" in r["error"] for r in results(sub, door)), 30)

    other = Gallery(model_id="facenet-20180408-102900-float32-m10", dim=512)
    other.add("x1", "Someone Else", np.eye(1, 512, dtype=np.float32), np.array([True]), other.model_id)
    manifest, chunks = package(other, 202)
    for chunk in chunks:
        sub.client.publish(f"{ROSTER}/chunk/{chunk['index']}", json.dumps(chunk), qos=1, retain=True)
    sub.client.publish(f"{ROSTER}/manifest", json.dumps(manifest), qos=1, retain=True)
    for door in ("door-a", "door-b"):
        assert sub.wait_for(lambda: any(not r["ok"] and "model" in r["error"] for r in results(sub, door)), 30)

    sub.client.publish(f"{ROSTER}/manifest", b"{broken", qos=1, retain=True)
    for door in ("door-a", "door-b"):
        assert sub.wait_for(lambda: any(not r["ok"] and "not JSON" in r["error"] for r in results(sub, door)), 30)

    for daemon in doors:
        matcher = daemon.pipeline.identifier.matcher
        assert matcher.gallery.version == 200 and sorted(matcher.gallery.names) == ["Barack Obama", "Joe Biden"]
    for door in ("door-a", "door-b"):
        assert gallery_names(tmp_path, door) == ["Barack Obama", "Joe Biden"]
    sub.client.publish(f"{ROSTER}/manifest", b"", qos=1, retain=True)
    sub.close()


def test_home_assistant_discovery_and_reannounce(doors, broker):
    sub = Subscriber(broker.port, ["homeassistant/#"])
    topic = "homeassistant/event/facecheck_door_a/attendance/config"
    assert sub.wait_for(lambda: sub.on(topic), 20), "retained discovery config"
    config = json.loads(sub.on(topic)[-1])
    assert config["state_topic"] == "facecheck/door-a/events"
    assert config["availability_topic"] == "facecheck/door-a/status"
    assert config["event_types"] == ["check_in", "rejected", "unknown_face", "capture", "spoof_suspected"]
    assert config["device"]["identifiers"] == ["facecheck_door_a"]
    for sensor in ("fps", "outbox_depth", "roster_version"):
        assert sub.wait_for(lambda: sub.on(f"homeassistant/sensor/facecheck_door_b/{sensor}/config"), 20)
    before = len(sub.on(topic))
    sub.client.publish("homeassistant/status", "online", qos=1)
    assert sub.wait_for(lambda: len(sub.on(topic)) > before, 20), "re-announced when Home Assistant came online"
    sub.close()
