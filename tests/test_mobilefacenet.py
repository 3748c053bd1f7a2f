"""MobileFaceNet, the second embedder, through the same contract as FaceNet: its sidecar, five-point alignment,
recognition on real photographs, and `facecheck identify` with `embedder.model` pointed at it. The model is built
by `scripts/bootstrap` (unless --no-mobilefacenet; scripts/test and CI always build it)."""

import json

import numpy as np
import pytest

from converters.mobilefacenet import RepairError, repair
from edge.config import config_from_dict
from edge.identity.gallery import GalleryFile
from edge.identity.matcher import NearestMatcher
from edge.images import read_image
from edge.inference.align import ARCFACE_TEMPLATE, alignment_matrix, five_points
from edge.inference.embedder import read_sidecar
from edge.recognition.enroll import enrol
from edge.samples import sample
from edge.service.assembly import build_identifier
from tests.conftest import embed_photo, enrol_obama_and_biden, run_cli, write_yaml


@pytest.fixture
def mobilefacenet(mobilefacenet_model):
    return mobilefacenet_model


@pytest.fixture
def identifier_pair(base_config, tmp_path, mobilefacenet):
    config = config_from_dict({**base_config, "embedder": {"model": str(mobilefacenet), "fuse_with": []}}, base_dir=tmp_path)
    return config, build_identifier(config, with_matcher=False)


embed = embed_photo


def test_the_sidecar_states_the_contract(mobilefacenet):
    meta = read_sidecar(mobilefacenet)
    assert (meta["input_size"], meta["embedding_size"], meta["alignment"], meta["normalisation"]) == \
        (112, 192, "arcface-5point", "fixed")
    assert meta["repair"] == {"unfused_depthwise_relus": 16, "negated_prelu_slopes": 33}
    assert meta["parity_min_cosine"] >= 0.9999 and "MIT" in meta["licence"]
    assert (mobilefacenet.parent / "LICENSE-mobilefacenet.txt").is_file()


def test_five_points_land_on_the_arcface_template(identifier_pair):
    _, identifier = identifier_pair
    image = read_image(sample("obama-1.jpg"))
    face = identifier.faces(image)[0]
    marks = identifier.five_point_landmarks(image, face)
    assert marks is not None, "a 150 px face is large enough for FaceMesh"
    matrix = alignment_matrix(face, 112, 0.0, "arcface-5point", marks)
    landed = five_points(marks) @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(landed - ARCFACE_TEMPLATE).max() < 6.0, landed  # pixels of the 112 px crop


def test_recognises_across_photos_and_refuses_strangers(identifier_pair):
    config, identifier = identifier_pair
    for name, photos in {"Barack Obama": ["obama-1.jpg", "obama-2.jpg"], "Joe Biden": ["biden-1.jpg"]}.items():
        enrol(identifier, GalleryFile.from_config(config), name, [sample(p) for p in photos], None,
              config.matcher.augmentations)
    matcher = NearestMatcher(GalleryFile.from_config(config).load())
    assert matcher.match(embed(identifier, "obama-3.jpg")).name == "Barack Obama"
    for stranger in ("collins-1.jpg", "cameraman.jpg"):
        assert not matcher.match(embed(identifier, stranger)).known, stranger


def test_identify_runs_with_mobilefacenet(base_config, tmp_path, mobilefacenet):
    config = write_yaml(tmp_path / "config.yaml", {**base_config, "embedder": {"model": str(mobilefacenet), "fuse_with": []}})
    done = run_cli("enroll", "--config", str(config), "--name", "Barack Obama", str(sample("obama-1.jpg")),
                   str(sample("obama-2.jpg")))
    assert done.returncode == 0, done.stderr
    result = run_cli("identify", "--config", str(config), str(sample("obama-3.jpg")), str(sample("biden-1.jpg")))
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    names = [face.get("name") for answer in answers for face in answer["faces"]]
    assert names == ["Barack Obama", None], answers


