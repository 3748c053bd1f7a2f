"""Face identity on real photographs with the real converted FaceNet and BlazeFace models."""

import json
import shutil

import numpy as np
import pytest

from edge.config import config_from_dict
from edge.identity.gallery import Gallery, GalleryError, GalleryFile
from edge.identity.matcher import (
    MAX_TIGHTENING,
    NearestMatcher,
    SvcMatcher,
    build_matcher,
    calibrate_threshold,
    resolve,
)
from edge.inference.embedder import FaceNetEmbedder, sidecar_path
from edge.inference.tflite import ModelError
from edge.recognition.enroll import InputError, enrol
from edge.samples import sample
from edge.service.assembly import build_identifier
from tests.conftest import embed_photo, run_cli, write_yaml


@pytest.fixture
def identifier(base_config, tmp_path):
    config = config_from_dict(base_config, base_dir=tmp_path)
    return config, build_identifier(config, with_matcher=False)


def enrolled(identifier_pair, people):
    config, identifier = identifier_pair
    for name, photos in people.items():
        enrol(identifier, GalleryFile.from_config(config), name, [sample(p) for p in photos], None,
              config.matcher.augmentations)
    return GalleryFile.from_config(config).load()


def test_detector_finds_one_face_with_eyes_inside_the_box(identifier):
    _, ident = identifier
    from edge.images import read_image

    faces = ident.faces(read_image(sample("obama-1.jpg")))
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.8
    assert face.contains(tuple(face.keypoints[0])) and face.contains(tuple(face.keypoints[1]))
    _, _, w, h = face.box
    assert 100 < w < 250 and 100 < h < 250


@pytest.mark.parametrize("model", ["facenet", "mobilefacenet"])
def test_same_person_is_closer_than_different_people(base_config, tmp_path, model, request):
    if model == "mobilefacenet":
        base_config = {**base_config, "embedder": {"model": str(request.getfixturevalue("mobilefacenet_model")),
                                                   "fuse_with": []}}
    ident = build_identifier(config_from_dict(base_config, base_dir=tmp_path), with_matcher=False)
    obama = [embed_photo(ident, p) for p in ("obama-1.jpg", "obama-2.jpg", "obama-3.jpg")]
    others = [embed_photo(ident, p) for p in ("biden-1.jpg", "collins-1.jpg", "cameraman.jpg")]
    same = [np.linalg.norm(a - b) for i, a in enumerate(obama) for b in obama[i + 1:]]
    different = [np.linalg.norm(a - b) for a in obama for b in others]
    assert max(same) < min(different), (same, different)
    assert all(v.shape == (ident.embedder.dim,) and abs(np.linalg.norm(v) - 1) < 1e-4 for v in obama)


@pytest.mark.parametrize("matcher_cls", [SvcMatcher, NearestMatcher])
def test_recognises_across_photos_and_rejects_strangers(identifier, matcher_cls):
    gallery = enrolled(identifier, {"Barack Obama": ["obama-1.jpg", "obama-2.jpg"], "Joe Biden": ["biden-1.jpg"]})
    matcher = matcher_cls(gallery)
    _, ident = identifier
    obama = matcher.match(embed_photo(ident, "obama-3.jpg"))  # a photo not used for enrolment
    assert obama.known and obama.name == "Barack Obama"
    partial = matcher.match(embed_photo(ident, "obama-partial.jpg"))
    assert partial.known and partial.name == "Barack Obama"
    for stranger in ("collins-1.jpg", "cameraman.jpg"):
        result = matcher.match(embed_photo(ident, stranger))
        assert not result.known and result.person_id is None and result.name is None, (stranger, result)
        assert result.distance > matcher.threshold


