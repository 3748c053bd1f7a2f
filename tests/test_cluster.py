"""Doors and backends on a three-node RabbitMQ cluster (Debian's rabbitmq-server, started on loopback by the
test), and the roster published to every broker of mqtt.hosts."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from bench import faults
from edge.identity.gallery import Gallery, GalleryFile
from edge.messaging.roster import RosterAssembler, RosterFollower, package
from edge.security.sealing import Key, generate, new_key
from testkit.brokers import Broker, Subscriber
from testkit.cluster import INSTALL_HINT, rabbitmq_installed
from tests.conftest import run_cli, write_yaml

needs_rabbitmq = pytest.mark.skipif(not rabbitmq_installed(), reason=INSTALL_HINT)


@needs_rabbitmq
@pytest.mark.timeout(600)
def test_nothing_is_lost_when_each_node_of_three_dies_in_turn():
    """bench.faults' cluster scenario: three real doors (MQTT 3.1.1) first on three different nodes, the AMQP
    example backend twice on two of them, kill -9 of each node in turn and its restart while events flow."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = faults.scenario_cluster(work, faults.prepare(work))
    print(faults.line("cluster", result))
    assert "skipped" not in result, result["skipped"]
    assert faults.cluster_failures(result) == [], result
    assert result["sent"] >= 20 and result["received"] == result["sent"] and result["lost"] == 0
    assert result["stored"] == result["sent"], "every event stored exactly once"
    assert len(result["door_reconnect_s"]) >= 3, "every node carried a door when it died"
    assert max(result["door_reconnect_s"]) <= faults.REPUBLISH_WITHIN_S
    assert result["roster_retained_per_node"] == [2000, 2000, 2000] and result["roster_applied_by_all"]


class Link:
    """What the follower needs of the MQTT link, recorded: it runs here without a broker, on purpose, to
    count what it does with several copies of one roster."""

    def __init__(self):
        self.results, self.chunk_subscriptions = [], []

    def subscribe_roster_chunks(self, count):
        self.chunk_subscriptions.append(count)

    def publish_json(self, suffix, body, qos=0, retain=False):
        self.results.append(body)


class Jobs:
    """Runs each job at once, as edge.jobs' synchronous stand-in does; counts them."""

    def __init__(self):
        self.names = []

    def submit(self, name, work, done):
        self.names.append(name)
        done(work())


def test_a_roster_coming_from_every_node_is_applied_once(tmp_path):
    """On a cluster the station publishes one sealed package to each node; a door sees each copy (retained on
    its node and live through its session, in any interleaving) and must write and swap once."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    gallery = Gallery("m", 128)
    rng = np.random.default_rng(1)
    for i in range(2):
        gallery.add(f"p{i}", f"Person {i}", rng.normal(size=(40, 128)).astype(np.float32), np.ones(40, bool), "m")
    key, station = Key(new_key(), "the site roster key"), Ed25519PrivateKey.generate()
    manifest, chunks = package(gallery, 7, key, station, chunk_bytes=4096)
    assert len(chunks) > 1
    version = {"now": 1}
    link, jobs = Link(), Jobs()
    stored = GalleryFile(tmp_path / "door.npz", tmp_path / "door.key")

    def reload():
        version["now"] = stored.load().version
        return {"ok": True, "error": None, "people": 2}

    follower = RosterFollower(link, RosterAssembler("m", key, station.public_key()), stored,
                              lambda: version["now"], reload, jobs)
    copy = [("manifest", json.dumps(manifest).encode())] + [
        (f"chunk/{c['index']}", json.dumps(c).encode()) for c in chunks]
    for part, payload in copy[1:] + copy + copy[:1] + copy[::-1]:  # three nodes' copies, interleaved
        follower._take(part, payload)
    assert jobs.names == ["roster version 7"], "written and swapped once"
    assert [r["ok"] for r in link.results] == [True]
    assert stored.load().version == 7 and version["now"] == 7
    assert link.chunk_subscriptions == [len(chunks)], "each chunk's exact topic subscribed once per version"
    assert not follower.assembler.chunks, "no chunk of an applied version is kept"


@pytest.mark.broker
def test_roster_publish_reaches_every_broker_and_names_one_it_could_not(tmp_path, base_config):
    generate("roster", tmp_path / "roster.key")
    generate("signing", tmp_path / "station.key")
    station_keys = {"roster_key_file": str(tmp_path / "roster.key"), "roster_verify_key_file": str(tmp_path / "station.pub"),
                    "roster_signing_key_file": str(tmp_path / "station.key")}
    up, down = Broker(tmp_path / "a").start(), Broker(tmp_path / "b").start()
    down_port = down.port
    down.kill()
    station = write_yaml(tmp_path / "station.yaml", dict(
        base_config, device_id="station", roster={"site": "hq"},
        mqtt={"protocol": "3.1.1", "hosts": [f"127.0.0.1:{up.port}", f"127.0.0.1:{down_port}"]},
        matcher={"gallery": str(tmp_path / "station" / "gallery.npz"), "augmentations": 1},
        privacy=station_keys))
    from edge.samples import sample

    assert run_cli("enroll", "-c", str(station), "--name", "Barack Obama", str(sample("obama-1.jpg"))).returncode == 0
    partial = run_cli("roster", "-c", str(station), "publish", "--version", "5")
    assert partial.returncode == 1
    assert f"127.0.0.1:{down_port}" in partial.stderr and "publish again" in partial.stderr
    assert json.loads(partial.stdout)["nodes"][f"127.0.0.1:{up.port}"] == "published"

    down = Broker(tmp_path / "b", port=down_port).start()
    readers = [Subscriber(b.port, ["facecheck/site/hq/roster/manifest"], client_id=f"r{b.port}") for b in (up, down)]
    stale = run_cli("roster", "-c", str(station), "publish", "--version", "5")
    assert stale.returncode == 2 and "not newer" in stale.stderr, "the newest version on any broker counts"
    full = run_cli("roster", "-c", str(station), "publish", "--version", "6")
    assert full.returncode == 0, full.stderr
    for reader in readers:
        assert reader.wait_for(lambda r=reader: any(json.loads(p)["version"] == 6
                                                    for p in r.on("facecheck/site/hq/roster/manifest")), 10)
        reader.close()
    up.kill()
    down.kill()