def test_the_repair_refuses_a_graph_it_was_not_written_for():
    """repair() counts what it fixes: a graph with other faults (here: none) is refused, never half-repaired."""
    nodes = [{"name": "img_inputs", "op": "Placeholder"}, {"name": "w", "op": "Const"},
             {"name": "conv", "op": "FusedDepthwiseConv2dNative", "input": ["img_inputs", "w"],
              "attr": {"fused_ops": {"list": {"s": []}}}}]
    with pytest.raises(RepairError, match="expected 16 fused ReLUs and 33 PReLU slopes, found 0 and 0"):
        repair(nodes, {"w": np.zeros(1, np.float32)})


def test_a_gallery_enrolled_once_switches_between_the_models(base_config, tmp_path, mobilefacenet):
    """Enrolled with FaceNet and `embedder.enrol_also: [MobileFaceNet]`, the same sealed gallery file serves either
    model: pointing embedder.model at the other one needs no re-enrolment; a person removed leaves both."""
    both = {**base_config, "embedder": {"model": base_config["embedder"]["model"], "fuse_with": [],
                                        "enrol_also": [str(mobilefacenet)]}}
    facenet_config = write_yaml(tmp_path / "facenet.yaml", both)
    mobile_config = write_yaml(tmp_path / "mobile.yaml", {**base_config, "embedder": {"model": str(mobilefacenet),
                                                                                       "fuse_with": []}})
    enrol_obama_and_biden(facenet_config)
    for config in (facenet_config, mobile_config):
        result = run_cli("identify", "--config", str(config), str(sample("obama-3.jpg")), str(sample("collins-1.jpg")))
        assert result.returncode == 0, (config.name, result.stderr)
        names = [face.get("name") for line in result.stdout.splitlines() if line.strip()
                 for face in json.loads(line)["faces"]]
        assert names == ["Barack Obama", None], (config.name, names)
    gallery = GalleryFile.from_config(config_from_dict(both, tmp_path)).load()
    assert gallery.models == [gallery.model_id, read_sidecar(mobilefacenet)["model_id"]]
    person = gallery.person_ids[gallery.names.index("Barack Obama")]
    assert run_cli("roster", "remove", "--config", str(mobile_config), person).returncode == 0
    for config in (facenet_config, mobile_config):
        result = run_cli("identify", "--config", str(config), str(sample("obama-3.jpg")))
        assert json.loads(result.stdout.splitlines()[0])["faces"][0].get("name") is None, config.name


def test_templates_of_other_models_travel_with_the_gallery_and_stay_complete():
    from edge.identity.gallery import Gallery, GalleryError

    rng = np.random.default_rng(0)
    gallery = Gallery("facenet", 4)
    notes = gallery.add("a", "Ann", rng.normal(size=(2, 4)), np.array([True, False]), "facenet",
                        {"mobile": (rng.normal(size=(2, 3)), np.array([True, False]))})
    assert notes == [] and gallery.models == ["facenet", "mobile"]
    gallery.add("b", "Bo", rng.normal(size=(1, 4)), np.array([True]), "facenet",
                {"mobile": (rng.normal(size=(1, 3)), np.array([True]))})
    copy = Gallery.from_bytes(gallery.to_bytes(), "test")
    mobile = copy.select("mobile")
    assert (mobile.model_id, mobile.dim, mobile.names, mobile.labels.tolist()) == ("mobile", 3, ["Ann", "Bo"], [0, 0, 1])
    assert mobile.select("facenet").labels.tolist() == [0, 0, 1]
    copy.remove("a")
    assert copy.others["mobile"].labels.tolist() == [0] and copy.select("mobile").names == ["Bo"]
    with pytest.raises(GalleryError, match="enrol_also"):
        copy.select("arcface")
    # an enrolment that did not compute a model's templates drops that model, and says so
    notes = copy.add("c", "Cy", rng.normal(size=(1, 4)), np.array([True]), "facenet")
    assert copy.models == ["facenet"] and "mobile: templates dropped" in notes[0]
    # a model the roster's earlier people lack is not started halfway
    notes = copy.add("d", "Di", rng.normal(size=(1, 4)), np.array([True]), "facenet",
                     {"mobile": (rng.normal(size=(1, 3)), np.array([True]))})
    assert copy.models == ["facenet"] and "mobile: not stored" in notes[0]