def test_the_svc_trained_in_a_child_names_who_scikit_learns_own_svc_names(identifier):
    """The door keeps the SVC's arrays, not scikit-learn (edge/identity/svc.py): its numpy one-vs-one vote must
    pick the person scikit-learn's predict picks, on the enrolled real embeddings and on faces between them, for
    two people (scikit-learn's binary sign convention) and for a roster of 150 (votes over 11175 pairs)."""
    from sklearn.svm import SVC

    from edge.identity.svc import fit_here, fit_in_child

    gallery = enrolled(identifier, {"Barack Obama": ["obama-1.jpg", "obama-2.jpg"], "Joe Biden": ["biden-1.jpg"]})
    rng = np.random.default_rng(0)
    x, y = gallery.embeddings, gallery.labels
    between = x[rng.integers(0, len(x), 400)] + x[rng.integers(0, len(x), 400)] + 0.3 * rng.normal(size=(400, x.shape[1]))
    queries = np.concatenate([x, between / np.linalg.norm(between, axis=1, keepdims=True)])
    reference = SVC(kernel="linear", class_weight="balanced").fit(x.astype(np.float64), y).predict(queries)
    trained = fit_in_child(x, y)
    assert [trained.predict(q) for q in queries] == reference.tolist()
    assert len(set(reference.tolist())) == 2

    # 150 people around the real embeddings' own spread: the seed's roster size
    centres = rng.normal(size=(150, x.shape[1]))
    labels = np.repeat(np.arange(150), 8)
    many = centres[labels] * 0.35 + rng.normal(size=(len(labels), x.shape[1]))
    many /= np.linalg.norm(many, axis=1, keepdims=True)
    probes = many[rng.integers(0, len(many), 300)] + 0.5 * rng.normal(size=(300, x.shape[1])) / np.sqrt(x.shape[1])
    reference = SVC(kernel="linear", class_weight="balanced").fit(many, labels).predict(probes)
    trained = fit_here(many, labels)
    assert [trained.predict(q) for q in probes] == reference.tolist()
    assert len(set(reference.tolist())) > 100


def test_removed_person_is_no_longer_matched(identifier):
    config, ident = identifier
    gallery = enrolled(identifier, {"Barack Obama": ["obama-1.jpg", "obama-2.jpg"], "Joe Biden": ["biden-1.jpg"]})
    obama_id = gallery.person_ids[gallery.names.index("Barack Obama")]
    gallery.remove(obama_id)
    GalleryFile.from_config(config).save(gallery)
    reloaded = GalleryFile.from_config(config).load()
    assert reloaded.names == ["Joe Biden"]
    assert (reloaded.labels == 0).all()
    result = build_matcher(reloaded).match(embed_photo(ident, "obama-3.jpg"))
    assert not result.known


def test_threshold_comes_from_the_operating_point_and_calibration_only_tightens(identifier):
    from edge.identity.operating import operating_point

    gallery = enrolled(identifier, {"Barack Obama": ["obama-1.jpg", "obama-2.jpg", "obama-partial.jpg"],
                                    "Joe Biden": ["biden-1.jpg"], "Eileen Collins": ["collins-1.jpg"]})
    point = operating_point(gallery.model_id)
    assert point is not None and point.impostor_pairs > 5000
    threshold, origin = resolve(gallery, None)[:2]
    assert threshold <= point.threshold and origin.startswith("operating point")
    assert build_matcher(gallery).threshold == threshold
    assert resolve(gallery, 0.77)[:2] == (0.77, "config matcher.distance_threshold")
    assert build_matcher(gallery).kind == "svc"
    assert build_matcher(gallery, "auto", svc_max_identities=2).kind == "nearest"


def test_look_alikes_in_the_roster_tighten_the_threshold_never_loosen_it():
    def unit(angle):  # unit vectors in a plane: distance 2 sin(delta/2)
        return np.array([np.cos(angle), np.sin(angle), 0, 0], np.float32)

    close = Gallery("m", 4)
    close.add("a", "A", np.stack([unit(0.0), unit(0.3)]), np.array([True, True]), "m")
    close.add("b", "B", np.stack([unit(0.55)]), np.array([True]), "m")  # B lies 0.25 rad from A's second photo
    assert calibrate_threshold(close, 1.0) == pytest.approx(1.0 - MAX_TIGHTENING)
    far = Gallery("m", 4)
    far.add("a", "A", np.stack([unit(0.0), unit(0.3)]), np.array([True, True]), "m")
    far.add("b", "B", np.stack([unit(3.0)]), np.array([True]), "m")
    assert calibrate_threshold(far, 0.9) == 0.9, "a roster of distinct people keeps the measured threshold"
    single = Gallery("m", 4)
    single.add("a", "A", np.stack([unit(0.0)]), np.array([True]), "m")
    assert calibrate_threshold(single, 0.9) == 0.9


def test_embedder_applies_the_normalisation_its_sidecar_names(tmp_path, facenet_model):
    from edge.inference.embedder import fixed_standardise, prewhiten

    copy = tmp_path / facenet_model.name
    shutil.copy(facenet_model, copy)
    meta = json.loads(sidecar_path(facenet_model).read_text())
    assert FaceNetEmbedder(facenet_model).normalise is {"prewhiten": prewhiten, "fixed": fixed_standardise}[
        meta["normalisation"]]
    for name, function in (("fixed", fixed_standardise), ("prewhiten", prewhiten)):
        sidecar_path(copy).write_text(json.dumps(dict(meta, normalisation=name)))
        assert FaceNetEmbedder(copy).normalise is function
    sidecar_path(copy).write_text(json.dumps(dict(meta, normalisation="wavelet")))
    with pytest.raises(ModelError, match="normalisation 'wavelet'"):
        FaceNetEmbedder(copy)
    crop = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    assert np.allclose(fixed_standardise(crop), (crop.astype(np.float32) - 127.5) / 128)
    assert abs(float(prewhiten(crop).mean())) < 1e-4 and abs(float(prewhiten(crop).std()) - 1) < 1e-3


