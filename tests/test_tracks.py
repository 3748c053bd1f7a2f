"""A track is one person: queues at the door at 5, 15 and 30 fps, people swapping places, fused identity."""

import cv2
import numpy as np
import pytest

from edge.camera import Frame
from edge.cli.demo import VISITORS, clip_frames, doorway, visitor
from edge.samples import sample
from tests.conftest import MODELS


def paste(frame: np.ndarray, person: np.ndarray, x0: int) -> None:
    ph, pw = person.shape[:2]
    x0 = int(np.clip(x0, 0, frame.shape[1] - pw))
    frame[frame.shape[0] - ph:, x0:x0 + pw] = person


def queue_clip(frames_per_visit: int, gap_frames: int) -> list[np.ndarray]:
    """The demo's four visitors at the same spot, one after another, gap_frames empty frames apart."""
    return list(clip_frames(1, VISITORS, frames_per_visit, gap_frames))


def swap_clip(frames_each_side: int = 12, crossing_frames: int = 4) -> list[np.ndarray]:
    """Obama on the left and Biden on the right walk past each other and end on the other side."""
    obama, biden = visitor("obama-3.jpg", face_px=90), visitor("biden-1.jpg", face_px=90)
    left, right = 10, 640 - 10 - biden.shape[1]
    path = ([0.0] * frames_each_side + list(np.linspace(0, 1, crossing_frames + 2)[1:-1])
            + [1.0] * frames_each_side)
    clip = []
    for t in path:
        frame = doorway()
        paste(frame, biden, int(right + (left - right) * t))
        paste(frame, obama, int(left + (right - left) * t))  # Obama passes in front
        clip.append(frame)
    return clip


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, facenet_model):
    from edge.config import config_from_dict
    from edge.identity.gallery import GalleryFile
    from edge.recognition.enroll import enrol
    from edge.service.assembly import build_identifier

    root = tmp_path_factory.mktemp("tracks")
    config = config_from_dict({"models": {"dir": str(facenet_model.parent)},
                               "embedder": {"model": str(facenet_model), "fuse_with": []},
                               "matcher": {"gallery": str(root / "gallery.npz"), "augmentations": 4}}, base_dir=root)
    identifier = build_identifier(config, with_matcher=False)
    for name, photos in {"Barack Obama": ["obama-1.jpg", "obama-2.jpg"], "Joe Biden": ["biden-1.jpg"]}.items():
        enrol(identifier, GalleryFile.from_config(config), name, [sample(p) for p in photos], None, 4)
    return config


def run_clip(enrolled, clip: list[np.ndarray], fps: float, **confirmation):
    """enrolled: the config the gallery was enrolled with (its model and gallery)."""
    from edge.config import config_from_dict
    from edge.service.assembly import build_pipeline

    config = config_from_dict({
        "models": {"dir": str(MODELS)}, "embedder": {"model": str(enrolled.embedder.model), "fuse_with": []},
        "matcher": {"gallery": str(enrolled.matcher.gallery)},
        "confirmation": {"require_gesture": False, "unknown_frames": 3, "recognise_frames": 2, **confirmation},
    }, base_dir=enrolled.matcher.gallery.parent)
    pipeline = build_pipeline(config)
    decisions = []
    for index, image in enumerate(clip):
        decisions += pipeline.process(Frame(image, index / fps, index, "test")).decisions
    return [(d.type, d.name) for d in decisions], pipeline


EVERY_VISITOR_ONCE = [("check_in", "Barack Obama"), ("unknown_face", None), ("check_in", "Joe Biden"),
                      ("unknown_face", None)]


@pytest.mark.parametrize("fps", [5, 15, 30])
@pytest.mark.parametrize("gap_frames", [1, 8])
def test_a_queue_at_the_door_reports_every_visitor_exactly_once(enrolled, fps, gap_frames):
    # cooldown 0 and no unknown interval: a track wrongly continued or wrongly split would show here
    events, _ = run_clip(enrolled, queue_clip(15, gap_frames), fps, cooldown_s=0, unknown_interval_s=0)
    assert events == EVERY_VISITOR_ONCE, f"{fps} fps, {gap_frames} empty frames between visitors"


