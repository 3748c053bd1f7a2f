"""The confirmation state machine driven through every path on synthetic timelines."""

import numpy as np

from edge.config import ConfirmationConfig
from edge.recognition.decision import Confirmation, Observation

FPS = 10


def cfg(**kw):
    base = dict(require_gesture=True, timeout_s=3, hold_frames=3, recognise_frames=2, unknown_frames=4,
                unknown_interval_s=10, cooldown_s=60)
    base.update(kw)
    return ConfirmationConfig(**base)


def alice(track=1, gesture=None, **kw):
    return Observation(track, True, "p-alice", "Alice", 0.9, gesture, **kw)


def bob(track=2, gesture=None):
    return Observation(track, True, "p-bob", "Bob", 0.8, gesture)


def stranger(track=3, gesture=None):
    return Observation(track, False, None, None, 0.4, gesture)


def play(machine, timeline, start=0):
    """timeline: list of per-frame observation lists; returns (frame index, decision) pairs."""
    out = []
    for i, observations in enumerate(timeline, start):
        for decision in machine.update(i / FPS, observations):
            out.append((i, decision))
    return out


def test_confirm_gesture_held_checks_in():
    machine = Confirmation(cfg())
    timeline = [[alice()]] * 2 + [[alice(gesture="standby")]] * 3 + [[alice(gesture="confirm")]] * 3
    decisions = play(machine, timeline)
    assert [(i, d.type, d.name, d.gesture) for i, d in decisions] == [(7, "check_in", "Alice", "confirm")]
    assert decisions[0][1].person_id == "p-alice"


def test_a_gesture_counts_in_k_of_the_last_n_frames_so_a_lost_frame_does_not_restart_it():
    machine = Confirmation(cfg(hold_frames=3, hold_window=5))
    lost_one = [[alice(gesture="confirm")], [alice(gesture=None)], [alice(gesture="confirm")], [alice(gesture="none")],
                [alice(gesture="confirm")]]
    decisions = play(machine, [[alice()]] * 2 + lost_one)
    assert [(i, d.type) for i, d in decisions] == [(6, "check_in")], "3 of the last 5, with a miss between"
    in_a_row = Confirmation(cfg(hold_frames=3, hold_window=3))
    assert play(in_a_row, [[alice()]] * 2 + lost_one) == [], "hold_window = hold_frames: k in a row, as before"


def test_scattered_frames_of_a_gesture_outside_the_window_never_add_up():
    machine = Confirmation(cfg(hold_frames=3, hold_window=5, timeout_s=30))
    sparse = ([[alice(gesture="confirm")]] + [[alice(gesture="none")]] * 3) * 6  # one frame in four
    assert play(machine, [[alice()]] * 2 + sparse) == []


def test_of_two_gestures_in_one_window_the_one_reaching_k_decides():
    from edge.recognition.decision import held_gesture

    assert held_gesture(["reject", "confirm", "reject", None, "reject"], 3) == "reject"
    assert held_gesture(["confirm"] * 3 + ["reject"] * 3, 3) == "reject", "both reach k: the one shown last"
    assert held_gesture(["standby", "none", None, "confirm", "confirm"], 3) is None


def test_the_window_must_hold_the_frames():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="hold_window 2 is below hold_frames 3"):
        cfg(hold_frames=3, hold_window=2)


def test_reject_gesture_emits_rejected():
    machine = Confirmation(cfg())
    decisions = play(machine, [[alice()]] * 2 + [[alice(gesture="reject")]] * 3)
    assert [(d.type, d.gesture) for _, d in decisions] == [("rejected", "reject")]


def test_timeout_gives_no_check_in():
    machine = Confirmation(cfg(timeout_s=1))
    timeline = [[alice()]] * 2 + [[alice(gesture="standby")]] * 12 + [[alice(gesture="confirm")]] * 5
    assert play(machine, timeline) == []


def test_unknown_face_reported_once_then_rate_limited():
    machine = Confirmation(cfg(unknown_interval_s=10))
    decisions = play(machine, [[stranger(track=3)]] * 6)
    assert [(i, d.type) for i, d in decisions] == [(3, "unknown_face")]
    # a new stranger track 2 s later: within the interval, so not reported
    later = play(machine, [[stranger(track=4)]] * 6, start=20)
    assert later == []
    # and one after the interval is
    much_later = play(machine, [[stranger(track=5)]] * 6, start=200)
    assert [d.type for _, d in much_later] == ["unknown_face"]