def test_converter_rebuilds_a_model_built_under_an_older_contract(tmp_path, facenet_model):
    from converters.facenet import is_current

    copy = tmp_path / facenet_model.name
    shutil.copy(facenet_model, copy)
    meta = json.loads(sidecar_path(facenet_model).read_text())
    sidecar_path(copy).write_text(json.dumps(meta))
    assert is_current(copy, meta["precision"], "keras")
    assert not is_current(copy, meta["precision"], "sandberg2018")
    sidecar_path(copy).write_text(json.dumps(dict(meta, model_id="facenet-20180408-102900-int8-m10")))
    assert not is_current(copy, meta["precision"], "keras"), "the pre-normalisation-fix id is stale"


def test_enrolment_skips_photos_without_exactly_one_face(identifier, tmp_path):
    config, ident = identifier
    blank = tmp_path / "blank.jpg"
    import cv2

    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    notimage = tmp_path / "notes.jpg"
    notimage.write_text("hello")
    report = enrol(ident, GalleryFile.from_config(config), "Barack Obama", [sample("obama-1.jpg"), blank, notimage], None, 2)
    assert report.used == [sample("obama-1.jpg")]
    assert "no face" in report.skipped[blank]
    assert "not a JPEG, PNG, BMP or WebP image" in report.skipped[notimage]
    gallery = GalleryFile.from_config(config).load()
    assert gallery.counts()[report.person_id] == (1, 3)
    with pytest.raises(InputError, match="no usable photo"):
        enrol(ident, GalleryFile.from_config(config), "Nobody", [blank], None, 2)
    assert GalleryFile.from_config(config).load().people == 1, "a failed enrolment writes nothing"


def test_gallery_from_another_model_is_refused(identifier):
    config, _ = identifier
    enrolled(identifier, {"Joe Biden": ["biden-1.jpg"]})
    with pytest.raises(GalleryError, match="enrolled with model"):
        GalleryFile.from_config(config).load_or_new("facenet-20180408-102900-float32-m10", 512)
    with pytest.raises(GalleryError, match="re-enrol"):  # e.g. a gallery from before the normalisation fix
        GalleryFile.from_config(config).load_or_new("facenet-20180408-102900-int8-m10", 512)


def test_corrupt_gallery_is_refused_with_its_path(tmp_path):
    from edge.security.sealing import Key, new_key, seal

    key = Key(new_key(), "test")
    path = tmp_path / "gallery.npz"
    path.write_bytes(seal(b"PK\x03\x04 definitely not a zip", key.value, "gallery"))
    with pytest.raises(GalleryError, match=str(path)):
        Gallery.load(path, key)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, format_version=np.array(1), model_id=np.array({"evil": 1}, dtype=object))
    pickled.write_bytes(seal(pickled.read_bytes(), key.value, "gallery"))
    with pytest.raises(GalleryError, match=str(pickled)):
        Gallery.load(pickled, key)


def test_corrupt_or_replaced_model_is_refused(tmp_path, facenet_model):
    copy = tmp_path / facenet_model.name
    shutil.copy(facenet_model, copy)
    shutil.copy(sidecar_path(facenet_model), sidecar_path(copy))
    FaceNetEmbedder(copy)  # intact copy loads
    with open(copy, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xff" * 64)
    with pytest.raises(ModelError, match="does not match its sidecar"):
        FaceNetEmbedder(copy)
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00" * 1000)
    with pytest.raises(ModelError, match="sidecar missing"):
        FaceNetEmbedder(garbage)
    meta = json.loads(sidecar_path(facenet_model).read_text())
    from edge.inference.embedder import file_sha256

    meta["sha256"] = file_sha256(garbage)
    sidecar_path(garbage).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="not a valid TFLite model"):
        FaceNetEmbedder(garbage)


