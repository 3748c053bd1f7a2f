"""One identity from FaceNet and MobileFaceNet (embedder.fuse_with): the joined vector's geometry, the gallery that keeps
each model's own templates and joins them on reading, and a door that enrols, identifies and learns through it."""

import json

import numpy as np
import pytest

from edge.identity.fusion import fusion_id, fusion_parts, held_by, join
from edge.identity.gallery import Gallery, GalleryError
from edge.samples import sample
from tests.conftest import enrol_obama_and_biden, run_cli, write_yaml


def unit(rng, n, dim):
    v = rng.normal(size=(n, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_joined_vector_is_unit_and_its_squared_distance_is_the_mean_of_the_models():
    rng = np.random.default_rng(1)
    a, b = unit(rng, 2, 128), rng.normal(size=(2, 192)) * 3.0  # the second model's rows not yet unit
    joined = join([a, b])
    assert joined.shape == (2, 320) and np.allclose(np.linalg.norm(joined, axis=1), 1.0, atol=1e-6)
    b_unit = b / np.linalg.norm(b, axis=1, keepdims=True)
    expected = (np.sum((a[0] - a[1]) ** 2) + np.sum((b_unit[0] - b_unit[1]) ** 2)) / 2
    assert np.isclose(np.sum((joined[0] - joined[1]) ** 2), expected, atol=1e-5)
    assert np.allclose(join([a[0], b[0]]), joined[0])  # one vector joins as a row does


def test_fused_ids_name_their_models_in_order():
    fused = fusion_id(["facenet", "mobile"])
    assert fused == "fusion:facenet+mobile" and fusion_parts(fused) == ["facenet", "mobile"]
    assert fusion_id(["facenet"]) == "facenet" and fusion_parts("facenet") is None
    assert held_by(fused, ["facenet", "mobile", "other"]) and not held_by(fused, ["facenet"])
    assert held_by("facenet", ["facenet"])


def two_model_gallery(rng) -> Gallery:
    gallery = Gallery("facenet", 4)
    for pid, rows in (("a", 3), ("b", 2)):
        flags = np.array([True] + [False] * (rows - 1))
        gallery.add(pid, pid.upper(), unit(rng, rows, 4), flags, "facenet", {"mobile": (unit(rng, rows, 3), flags)})
    return gallery


def test_the_gallery_joins_each_models_templates_on_reading_and_keeps_only_theirs():
    rng = np.random.default_rng(2)
    gallery = two_model_gallery(rng)
    fused = gallery.select("fusion:facenet+mobile")
    assert (fused.model_id, fused.dim, fused.labels.tolist()) == ("fusion:facenet+mobile", 7, [0, 0, 0, 1, 1])
    assert np.allclose(fused.embeddings, join([gallery.embeddings, gallery.others["mobile"].embeddings]))
    # what the door learned through the fused identity is kept; the joined templates never are
    fused.adapt("a", unit(rng, 1, 7)[0], 1.0, keep=10)
    stored = Gallery.from_bytes(fused.to_bytes(), "test")
    assert stored.model_id == "facenet" and stored.models == ["facenet", "mobile"]
    assert stored.adapted is not None and stored.adapted.model_id == "fusion:facenet+mobile"
    again = stored.select("fusion:facenet+mobile")
    assert np.allclose(again.embeddings, fused.embeddings) and len(again.adapted_templates()[1]) == 1
    assert len(stored.select("facenet").adapted_templates()[1]) == 0  # learned through the fusion, used by it only
    # read through a part, then saved: still each model's own templates
    assert Gallery.from_bytes(again.select("mobile").to_bytes(), "test").models == ["mobile", "facenet"]


def test_a_gallery_without_a_fused_models_templates_says_how_to_get_them():
    rng = np.random.default_rng(3)
    only_facenet = Gallery("facenet", 4)
    only_facenet.add("a", "A", unit(rng, 1, 4), np.array([True]), "facenet")
    with pytest.raises(GalleryError, match="holds no templates of mobile.*embedder.fuse_with"):
        only_facenet.select("fusion:facenet+mobile", "state/gallery.npz")
    misaligned = two_model_gallery(rng)
    misaligned.others["mobile"].original = ~misaligned.others["mobile"].original
    with pytest.raises(GalleryError, match="do not line up"):
        misaligned.select("fusion:facenet+mobile")


@pytest.fixture
def fused_config(base_config, tmp_path, mobilefacenet_model):
    base_config["embedder"] = {"model": base_config["embedder"]["model"], "fuse_with": [str(mobilefacenet_model)]}
    return write_yaml(tmp_path / "config.yaml", base_config)


def test_a_fused_door_enrols_every_model_identifies_and_refuses_strangers(fused_config, tmp_path):
    from edge.config import load_config
    from edge.identity.gallery import GalleryFile
    from edge.inference.embedder import read_sidecar
    from edge.service.assembly import door_identity

    enrol_obama_and_biden(fused_config)
    config = load_config(fused_config)
    stored = GalleryFile.from_config(config).load()
    mobile_id = read_sidecar(config.embedder.fuse_with[0], verify_hash=False)["model_id"]
    assert stored.models == [read_sidecar(config.embedder.model, verify_hash=False)["model_id"], mobile_id]
    model_id, dim = door_identity(config)
    assert fusion_parts(model_id) == stored.models and dim == 128 + 192
    result = run_cli("identify", "-c", str(fused_config), str(sample("obama-3.jpg")), str(sample("collins-1.jpg")),
                     str(sample("cameraman.jpg")))
    assert result.returncode == 0, result.stderr
    names = [face.get("name") for line in result.stdout.splitlines() if line.strip()
             for face in json.loads(line)["faces"]]
    assert names == ["Barack Obama", None, None], names
    doctor = run_cli("doctor", "-c", str(fused_config))
    assert f"fused with {mobile_id}" in doctor.stdout and f"operating point of {model_id}" in doctor.stdout, doctor.stdout


def test_a_fused_door_refuses_embeddings_of_one_model_over_mqtt(tmp_path):
    """Embeddings sent over MQTT are one model's: stored alone they would drop the other model's templates, and the
    fused door could no longer read its gallery."""
    from edge.jobs import Outcome
    from edge.messaging.commands import CommandContext, CommandError, _enroll

    unchanged = lambda: Outcome({})  # noqa: E731
    ctx = CommandContext("facenet", 4, None, 0, lambda: None, unchanged, unchanged, dict, dict, 4_000_000, 25_000_000,
                         fused=True)
    body = {"name": "Ann", "embeddings": [[0.5] * 4], "model_id": "facenet"}
    with pytest.raises(CommandError, match="enrol with 'images' or 'camera'"):
        _enroll(body, ctx)


def test_doctor_points_a_door_whose_people_lie_close_together_to_the_fusion(base_config, tmp_path, mobilefacenet_model):
    """A roster of East Asian people tightens FaceNet's threshold far: doctor warns, says by how much a visit was
    modelled nearer, and names the fusion; a door that runs the fusion is not told to."""
    from bench.datasets import EAST_ASIAN
    from edge.cli.doctor import roster_bound
    from edge.config import config_from_dict
    from edge.identity.gallery import GalleryFile
    from edge.recognition.enroll import enrol
    from edge.service.assembly import build_identifier

    if not EAST_ASIAN.is_dir():
        pytest.skip(f"{EAST_ASIAN} is absent: the East Asian faces lie in the shared data folder beside the project")
    people = sorted(d for d in EAST_ASIAN.iterdir() if d.is_dir())[:4]
    texts = {}
    for fused in (False, True):
        embedder = {"model": base_config["embedder"]["model"],
                    "fuse_with": [str(mobilefacenet_model)] if fused else []}
        config = config_from_dict({**base_config, "embedder": embedder,
                                   "matcher": {"gallery": str(tmp_path / f"gallery-{fused}.npz")}}, tmp_path)
        identifier = build_identifier(config, with_matcher=False)
        for person in people:
            enrol(identifier, GalleryFile.from_config(config), person.name, sorted(person.glob("*.jpg"))[:3], None, 0)
        texts[fused] = roster_bound(config)
    assert "WARNING: this roster's people lie close together" in texts[False], texts[False]
    assert "embedder.fuse_with" in texts[False] and "embedder.fuse_with" not in texts[True], texts
    assert "nearer other people's templates than one photo, the roster" in texts[False]
