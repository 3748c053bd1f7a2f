"""The durable outbox: seq survives restarts and deletions; nothing is dropped past its bounds."""

import json
import logging
import subprocess
import sys

from edge.events import Decision, Event
from edge.messaging.outbox import Outbox
from testkit.disk import fill


def test_seq_strictly_increases_across_restarts_and_acks(tmp_path):
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, "door-1")
    first = [box.append(Decision("check_in", "p1", "Ann", 0.9)) for _ in range(3)]
    assert [e.seq for e in first] == [1, 2, 3]
    for e in first:
        box.ack(e.seq)
    assert box.depth() == 0
    box.close()
    box = Outbox(path, "door-1")
    nxt = box.append(Decision("unknown_face"))
    assert nxt.seq == 4, "a seq is never reused, even after every event was delivered"
    assert len({e.event_id for e in first + [nxt]}) == 4


def test_pending_is_in_order_and_round_trips_the_payload(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", "door-1")
    made = [box.append(Decision("capture", "p1", "Ann", 0.5, "capture", {"track_id": i})) for i in range(5)]
    box.ack(2)
    pending = box.pending()
    assert [e.seq for e in pending] == [1, 3, 4, 5]
    assert pending[0] == made[0]
    body = json.loads(pending[1].to_json())
    assert body["track_id"] == 2 and body["type"] == "capture" and body["device_id"] == "door-1"
    assert Event.from_json(pending[1].to_json()) == made[2]


def test_over_the_bound_it_warns_and_keeps_everything(tmp_path, caplog):
    box = Outbox(tmp_path / "o.sqlite", "door-1", max_events=100)
    with caplog.at_level(logging.WARNING):
        for _ in range(105):
            box.append(Decision("unknown_face"))
    assert box.depth() == 105
    assert "OUTBOX OVER ITS BOUND" in caplog.text


def test_an_event_survives_kill_9_right_after_append(tmp_path):
    path = tmp_path / "o.sqlite"
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from edge.messaging.outbox import Outbox\nfrom edge.events import Decision\n"
        f"box = Outbox(Path({str(path)!r}), 'door-1')\n"
        "e = box.append(Decision('check_in', 'p1', 'Ann', 0.9))\n"
        "print(e.event_id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == -9
    event_id = result.stdout.strip()
    survivors = Outbox(path, "door-1").pending()
    assert [e.event_id for e in survivors] == [event_id]


def test_a_full_disk_spills_events_to_memory_and_loses_none(small_disk, caplog):
    path = small_disk / "outbox.sqlite"
    box = Outbox(path, "door-1")
    stored = box.append(Decision("check_in", "p1", "Ann", 0.9))
    filler = fill(small_disk)
    with caplog.at_level(logging.ERROR):
        spilled = [box.append(Decision("check_in", f"p{i}", "Ann", 0.9, extra={"pad": "x" * 2000}))
                   for i in range(30)]
    assert box.disk_full and "DISK FULL" in caplog.text
    assert [e.seq for e in spilled] == list(range(2, 32)), "seq keeps counting while the disk is full"
    assert box.spilled() > 0 and box.depth() == 31
    assert [e.seq for e in box.pending(limit=100)] == list(range(1, 32))
    assert [e.seq for e in box.pending(after_seq=20, limit=5)] == [21, 22, 23, 24, 25]
    for event in [stored, *spilled[:10]]:  # published directly while the disk is full
        box.ack(event.seq)
    assert box.depth() == 20
    box.retry_writes()
    assert box.disk_full, "still full: nothing written"
    filler.unlink()
    box._last_write_try = 0.0  # do not wait RETRY_WRITE_S in a test
    box.retry_writes()
    assert not box.disk_full and box.spilled() == 0
    assert box.append(Decision("unknown_face")).seq == 32
    box.close()
    reopened = Outbox(path, "door-1")
    assert [e.seq for e in reopened.pending(limit=100)] == [*range(12, 32), 32], "the spill reached the file"
    assert reopened.pending(limit=100)[0] == spilled[10]
    assert reopened.events_lost == 0


def test_acknowledged_events_leave_no_name_or_id_in_the_file_its_wal_or_free_pages(tmp_path):
    import edge.messaging.outbox

    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, "door-1")
    names = [f"Person Number{i:03d}" for i in range(40)]
    events = [box.append(Decision("check_in", f"pid-{i:03d}-x", name, 0.9)) for i, name in enumerate(names)]
    kept = box.append(Decision("check_in", "pid-still-pending", "Still Pending", 0.9))

    def files() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.glob("outbox.sqlite*"))

    assert all(name.encode() in files() for name in names[:3]), "the names were on disk before the acks"
    for event in events:
        box.ack(event.seq)
    box._last_scrub -= edge.messaging.outbox.SCRUB_EVERY_S  # do not wait in a test
    box.retry_writes()
    on_disk = files()
    for event, name in zip(events, names):
        assert name.encode() not in on_disk and event.event_id.encode() not in on_disk
        assert f"pid-{event.seq - 1:03d}-x".encode() not in on_disk
    assert b"Still Pending" in on_disk, "an unacknowledged event stays"
    box.close()
    assert [e.event_id for e in Outbox(path, "door-1").pending()] == [kept.event_id]