def test_cli_enroll_identify_roster_round_trip(base_config, tmp_path):
    config = write_yaml(tmp_path / "config.yaml", base_config)
    result = run_cli("enroll", "-c", str(config), "--name", "Barack Obama", str(sample("obama-1.jpg")),
                     str(sample("obama-2.jpg")))
    assert result.returncode == 0, result.stderr
    people = tmp_path / "people"
    (people / "Joe Biden").mkdir(parents=True)
    shutil.copy(sample("biden-1.jpg"), people / "Joe Biden")
    result = run_cli("enroll", "-c", str(config), "--folders", str(people))
    assert result.returncode == 0, result.stderr
    listing = [json.loads(line) for line in run_cli("roster", "-c", str(config), "list").stdout.splitlines()]
    assert sorted(p["name"] for p in listing) == ["Barack Obama", "Joe Biden"]
    assert {p["name"]: p["photos"] for p in listing} == {"Barack Obama": 2, "Joe Biden": 1}

    result = run_cli("identify", "-c", str(config), str(sample("obama-3.jpg")), str(sample("collins-1.jpg")))
    assert result.returncode == 0, result.stderr
    obama, collins = [json.loads(line) for line in result.stdout.splitlines()]
    assert obama["image"] == str(sample("obama-3.jpg"))
    face = obama["faces"][0]
    assert face["known"] and face["name"] == "Barack Obama" and len(face["box"]) == 4
    assert set(face) == {"box", "known", "person_id", "name", "score", "distance", "liveness"}
    assert set(face["liveness"]) == {"score", "verdict"} and face["liveness"]["verdict"] in ("live", "uncertain")
    assert collins["faces"][0]["known"] is False and collins["faces"][0]["person_id"] is None

    obama_id = next(p["person_id"] for p in listing if p["name"] == "Barack Obama")
    assert run_cli("roster", "-c", str(config), "remove", obama_id).returncode == 0
    again = json.loads(run_cli("identify", "-c", str(config), str(sample("obama-3.jpg"))).stdout)
    assert again["faces"][0]["known"] is False
    missing = run_cli("roster", "-c", str(config), "remove", obama_id)
    assert missing.returncode == 2 and obama_id in missing.stderr


def test_cli_bad_inputs_exit_2_and_name_the_file(base_config, tmp_path):
    config = write_yaml(tmp_path / "config.yaml", base_config)
    junk = tmp_path / "junk.jpg"
    junk.write_text("no image here")
    result = run_cli("identify", "-c", str(config), str(junk))
    assert result.returncode == 2 and str(junk) in result.stderr and "Traceback" not in result.stderr
    result = run_cli("enroll", "-c", str(config), "--name", "X", str(tmp_path / "missing.jpg"))
    assert result.returncode == 2 and "missing.jpg" in result.stderr
    broken_model = dict(base_config, embedder={"model": str(tmp_path / "nope.tflite")})
    result = run_cli("identify", "-c", str(write_yaml(tmp_path / "c2.yaml", broken_model)), str(junk))
    assert result.returncode == 2 and "nope.tflite" in result.stderr
    corrupt = tmp_path / "state" / "gallery.npz"
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(b"garbage")
    result = run_cli("roster", "-c", str(config), "list")
    assert result.returncode == 2 and str(corrupt) in result.stderr


def test_pipeline_gives_every_face_in_replayed_frames_an_identity(base_config, tmp_path):
    from edge.cli.demo import render_clip
    from edge.service.daemon import Daemon

    expected = render_clip(tmp_path / "frames")
    config = config_from_dict(base_config, base_dir=tmp_path)
    ident = build_identifier(config, with_matcher=False)
    for name, photos in {"Barack Obama": ["obama-1.jpg", "obama-2.jpg"], "Joe Biden": ["biden-1.jpg"]}.items():
        enrol(ident, GalleryFile.from_config(config), name, [sample(p) for p in photos], None, 2)
    results = []
    Daemon(config, sinks=[], on_result=results.append).run()
    assert len(results) == 92
    # 4 visitors x 15 frames, 8 empty frames after each
    for visit, who in enumerate(expected):
        frames = results[visit * 23: visit * 23 + 15]
        names = [f.match.name for r in frames for f in r.faces]
        assert len(names) >= 13, "the face is found in (nearly) every frame of the visit"
        assert all(n == who for n in names), (who, names)
        assert all(not r.faces for r in results[visit * 23 + 15: visit * 23 + 23])


def test_tiny_faces_are_skipped_at_enrolment(identifier, tmp_path):
    import cv2

    config, ident = identifier
    tiny = tmp_path / "tiny.jpg"
    image = cv2.imread(str(sample("obama-1.jpg")))
    cv2.imwrite(str(tiny), cv2.resize(image, None, fx=0.15, fy=0.15))
    with pytest.raises(InputError, match="smaller than detector.min_face_px"):
        enrol(ident, GalleryFile.from_config(config), "Tiny", [tiny], None, 2)


