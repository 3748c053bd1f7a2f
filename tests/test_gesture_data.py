"""The packaged gesture data and model against real people: the held-out photos' landmarks (committed, so
this runs everywhere), and where the shared gesture photos lie beside the project, the photos themselves."""

import numpy as np
import pytest

from edge.inference.gesture_model import DEFAULT_MODEL, GestureNetwork, LandmarkSet, body_points, vector
from tests.conftest import ROOT

SHARED_GESTURES = ROOT.parent / "shared" / "gestures"
ACTIONS = ("confirm", "reject", "capture")


def reads(network: GestureNetwork, data: LandmarkSet, rows: np.ndarray) -> list[str | None]:
    """What the network reads for each row; None where no body (or no shoulders) was found."""
    out = []
    for i in rows:
        points = body_points(data.landmarks[i], data.visibility[i], 0.5) if data.found[i] else None
        out.append(None if points is None else network.predict(vector(points))[0])
    return out


def check_heldout(network: GestureNetwork, data: LandmarkSet) -> dict:
    rows = data.rows("heldout")
    read = reads(network, data, rows)
    report = {}
    for gesture in ACTIONS:
        mine = [r for r, i in zip(read, rows) if data.gesture[i] == gesture]
        bodies = [r for r in mine if r is not None]
        report[gesture] = (len(mine), len(bodies), sum(r == gesture for r in bodies))
    near = [(data.source[i], r) for r, i in zip(read, rows) if data.gesture[i] == "none" and r in ACTIONS]
    return {"per_gesture": report, "photo_near_misses": [n for n in near if not n[0].startswith("portraits/")],
            "portraits": [n for n in near if n[0].startswith("portraits/")],
            "none_rows": sum(data.gesture[i] == "none" for i in rows)}


def assert_reads_real_people(report: dict) -> None:
    for gesture, (frames, bodies, right) in report["per_gesture"].items():
        assert frames >= 20, (gesture, frames)
        assert bodies >= 0.95 * frames, f"{gesture}: bodies found in {bodies} of {frames} held-out frames"
        assert right >= 0.95 * bodies, f"{gesture}: read right in {right} of {bodies} held-out frames with a body"
    assert report["photo_near_misses"] == [], "a near miss of the gesture photos read as O, X or capture"
    assert len(report["portraits"]) <= 1, report["portraits"]  # one thinking pose (hand at the chin) reads X


def test_the_packaged_model_reads_the_held_out_real_people():
    """CI's regression test: the committed held-out rows (one photo in four, with its closer views) were never
    trained on. O, X and capture read right in >= 95 % where a body is found, no near miss reads as one."""
    data = LandmarkSet.load()
    report = check_heldout(GestureNetwork.load(DEFAULT_MODEL), data)
    assert_reads_real_people(report)
    assert report["none_rows"] >= 300


def test_the_packaged_model_is_what_its_converter_builds(tmp_path):
    """facecheck-convert gesture-model from the committed landmarks gives a model as good as the shipped one,
    trained on the train split only."""
    from converters.gestures import train_default

    network = train_default(out=tmp_path / "model.npz", log=lambda _: None)
    shipped = GestureNetwork.load(DEFAULT_MODEL)
    assert network.meta["poses"] == shipped.meta["poses"] and network.labels == shipped.labels
    assert_reads_real_people(check_heldout(GestureNetwork.load(tmp_path / "model.npz"), LandmarkSet.load()))


def test_the_landmark_data_says_where_it_comes_from():
    data = LandmarkSet.load()
    assert set(data.meta["sources"]) == {"ecg", "o-yoga", "portraits"}
    assert data.meta["pose_model"] == "mediapipe-0.10.21-pose_landmark_full"
    photos = {s.partition("#")[0] for s in data.source}
    for photo in photos:  # every view of a photo is on the photo's side of the split
        sides = {data.split[i] for i in np.nonzero(np.char.startswith(data.source.astype(str), photo))[0]
                 if data.source[i].partition("#")[0] == photo}
        assert len(sides) == 1, photo
    assert (data.gesture[np.char.find(data.source.astype(str), "take_off/036dcb83") >= 0] == "none").all(), \
        "the two take_off frames with arms hanging down are labelled none (converters.gestures.RELABELLED)"


@pytest.fixture(scope="module")
def shared_gestures():
    if not (SHARED_GESTURES / "ecg").is_dir():
        pytest.skip(f"the gesture photos are not beside the project ({SHARED_GESTURES}); the committed landmarks "
                    "are tested without them")
    return SHARED_GESTURES


def test_the_committed_landmarks_are_what_blazepose_gives_for_the_photos(shared_gestures):
    from converters.gestures import labelled_photos
    from edge.images import read_image
    from edge.inference.pose import BlazePose

    data = LandmarkSet.load()
    index = {s: i for i, s in enumerate(data.source)}
    pose = BlazePose()
    for _, _, photo in labelled_photos(shared_gestures)[::60]:
        row = index[str(photo.relative_to(shared_gestures))]
        found = pose.poses(read_image(photo))
        assert bool(found) == bool(data.found[row]), photo
        if found:
            assert np.abs(found[0].landmarks - data.landmarks[row]).max() < 1.0, photo


def test_tiles_find_the_small_bodies_the_whole_frame_misses(shared_gestures):
    """People ~150 px tall in a 640x480 frame: the detector sees them at ~50 px in its 224 px input."""
    from edge.images import read_image
    from edge.inference.pose import BlazePose

    pose = BlazePose()
    photos = sorted((shared_gestures / "ecg" / "emergency").glob("*.jpg"))
    missed_whole = found = 0
    for photo in photos:
        image = read_image(photo)
        missed_whole += not pose._people_in(image, 0, 0)
        found += bool(pose.people(image))
    assert missed_whole >= 5, "the whole frame alone misses some of these bodies"
    assert found == len(photos), f"with tiles a body is found in {found} of {len(photos)}"
