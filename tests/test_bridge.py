"""The bridge recipe of docs/scaling.md on real mosquittos: a building broker bridged to a central one, the
central one down for 30 s while a door publishes to the building broker; every event reaches a subscriber
of the central broker once the bridge is back."""

import time

import pytest

from edge.cli.local_broker import Broker, free_port, mosquitto_binary
from edge.messaging.outbox import Outbox
from testkit.brokers import Subscriber
from testkit.doors import BASE, DaemonProcess, looping

# docs/scaling.md's bridge.conf, without TLS and credentials (loopback only).
BRIDGE = """connection central
address 127.0.0.1:{central}
bridge_protocol_version mqttv50
cleansession false
restart_timeout 1 2
topic facecheck/+/events out 1
topic facecheck/+/status out 1
topic facecheck/+/health out 0
topic facecheck/+/roster/result out 1
topic facecheck/site/hq/roster/# in 1
topic facecheck/+/cmd/# in 1
topic facecheck/+/cmd/+/result out 1
allow_anonymous true
"""


@pytest.fixture
def central(tmp_path):
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed: scripts/test installs it (apt-get install mosquitto)")
    broker = Broker(tmp_path / "central").start()
    yield broker
    broker.kill()


def test_events_cross_a_bridge_whose_centre_was_down_for_30_s(mqtt_config, tmp_path, central):
    building = Broker(tmp_path / "building", BRIDGE.format(central=central.port), port=free_port()).start()
    try:
        config = looping(mqtt_config)
        config["mqtt"] = dict(config["mqtt"], port=building.port)
        sub = Subscriber(central.port, [f"{BASE}/events"], "central-backend")
        daemon = DaemonProcess(config, tmp_path)
        assert sub.wait_for(lambda: len(sub.events(f"{BASE}/events")) >= 3, 60), "events cross the bridge"
        central.stop()
        down_since = time.monotonic()
        outbox = Outbox(tmp_path / "state" / "outbox.sqlite", "x")
        during = outbox.last_seq()
        time.sleep(30)
        decided_while_down = outbox.last_seq() - during
        central.start()
        assert sub.wait_for(lambda: len({e["seq"] for e in sub.events(f"{BASE}/events")}) >= during
                            + decided_while_down, 60), "the building broker's queue crossed the bridge"
        assert daemon.terminate() == 0, (tmp_path / "daemon.log").read_text()
        last_seq = outbox.last_seq()
        assert outbox.depth() == 0, "the door had nothing left: the building broker acknowledged everything"
        assert sub.wait_for(lambda: {e["seq"] for e in sub.events(f"{BASE}/events")} >= set(range(1, last_seq + 1)),
                            60), "an event was lost"
        assert decided_while_down >= 10 and time.monotonic() - down_since > 30
        seqs = [e["seq"] for e in sub.events(f"{BASE}/events")]
        print(f"bridge: {last_seq} events, {decided_while_down} decided while the centre was down 30 s, "
              f"{len(seqs) - len(set(seqs))} duplicates, 0 lost")
        sub.close()
    finally:
        building.kill()