def test_a_face_that_barely_moves_is_not_re_embedded_every_frame(identifier):
    from edge.camera.base import Frame
    from edge.images import read_image
    from edge.recognition.decision import Confirmation
    from edge.recognition.pipeline import Pipeline

    config, ident = identifier
    pipeline = Pipeline(ident, Confirmation(config.confirmation), reuse_iou=0.8, reembed_every=5)
    image = read_image(sample("obama-1.jpg"))
    results = [pipeline.process(Frame(image, i / 10, i, "test")) for i in range(11)]
    assert pipeline.embeddings_reused == 8, "0 and 1 embed (both views), 2-5 reuse, 6 embeds, 7-10 reuse"
    assert len({r.faces[0].track_id for r in results}) == 1
    moved = np.ascontiguousarray(image[:, 60:])  # the face jumps 60 px: a new embedding at once
    pipeline.process(Frame(moved, 1.1, 11, "test"))
    assert pipeline.embeddings_reused == 8


def test_a_photo_is_both_views_and_a_track_alternates_them(identifier):
    from edge.camera.base import Frame
    from edge.images import read_image
    from edge.inference.align import align_face
    from edge.inference.embedder import embed_views
    from edge.recognition.decision import Confirmation
    from edge.recognition.pipeline import Pipeline

    config, ident = identifier
    image = read_image(sample("obama-1.jpg"))
    face = ident.faces(image)[0]
    aligned = align_face(image, face, ident.embedder.input_size, ident.embedder.align_margin)
    plain, mirrored = embed_views(ident.embedder, aligned, "plain"), embed_views(ident.embedder, aligned, "mirrored")
    mean = (plain + mirrored) / np.linalg.norm(plain + mirrored)
    assert np.allclose(ident.embed_with_quality(image, face)[0], mean, atol=1e-6), "a photo is embedded as both views"
    assert 0.05 < np.linalg.norm(plain - mirrored) < 0.9, "the mirror image is another view of the same person"
    with pytest.raises(ValueError, match="view 'sideways'"):
        embed_views(ident.embedder, aligned, "sideways")

    pipeline = Pipeline(ident, Confirmation(config.confirmation), reembed_every=1)
    frames = [pipeline.process(Frame(image, i / 10, i, "test")) for i in range(3)]
    embeddings = [f.faces[0].embedding for f in frames]
    assert np.allclose(embeddings[0], plain, atol=1e-6) and np.allclose(embeddings[1], mirrored, atol=1e-6)
    assert np.allclose(embeddings[2], plain, atol=1e-6)


def test_alignment_is_a_least_squares_similarity_that_moves_smoothly_with_the_keypoints():
    """A robust two-of-three-points fit (LMEDS) jumped between point pairs: a 0.0001 px keypoint change
    moved an embedding by up to 0.19 and x86 and ARM disagreed. Now every point counts."""
    from dataclasses import replace

    from edge.images import read_image
    from edge.inference.align import alignment_matrix, similarity_transform
    from edge.inference.detector import BlazeFaceDetector

    truth = np.array([[0.8, -0.2, 5.0], [0.2, 0.8, 7.0]])
    points = np.array([[10, 10], [50, 12], [30, 60]], np.float32)
    assert np.allclose(similarity_transform(points, points @ truth[:, :2].T + truth[:, 2]), truth, atol=1e-6)
    assert similarity_transform(np.ones((3, 2), np.float32), points) is None, "degenerate points: no transform"
    face = BlazeFaceDetector().detect(read_image(sample("obama-2.jpg")))[0]
    base = alignment_matrix(face, 160, 0.1)
    rng = np.random.default_rng(0)
    for _ in range(20):
        nudged = replace(face, keypoints=face.keypoints + rng.normal(0, 1e-3, face.keypoints.shape).astype(np.float32))
        assert np.abs(alignment_matrix(nudged, 160, 0.1) - base).max() < 0.01, "a hundredth of a pixel at most"


