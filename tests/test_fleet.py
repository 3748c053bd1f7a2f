"""A site of doors: one roster published centrally, applied (or refused) atomically by every device,
and Home Assistant discovery. Two device instances run in this test process against a real mosquitto."""

import json
import threading
from base64 import b64decode as base64_decode
from base64 import b64encode as base64_encode_bytes

import numpy as np
import pytest

from edge.config import config_from_dict
from edge.identity.gallery import Gallery, GalleryFile
from edge.messaging.roster import package
from edge.samples import sample
from edge.security.sealing import Key, decode_key, generate, new_key, signing_key
from edge.service.daemon import Daemon
from testkit.brokers import Subscriber
from tests.conftest import run_cli, validate, write_yaml

SITE = "hq"
ROSTER = f"facecheck/site/{SITE}/roster"


@pytest.fixture
def site_keys(tmp_path):
    """The site's roster key and the station's signing pair, as `facecheck keys generate` makes them."""
    keys = tmp_path / "keys"
    generate("roster", keys / "roster.key")
    generate("signing", keys / "station.key")
    return {"roster_key_file": str(keys / "roster.key"), "roster_verify_key_file": str(keys / "station.pub"),
            "signing": str(keys / "station.key")}


def door_privacy(site_keys):
    return {"roster_key_file": site_keys["roster_key_file"],
            "roster_verify_key_file": site_keys["roster_verify_key_file"]}


@pytest.fixture
def station(base_config, tmp_path, broker, site_keys):
    """The enrolment station: its own gallery, publishing to the site."""
    cfg = dict(base_config, device_id="station", mqtt={"enabled": True, "port": broker.port},
               roster={"site": SITE}, matcher={"gallery": str(tmp_path / "station" / "gallery.npz"),
                                               "augmentations": 2},
               privacy={**door_privacy(site_keys), "roster_signing_key_file": site_keys["signing"]})
    path = write_yaml(tmp_path / "station.yaml", cfg)
    for name, photos in {"Barack Obama": ["obama-1.jpg", "obama-2.jpg"], "Joe Biden": ["biden-1.jpg"]}.items():
        result = run_cli("enroll", "-c", str(path), "--name", name, *[str(sample(p)) for p in photos])
        assert result.returncode == 0, result.stderr
    return path