def test_a_face_reported_unknown_is_still_checked_in_once_recognised_on_the_same_track():
    """A person walking up is unknown while far or turned away and recognised once near: the unknown_face report
    does not end the track (it did: the whole visit was lost). Reported once, and recognised frames still count
    from zero after it."""
    machine = Confirmation(cfg(require_gesture=False, unknown_interval_s=0))
    walking_up = [[stranger(track=1)]] * 8 + [[alice(track=1)]] + [[stranger(track=1)]] * 3 + [[alice(track=1)]] * 2
    assert [(i, d.type, d.name) for i, d in play(machine, walking_up)] == [
        (3, "unknown_face", None), (13, "check_in", "Alice")]
    with_gesture = Confirmation(cfg(unknown_interval_s=0))
    timeline = [[stranger(track=1)]] * 5 + [[alice(track=1)]] * 2 + [[alice(track=1, gesture="confirm")]] * 3
    assert [(i, d.type) for i, d in play(with_gesture, timeline)] == [(3, "unknown_face"), (9, "check_in")]


def test_capture_event_carries_the_embedding_only_sealed_to_the_backend_never_an_image():
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    from edge.security.sealing import open_sealed, seal_to

    backend = X25519PrivateKey.generate()
    emb = np.linspace(-1, 1, 8, dtype=np.float32)
    visit = [[alice(embedding=emb)]] * 2 + [[alice(gesture="capture", embedding=emb)]] * 3
    (_, plain), = play(Confirmation(cfg(include_embedding_on_capture=False)), visit)
    assert plain.type == "capture" and "embedding" not in plain.extra and "embedding_sealed" not in plain.extra

    machine = Confirmation(cfg(include_embedding_on_capture=True), seal_embedding=lambda v: seal_to(
        backend.public_key(), v.tobytes()))
    (_, decision), = play(machine, visit)
    sealed = decision.extra["embedding_sealed"]
    assert set(decision.extra) == {"track_id", "liveness", "embedding_sealed"}
    assert emb.tobytes() not in repr(sealed).encode()
    raw = backend.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    assert np.array_equal(np.frombuffer(open_sealed(raw, sealed), "<f4"), emb)
    assert "image" not in decision.extra


def test_cooldown_stops_a_second_check_in():
    machine = Confirmation(cfg(cooldown_s=60))
    visit = [[alice()]] * 2 + [[alice(gesture="confirm")]] * 3
    first = play(machine, visit)
    assert len(first) == 1
    # Alice leaves (no faces), comes back 10 s later on a new track: no new check-in
    play(machine, [[]] * 3, start=10)
    again = play(machine, [[alice(track=9)]] * 2 + [[alice(track=9, gesture="confirm")]] * 3, start=100)
    assert again == []
    # after the cooldown she can check in again
    later = play(machine, [[alice(track=10)]] * 2 + [[alice(track=10, gesture="confirm")]] * 3, start=800)
    assert [d.type for _, d in later] == ["check_in"]


def test_two_people_are_tracked_separately():
    machine = Confirmation(cfg())
    timeline = ([[alice(), bob()]] * 2 + [[alice(gesture="confirm"), bob(gesture="reject")]] * 3)
    decisions = play(machine, timeline)
    assert sorted((d.name, d.type) for _, d in decisions) == [("Alice", "check_in"), ("Bob", "rejected")]


def test_a_bystanders_gesture_cannot_confirm_someone_else():
    # The pipeline attaches each gesture to the face its body belongs to: a bystander (stranger) making
    # the O gesture puts "confirm" on the stranger's observation, never on Alice's.
    machine = Confirmation(cfg())
    timeline = [[alice(), stranger()]] * 2 + [[alice(gesture="none"), stranger(gesture="confirm")]] * 6
    decisions = play(machine, timeline)
    assert all(d.type != "check_in" for _, d in decisions)


def test_without_required_gesture_recognition_alone_checks_in():
    machine = Confirmation(cfg(require_gesture=False, recognise_frames=3))
    decisions = play(machine, [[alice()]] * 5)
    assert [(i, d.type, d.gesture) for i, d in decisions] == [(2, "check_in", None)]


def test_identity_switch_restarts_recognition():
    machine = Confirmation(cfg(require_gesture=False, recognise_frames=3))
    flip = [[alice(track=1)], [Observation(1, True, "p-bob", "Bob", 0.8)], [alice(track=1)], [alice(track=1)]]
    assert play(machine, flip) == []