def test_compact_search_finds_what_exact_search_finds_and_decides_on_the_exact_distance():
    from bench.search import roster
    from edge.identity.search import CompactSearch, ExactSearch

    gallery, probes = roster(3000)
    compact = NearestMatcher(gallery, threshold=1.0, compact_from=0)
    exact = NearestMatcher(gallery, threshold=1.0, compact_from=10 ** 9)
    assert isinstance(compact.search, CompactSearch) and isinstance(exact.search, ExactSearch)
    assert compact.search.nbytes() < 0.3 * gallery.embeddings.nbytes, "a byte per dimension, no float32 copy"
    assert exact.search.nbytes() == gallery.embeddings.nbytes
    answers = [(compact.match(q), exact.match(q)) for q in probes]
    assert sum(c.person_id == e.person_id for c, e in answers) >= 0.99 * len(probes)
    for c, e in answers:
        if c.person_id is not None and c.person_id == e.person_id:
            assert abs(c.distance - e.distance) < 1e-5, "the open-set rule sees the exact float32 distance"
    assert sum(e.person_id is not None for _, e in answers[:400]) > 300, "genuine probes are found"
    assert all(c.person_id is None for c, _ in answers[400:]), "strangers are refused"


def test_a_person_with_many_photos_is_not_ambiguous_with_themselves():
    from edge.identity.gallery import Gallery

    rng = np.random.default_rng(3)
    centre = rng.standard_normal(128).astype(np.float32)
    photos = centre + 0.02 * rng.standard_normal((40, 128)).astype(np.float32)  # 40 photos > 16 candidates
    other = rng.standard_normal((1, 128)).astype(np.float32)
    emb = np.vstack([photos, other])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    gallery = Gallery("m", 128, emb.astype(np.float32), np.array([0] * 40 + [1], np.int32), np.ones(41, bool),
                      ["a", "b"], ["A", "B"])
    query = centre / np.linalg.norm(centre)
    for compact_from in (0, 10 ** 9):
        match = NearestMatcher(gallery, threshold=1.0, compact_from=compact_from).match(query)
        assert match.known and match.person_id == "a"


def test_the_roster_bounds_the_threshold_from_its_own_impostor_distances():
    from edge.identity.operating import roster_point

    # a population like the accuracy photos: people lie far apart, the roster leaves the model's point alone
    western = roster_point([1.40, 1.45, 1.38], photos=3, people=3, prior_std=0.085)
    assert western.threshold > 1.058 and western.rule.startswith("normal model")
    # a population whose people lie closer together (as FaceNet sees East Asian faces): much tighter
    closer = roster_point([1.05, 1.10, 1.02], photos=3, people=3, prior_std=0.085)
    assert 0.6 < closer.threshold < 0.75
    assert closer.modelled_far(closer.threshold) == pytest.approx(1e-4, rel=0.1)
    # two enrolled people who look alike: never closer to each other than the threshold
    alike = roster_point([0.55, 1.3, 1.3], photos=3, people=3, prior_std=0.085)
    assert alike.threshold <= 0.53
    one_pair_alike = roster_point([0.9] + [1.4] * 20, photos=21, people=7, prior_std=0.085)
    assert one_pair_alike.threshold == 0.88 and one_pair_alike.rule.startswith("nearest impostor")
    # one person: the roster says nothing
    assert roster_point([], photos=2, people=1, prior_std=0.085).threshold is None
    # more people, same distances: a stranger meets more templates, so the bound tightens
    many = roster_point([1.05, 1.10, 1.02], photos=300, people=30, prior_std=0.085)
    assert many.threshold < closer.threshold
    assert roster_point([1.05, 1.10, 1.02], photos=300, people=3, prior_std=0.085).threshold == closer.threshold, \
        "more photos of the same people: still one template each"