def start_door(name, base_config, tmp_path, broker, clip, site_keys):
    cfg = dict(base_config, device_id=name, privacy=door_privacy(site_keys),
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
def doors(base_config, tmp_path, broker, site_keys):
    from edge.cli.demo import render_clip

    clip = tmp_path / "clip"
    render_clip(clip)
    running = [start_door(n, base_config, tmp_path, broker, clip, site_keys) for n in ("door-a", "door-b")]
    for daemon, _ in running:
        assert daemon.link.connected.wait(30)
    yield [d for d, _ in running]
    for daemon, thread in running:
        daemon.stop_requested.set()
        thread.join(30)


def results(sub, door):
    return sub.events(f"facecheck/{door}/roster/result")


def door_gallery(tmp_path, door) -> GalleryFile:
    path = tmp_path / door / "gallery.npz"
    return GalleryFile(path, path.with_suffix(".key"))


def gallery_names(tmp_path, door):
    stored = door_gallery(tmp_path, door)
    return sorted(stored.load().names) if stored.exists() else []


def readable_forms(gallery: Gallery) -> list[bytes]:
    """How a name or a template would show in a file or a payload that held them in the clear: the names as
    UTF-8 and as the UTF-32 NumPy stores, and every float32 template row."""
    forms = [n.encode() for n in gallery.names] + [n.encode("utf-32-le") for n in gallery.names]
    return forms + [row.astype("<f4").tobytes() for row in gallery.embeddings[gallery.original]]


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
    listing = [json.loads(line) for line in run_cli("roster", "-c", str(station), "list").stdout.splitlines()]
    biden = next(p["person_id"] for p in listing if p["name"] == "Joe Biden")
    assert run_cli("roster", "-c", str(station), "remove", biden).returncode == 0
    assert run_cli("roster", "-c", str(station), "publish", "--version", "101").returncode == 0
    for door in ("door-a", "door-b"):
        assert sub.wait_for(lambda: any(r["ok"] and r["version"] == 101 for r in results(sub, door)), 30)
        gallery = door_gallery(tmp_path, door).load()
        assert gallery.names == ["Barack Obama"] and biden not in gallery.person_ids
        assert gallery.people == 1 and set(np.unique(gallery.labels)) == {0}, "no embedding of Biden is left"
    for result in results(sub, "door-a"):
        validate(result, "roster-result")
    # an older version is not accepted by the publisher either
    stale = run_cli("roster", "-c", str(station), "publish", "--version", "50")
    assert stale.returncode == 2 and "not newer" in stale.stderr
    sub.close()


def base64_encode(raw: bytes) -> str:
    return base64_encode_bytes(raw).decode()


def publish_raw(sub, manifest, chunks):
    for chunk in chunks:
        sub.client.publish(f"{ROSTER}/chunk/{chunk['index']}", json.dumps(chunk), qos=1, retain=True)
    sub.client.publish(f"{ROSTER}/manifest", json.dumps(manifest), qos=1, retain=True)


def test_the_broker_and_the_doors_files_hold_no_name_and_no_template(station, doors, tmp_path, broker):
    import base64

    sub = Subscriber(broker.port, ["facecheck/+/roster/result", f"{ROSTER}/#"])
    assert run_cli("roster", "-c", str(station), "publish", "--version", "300").returncode == 0
    for door in ("door-a", "door-b"):
        assert sub.wait_for(lambda: any(r["ok"] and r["version"] == 300 for r in results(sub, door)), 30)
    station = config_from_dict({"matcher": {"gallery": str(tmp_path / "station" / "gallery.npz")}}, tmp_path)
    station_gallery = GalleryFile.from_config(station).load()
    forms = readable_forms(station_gallery)
    assert len(forms) > 4
    retained = Subscriber(broker.port, [f"{ROSTER}/#"], client_id="late-reader")  # what any reader gets
    assert retained.wait_for(lambda: retained.on(f"{ROSTER}/manifest"), 10)
    chunks = [json.loads(p) for t, p, _ in retained.messages if "/chunk/" in t and p]
    on_broker = b"".join(base64.b64decode(c["data"]) for c in sorted(chunks, key=lambda c: c["index"]))
    on_broker += b"".join(p for _, p, _ in retained.messages)
    files = [(tmp_path / d / "gallery.npz").read_bytes() for d in ("station", "door-a", "door-b")]
    for blob in [on_broker, *files]:
        assert not any(form in blob for form in forms), "a name or a float32 template is readable"
    with pytest.raises(ValueError):  # the door's file is not an .npz numpy can open
        np.load(tmp_path / "door-a" / "gallery.npz", allow_pickle=False)
    retained.close()
    sub.close()


def test_forged_tampered_or_replayed_rosters_are_refused_and_the_old_one_keeps_serving(
        station, doors, tmp_path, broker, site_keys):
    sub = Subscriber(broker.port, ["facecheck/+/roster/result"])
    assert run_cli("roster", "-c", str(station), "publish", "--version", "200").returncode == 0
    for door in ("door-a", "door-b"):
        assert sub.wait_for(lambda: any(r["ok"] for r in results(sub, door)), 30)

    roster_key = Key(decode_key(open(site_keys["roster_key_file"]).read(), "roster"), "roster")
    signer = signing_key(tmp_path / "keys" / "station.key")
    gallery = door_gallery(tmp_path, "door-a").load()
    attacker = Gallery(gallery.model_id, gallery.dim)
    attacker.add("mallory", "Mallory", gallery.embeddings[:1], np.array([True]), gallery.model_id)

    def refused_by_both(why: str) -> None:
        for door in ("door-a", "door-b"):
            assert sub.wait_for(lambda: any(not r["ok"] and why in r["error"] for r in results(sub, door)), 30), why
        with sub.lock:
            sub.messages.clear()

    # 1. a roster sealed and signed with keys that are not the site's (a stolen broker password is not enough)
    generate("signing", tmp_path / "keys" / "attacker.key")
    manifest, chunks = package(attacker, 201, Key(new_key(), "wrong"), signing_key(tmp_path / "keys" / "attacker.key"))
    validate(chunks[0], "roster-chunk")
    publish_raw(sub, manifest, chunks)
    refused_by_both("signature")
    # 2. a roster sealed with a wrong key but signed by the station (a misconfigured station)
    publish_raw(sub, *package(attacker, 202, Key(new_key(), "wrong"), signer))
    refused_by_both("cannot be opened")
    # 3. one changed byte in a chunk of a properly signed roster
    manifest, chunks = package(attacker, 203, roster_key, signer)
    data = bytearray(base64_decode(chunks[0]["data"]))
    data[len(data) // 2] ^= 1
    chunks[0]["data"] = base64_encode(bytes(data))
    publish_raw(sub, manifest, chunks)
    refused_by_both("checksum")
    # 4. the manifest altered after signing (a bigger version to override the door's)
    manifest, chunks = package(attacker, 204, roster_key, signer)
    manifest["version"] = 10**12
    publish_raw(sub, manifest, chunks)
    refused_by_both("signature")
    # 5. another model's roster, properly signed and sealed
    other = Gallery(model_id="facenet-20180408-102900-float32-m10", dim=512)
    other.add("x1", "Someone Else", np.eye(1, 512, dtype=np.float32), np.array([True]), other.model_id)
    publish_raw(sub, *package(other, 205, roster_key, signer))
    refused_by_both("model")
    # 6. an old, genuinely signed version replayed: not newer than the one in force, so ignored
    publish_raw(sub, *package(attacker, 150, roster_key, signer))
    sub.client.publish(f"{ROSTER}/manifest", b"{broken", qos=1, retain=True)
    refused_by_both("not JSON")

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
    assert config["event_types"] == ["check_in", "rejected", "unknown_face", "capture", "spoof_suspected", "template_added"]
    assert config["device"]["identifiers"] == ["facecheck_door_a"]
    for sensor in ("fps", "outbox_depth", "roster_version"):
        assert sub.wait_for(lambda: sub.on(f"homeassistant/sensor/facecheck_door_b/{sensor}/config"), 20)
    before = len(sub.on(topic))
    sub.client.publish("homeassistant/status", "online", qos=1)
    assert sub.wait_for(lambda: len(sub.on(topic)) > before, 20), "re-announced when Home Assistant came online"
    sub.close()
