"""The evidence behind the liveness measurements: the rendered replays (testkit/replays.py), the planarity fit
(bench/planarity.py) and the FaceMesh landmark runner they rest on, on real photos and the real model."""

import cv2
import numpy as np
import pytest

from bench.planarity import fit_pair
from edge.config import config_from_dict
from edge.inference.face_landmarks import FaceMesh
from edge.service.assembly import build_identifier
from testkit.replays import replay
from tests.conftest import ROOT

SAMPLES = ROOT / "edge" / "data" / "samples"


@pytest.fixture(scope="module")
def identifier():
    return build_identifier(config_from_dict({}, ROOT), with_matcher=False)


def test_a_plane_fits_a_homography_and_a_turning_head_does_not():
    rng = np.random.default_rng(0)
    flat = rng.uniform(-50, 50, (200, 2))
    tilt = np.array([[1.0, 0.08, 5.0], [-0.05, 0.9, 2.0], [0.0015, 0.001, 1.0]])
    mapped = np.c_[flat, np.ones(200)] @ tilt.T
    planar = fit_pair(flat, mapped[:, :2] / mapped[:, 2:])
    assert planar.similarity > 0.02 and planar.ratio < 1e-6
    # a head: points with depth, turned 20 degrees about the vertical axis and seen in orthographic projection
    head = np.c_[flat, 40 * np.cos(flat[:, 0] / 50) * np.cos(flat[:, 1] / 50)]
    turn = np.radians(20)
    turned = head @ np.array([[np.cos(turn), 0, np.sin(turn)], [0, 1, 0], [-np.sin(turn), 0, np.cos(turn)]]).T
    solid = fit_pair(head[:, :2], turned[:, :2])
    assert solid.similarity > 0.02 and solid.ratio > 0.3


def test_facemesh_puts_its_points_on_the_face(identifier):
    image = cv2.imread(str(SAMPLES / "obama-1.jpg"))
    face = identifier.faces(image)[0]
    marks = FaceMesh(ROOT / "models").landmarks(image, face)
    x, y, w, h = face.box
    inside = ((marks.points[:, 0] > x - 0.3 * w) & (marks.points[:, 0] < x + 1.3 * w)
              & (marks.points[:, 1] > y - 0.5 * h) & (marks.points[:, 1] < y + 1.3 * h))
    assert marks.presence > 0.9 and inside.mean() > 0.98 and marks.points.shape == (468, 2)
    # the nose tip (point 1) lies between the eyes' keypoints horizontally, below them
    eyes = face.keypoints[:2]
    assert eyes[:, 0].min() < marks.points[1, 0] < eyes[:, 0].max() and marks.points[1, 1] > eyes[:, 1].max()


@pytest.mark.parametrize("kind", ["print", "screen"])
def test_a_replay_shows_the_photo_moving_in_the_scene(identifier, kind):
    photo = cv2.imread(str(SAMPLES / "obama-1.jpg"))
    scene = np.full((480, 640, 3), 90, np.uint8)
    frames = replay(photo, scene, kind, 4, np.random.default_rng(1), width_fraction=0.4)
    assert len(frames) == 4 and all(f.shape == scene.shape for f in frames)
    boxes = [faces[0].box for f in frames if (faces := identifier.faces(f))]
    assert len(boxes) >= 3, "the face on the paper or the screen is still a face to the detector"
    assert len({b[:2] for b in boxes}) > 1, "the hand moves the picture"
    with pytest.raises(ValueError, match="replay kind"):
        replay(photo, scene, "mask", 1, np.random.default_rng(1))