def _one_population(people: int, photos_each: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings of people of one population: a shared face, each person's own, and each photo's noise."""
    rng = np.random.default_rng(seed)
    photos = (rng.standard_normal(64) + 0.7 * np.repeat(rng.standard_normal((people, 64)), photos_each, axis=0)
              + 0.7 * rng.standard_normal((people * photos_each, 64)))
    photos /= np.linalg.norm(photos, axis=1, keepdims=True)
    return photos.astype(np.float32), np.repeat(np.arange(people), photos_each).astype(np.int32)


def test_a_face_is_judged_against_the_mean_of_the_persons_enrolled_photos():
    """The open-set distance is to the person's template, the unit mean of their enrolled photos' own embeddings
    (augmented variants left out), not to their nearest photo: a visit, itself the mean of its frames, lies nearer
    the template than its noise would let it lie to any one photo."""
    from edge.identity.matcher import NearestMatcher, person_templates

    photos, labels = _one_population(4, 5)
    variants = photos[labels == 0][:1] * -1.0  # an augmented variant that points away: it must not move the template
    gallery = Gallery("m", 64, np.concatenate([photos, variants]), np.concatenate([labels, [0]]).astype(np.int32),
                      np.concatenate([np.ones(20, bool), [False]]), list("abcd"), list("ABCD"))
    templates = person_templates(photos, labels, 4)
    mean = photos[labels == 2].mean(axis=0)
    assert templates[2] == pytest.approx(mean / np.linalg.norm(mean), abs=1e-6)
    visit = photos[labels == 2][:3].mean(axis=0)
    visit /= np.linalg.norm(visit)
    distances = NearestMatcher(gallery).enrolled_distances(visit)
    assert distances == pytest.approx(np.linalg.norm(templates - visit, axis=1), abs=1e-5)
    assert distances[2] < np.linalg.norm(photos[labels == 2] - visit, axis=1).min(), \
        "nearer the template than any one photo"
    match = NearestMatcher(gallery, threshold=float(distances[2]) + 0.01).match(visit)
    assert match.known and match.person_id == "c" and match.distance == pytest.approx(distances[2], abs=1e-5)


def test_the_bound_models_a_visit_whose_fused_identity_comes_closer_than_one_photo():
    """A door decides on a track's identity fused from its frames: the noise of single photos averages out, so a
    stranger's visit lies nearer another person's template than one photo of them. The bound measures that on the
    roster (each person's photos fused against everybody else's template) and moves its normal model's mean in by
    it."""
    from edge.identity.matcher import person_templates, template_impostors
    from edge.identity.operating import learned_threshold, roster_point

    photos, labels = _one_population(6, 4)
    templates = person_templates(photos, labels, 6)

    def nearer_when_fused(person: int) -> float:
        mine, others = photos[labels == person], np.delete(templates, person, axis=0)
        return float(np.linalg.norm(mine[:, None] - others[None], axis=2).mean()
                     - np.linalg.norm(others - templates[person], axis=1).mean())

    impostor, shift = template_impostors(photos, labels)
    assert len(impostor) == 6 * 20, "each template to every other person's photos"
    assert shift == pytest.approx(np.mean([nearer_when_fused(p) for p in range(6)]), rel=1e-4)
    assert shift > 0.05  # (East Asian faces: 0.08 for five photos fused)
    impostor, shift = template_impostors(photos[::4], np.arange(6, dtype=np.int32))  # one photo each
    assert shift is None, "nothing on the roster to measure it by"
    assert len(impostor) == 15, "one photo each: each pair of people is one distance, counted once"
    distances = np.array([1.05, 1.10, 1.02])
    per_photo = roster_point(distances, photos=3, people=3, prior_std=0.085)
    per_visit = roster_point(distances, photos=3, people=3, prior_std=0.085, visit_shift=0.06)
    assert per_visit.threshold == pytest.approx(per_photo.threshold - 0.06, abs=0.002)
    assert per_visit.modelled_far(per_visit.threshold) == pytest.approx(1e-4, rel=0.1)
    # a template learned at the door is itself a visit's fused identity: its radius comes in once more
    assert learned_threshold(per_visit, 0.6, 30) == pytest.approx(learned_threshold(per_photo, 0.6, 30) - 0.06,
                                                                  abs=0.0011)


def test_a_still_photo_is_not_held_to_a_visit_shift_that_was_only_predicted():
    """With one photo per person the visit shift is predicted for a track's fused frames (predicted_shift): a still
    photo is one look, not a visit, so it is judged by the bound without it, a track by the tighter one. A shift
    measured on the roster's own photos is kept for photos too (the tight side), and a configured threshold is both."""
    from edge.identity.matcher import NearestMatcher, photo_bound, resolve
    from edge.identity.operating import roster_point

    distances = np.array([1.05, 1.10, 1.02])
    predicted = roster_point(distances, photos=3, people=3, prior_std=0.085, visit_shift=0.06,
                             visit_shift_from="predicted (one photo each)")
    assert predicted.photo_threshold == roster_point(distances, photos=3, people=3, prior_std=0.085).threshold
    assert predicted.photo_threshold == pytest.approx(predicted.threshold + 0.06, abs=0.0011)
    measured = roster_point(distances, photos=6, people=3, prior_std=0.085, visit_shift=0.06)
    assert measured.photo_threshold == measured.threshold
    assert photo_bound(predicted.threshold, 1.058, predicted) == predicted.photo_threshold
    assert photo_bound(predicted.threshold, predicted.threshold, predicted) == predicted.threshold, \
        "calibration still bounds it"
    alike = roster_point([0.9] + [1.4] * 20, photos=7, people=7, prior_std=0.085, visit_shift=0.06,
                         visit_shift_from="predicted (one photo each)")
    assert alike.photo_threshold == 0.88 >= alike.threshold, "no enrolled person may be taken for another by a photo"

    photos, labels = _one_population(6, 4)
    one_each = labels[::4]  # one photo per person: the shift is predicted from the model's genuine similarity
    gallery = Gallery("facenet-keras-ms1m-int8full-m00-prewhiten", 64, photos[::4], one_each,
                      np.ones(len(one_each), bool), list("abcdef"), list("ABCDEF"))
    matcher = NearestMatcher(gallery, ambiguity_margin=0.0)
    assert matcher.roster is not None and matcher.roster.visit_shift_from.startswith("predicted")
    assert matcher.photo_threshold > matcher.threshold
    assert resolve(gallery, 0.9)[::3] == (0.9, 0.9), "a configured threshold holds for both"
    # the predicted shift is for a visit of tracking.fuse_frames embeddings: one look is a photo, more looks fuse more
    assert NearestMatcher(gallery, ambiguity_margin=0.0, visit_looks=1).threshold == matcher.photo_threshold
    assert NearestMatcher(gallery, ambiguity_margin=0.0, visit_looks=16).threshold < matcher.threshold
    between = (matcher.threshold + matcher.photo_threshold) / 2  # a probe at this distance from person a's template
    aside = np.random.default_rng(3).standard_normal(64)
    aside -= (aside @ photos[0]) * photos[0]
    cosine = 1.0 - between ** 2 / 2.0
    probe = (cosine * photos[0] + np.sqrt(1.0 - cosine ** 2) * aside / np.linalg.norm(aside)).astype(np.float32)
    assert matcher.enrolled_distances(probe)[0] == pytest.approx(between, abs=1e-4)
    assert matcher.match(probe, photo=True).person_id == "a"
    assert not matcher.match(probe).known, "the same embedding as a track's identity: a visit, judged tighter"


def test_one_photo_each_predicts_the_visit_shift_from_the_models_genuine_similarity():
    """With one photo per person the roster cannot measure how much nearer a visit comes, but a stranger's visit is
    no less fused: the shift is predicted from the geometry of a mean of unit vectors and the model's genuine
    similarity (measured on the accuracy photos), and the bound moves in by it."""
    from edge.identity.matcher import roster_evidence
    from edge.identity.operating import DEFAULT_STRANGER_FAR, operating_point, predicted_shift

    rng = np.random.default_rng(11)  # a visitor's eight looks and another person's photo, sharing a population face
    shared, visitor, other = (rng.standard_normal(512) for _ in range(3))
    looks = shared + visitor + 0.9 * rng.standard_normal((8, 512))
    looks /= np.linalg.norm(looks, axis=1, keepdims=True)
    photo = (shared + other) / np.linalg.norm(shared + other)
    similarity = float(np.mean((looks @ looks.T)[np.triu_indices(8, 1)]))
    fused = looks.mean(axis=0) / np.linalg.norm(looks.mean(axis=0))
    one = np.linalg.norm(looks - photo, axis=1)
    assert predicted_shift(one, similarity) == pytest.approx(float(one.mean() - np.linalg.norm(fused - photo)),
                                                            abs=0.01)
    assert predicted_shift([1.43, 1.45], 0.63) == 0.0, "people who share nothing: a visit comes no nearer"
    assert 0.0 < predicted_shift([1.085], 0.63, looks=4) < predicted_shift([1.085], 0.63) < 0.1

    model_id = "facenet-keras-ms1m-int8full-m00-prewhiten"
    assert operating_point(model_id).genuine_similarity == pytest.approx(0.63, abs=0.02)
    photos, labels = _one_population(6, 1)
    one_each = Gallery(model_id, 64, photos, labels, np.ones(6, bool), list("abcdef"), list("ABCDEF"))
    roster = roster_evidence(one_each, DEFAULT_STRANGER_FAR)
    assert roster.visit_shift > 0.03 and roster.visit_shift_from.startswith("predicted")
    unmeasured = Gallery("no such model", 64, photos, labels, np.ones(6, bool), list("abcdef"), list("ABCDEF"))
    assert roster_evidence(unmeasured, DEFAULT_STRANGER_FAR).visit_shift == 0.0


def test_a_failed_svc_training_is_one_line_naming_the_way_out(monkeypatch):
    """The child that trains the SVC dies (here: the interpreter it runs cannot start): the door says so in one line
    with exit 1 and names matcher.kind: nearest, no traceback."""
    import sys

    from edge.errors import EXIT_FAILURE
    from edge.identity.svc import SvcTrainingError, fit_in_child

    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.raises(SvcTrainingError) as raised:
        fit_in_child(np.eye(4, dtype=np.float32), np.array([0, 0, 1, 1]))
    assert raised.value.exit_code == EXIT_FAILURE and "matcher.kind: nearest" in str(raised.value)