def test_a_new_person_in_the_same_spot_without_any_gap_splits_the_track(enrolled):
    """Obama, Collins and Biden directly after each other (no empty frame): each is told apart."""
    clip = queue_clip(12, 0)[:36]
    events, pipeline = run_clip(enrolled, clip, 30, cooldown_s=0, unknown_interval_s=0)
    assert events == EVERY_VISITOR_ONCE[:3] and pipeline.tracks_split == 2


def test_two_people_swapping_places_are_each_checked_in_once(enrolled):
    for fps in (5, 15, 30):
        events, _ = run_clip(enrolled, swap_clip(), fps)
        assert sorted(events) == [("check_in", "Barack Obama"), ("check_in", "Joe Biden")], f"{fps} fps"


def test_an_embedding_is_never_reused_across_a_gap(enrolled):
    """The 30 fps queue used to give one event for four visitors: the next face inherited the last match."""
    _, pipeline = run_clip(enrolled, queue_clip(15, 1), 30, cooldown_s=0, unknown_interval_s=0)
    assert pipeline.embeddings_reused > 0, "still reused while a face stays put"


def test_fused_identity_weights_the_better_frames():
    from edge.inference.quality import FaceQuality
    from edge.recognition.pipeline import TrackIdentity

    track = TrackIdentity(keep=2)
    sharp, blurred, tiny = FaceQuality(150, 200, 1.0), FaceQuality(150, 3, 1.0), FaceQuality(20, 200, 1.0)
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    track.add(b, blurred)
    track.add(a, sharp)
    track.add(b, tiny)
    assert len(track.best) == 2 and track.best[0][0] == 1.0, "the best frames are kept, best first"
    fused = track.fused()
    assert np.isclose(np.linalg.norm(fused), 1.0) and fused[0] > 0.95, "the sharp, large frame dominates"


def test_quality_measures_on_real_photos():
    from edge.inference.align import align_face
    from edge.inference.detector import BlazeFaceDetector
    from edge.inference.quality import face_quality

    detector = BlazeFaceDetector()
    image = cv2.imread(str(sample("collins-1.jpg")))
    face = detector.detect(image)[0]
    good = face_quality(face, align_face(image, face, 160, 0.1))
    blurred_image = cv2.GaussianBlur(image, (0, 0), 3)
    blurred_face = detector.detect(blurred_image)[0]
    blurred = face_quality(blurred_face, align_face(blurred_image, blurred_face, 160, 0.1))
    assert good.frontal > 0.9 and good.sharpness > 10 * blurred.sharpness and blurred.weight < 0.3 < good.weight
    turned = cv2.imread(str(sample("cameraman.jpg")))
    side = detector.detect(turned)[0]
    assert face_quality(side, align_face(turned, side, 160, 0.1)).frontal < good.frontal


def test_the_split_distance_follows_each_models_own_scale(tmp_path, facenet_model, mobilefacenet_model):
    """A split is a person swap judged on the scale of `known`: by default a fixed fraction of the embedder's own
    measured operating point, so MobileFaceNet's wider distances do not split its visits; a configured number wins."""
    from edge.config import config_from_dict
    from edge.identity.operating import operating_point
    from edge.inference.embedder import read_sidecar
    from edge.recognition.pipeline import SPLIT_FRACTION
    from edge.service.assembly import split_distance

    config = config_from_dict({}, base_dir=tmp_path)
    distances = {}
    for model in (facenet_model, mobilefacenet_model):
        model_id = read_sidecar(model, verify_hash=False)["model_id"]
        distances[model.name] = split_distance(config, model_id)
        assert distances[model.name] == pytest.approx(SPLIT_FRACTION * operating_point(model_id).threshold, abs=1e-3)
    assert distances[facenet_model.name] == pytest.approx(0.9, abs=0.002)  # the constant FaceNet's tracks were tuned on
    assert distances[mobilefacenet_model.name] > distances[facenet_model.name]
    assert split_distance(config_from_dict({"tracking": {"split_distance": 0.7}}, base_dir=tmp_path), "any") == 0.7
