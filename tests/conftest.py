"""Shared fixtures: the real converted models, the shipped sample photos and a real mosquitto."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.cli.demo import render_clip
from edge.samples import sample
from testkit.brokers import Broker, BrokerUnavailable, Subscriber, mosquitto_binary
from testkit.disk import small_tmpfs
from testkit.doors import BASE, write_key, write_yaml  # noqa: F401  (write_yaml: tests import it from here)

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
FACECHECK = [sys.executable, "-m", "edge"]
# Upstream's anti-spoofing files (weights, sample photos, PyTorch's outputs) lie in the shared data folder beside
# the project, for development and CI only; scripts/test installs the models from it into models/.
ANTISPOOF = ROOT.parent / "shared" / "antispoof"
LIVENESS_INSTALLED = all((MODELS / f"minifasnet_{m}.tflite").is_file() for m in ("v2_2.7", "v1se_4.0"))
NO_LIVENESS = ("the anti-spoofing models are not installed: scripts/test installs them from the shared data folder "
               "beside the project (shared/antispoof), which is absent here")


def model_path(variant: str) -> Path:
    path = MODELS / f"facenet-{variant}.tflite"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/bootstrap (it builds the models the tests use)")
    return path


@pytest.fixture(scope="session")
def facenet_model() -> Path:
    return model_path("keras-int8full")  # the default in config.yaml


@pytest.fixture(scope="session")
def mobilefacenet_model() -> Path:
    """The second embedder, fused with FaceNet by default, which scripts/bootstrap and scripts/test build."""
    path = MODELS / "mobilefacenet-float32.tflite"
    if not path.is_file():
        pytest.fail(f"{path} is missing: scripts/test builds it (scripts/bootstrap)")
    return path


def embed_photo(identifier, name: str):
    """The embedding of the one face in a sample photo, as enrolment computes it."""
    from edge.images import read_image

    image = read_image(sample(name))
    faces = identifier.faces(image)
    assert len(faces) == 1
    return identifier.embed_with_quality(image, faces[0])[0]


@pytest.fixture
def base_config(tmp_path: Path, facenet_model: Path) -> dict:
    """A config dict for one test: real model, state under tmp_path, no broker."""
    return {
        "device_id": "test-door",
        "camera": {"kind": "replay", "path": str(tmp_path / "frames"), "fps": 10, "realtime": False},
        "models": {"dir": str(MODELS)},
        # FaceNet alone: these tests are about one stage or the messaging around it; the door's default identity
        # (FaceNet fused with MobileFaceNet) runs in test_fusion, test_accuracy, the demo and fused_config's tests
        "embedder": {"model": str(facenet_model), "fuse_with": []},
        "matcher": {"gallery": str(tmp_path / "state" / "gallery.npz"), "augmentations": 4},
        "outbox": {"path": str(tmp_path / "state" / "outbox.sqlite")},
        "confirmation": {"require_gesture": False},
        "mqtt": {"enabled": False},
        "log": {"stage_timing_every_s": 0},
        # the shipped refuse where the models are installed (CI, developers); without them the tests that need
        # them skip (liveness_models) and the rest run face-only
        "liveness": {"policy": "refuse" if LIVENESS_INSTALLED else "off"},
    }


@pytest.fixture
def liveness_models() -> Path:
    """The bundle, with the anti-spoofing models; a skip only where their source is absent too, so a broken
    install step fails here instead of skipping."""
    if not LIVENESS_INSTALLED:
        if ANTISPOOF.is_dir():
            pytest.fail(f"{ANTISPOOF} is here but the anti-spoofing models are not in {MODELS}: scripts/test "
                        "installs them from it (LIVENESS_FROM); see what scripts/bootstrap printed")
        pytest.skip(NO_LIVENESS)
    return MODELS


@pytest.fixture(scope="session")
def antispoof() -> Path:
    """Upstream's anti-spoofing files: the .pth weights, samples/ and reference_outputs.json."""
    if not (ANTISPOOF / "reference_outputs.json").is_file():
        pytest.skip(f"{ANTISPOOF} is absent: upstream's anti-spoofing files lie in the shared data folder beside the "
                    "project (development and CI only)")
    return ANTISPOOF


def run_cli(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.update(kwargs.pop("env", {}))
    return subprocess.run([*FACECHECK, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=kwargs.pop("cwd", ROOT), **kwargs)


def enrol_obama_and_biden(config_path) -> None:
    """Enrol the two sample people through the CLI, as an operator would (the demo clip's enrolled visitors)."""
    for name, photos in {"Barack Obama": ["obama-1.jpg", "obama-2.jpg"], "Joe Biden": ["biden-1.jpg"]}.items():
        result = run_cli("enroll", "-c", str(config_path), "--name", name, *[str(sample(p)) for p in photos])
        assert result.returncode == 0, result.stderr


def validate(payload, schema_name: str, subschema: str | None = None) -> None:
    """Check a payload against the shipped JSON Schema (with $refs between them resolved)."""
    import jsonschema
    from referencing import Registry, Resource

    from edge.schemas import NAMES, load_schema

    registry = Registry().with_resources(
        (f"facecheck/{n}.schema.json", Resource.from_contents(load_schema(n))) for n in NAMES)
    schema = load_schema(schema_name)
    if subschema:
        schema = {"$ref": f"facecheck/{schema_name}.schema.json#/$defs/{subschema}"}
    jsonschema.Draft202012Validator(schema, registry=registry,
                                    format_checker=jsonschema.FormatChecker()).validate(payload)


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB tmpfs: the outbox's file system fills up for real (needs root, as CI runs)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    with small_tmpfs(tmp_path / "small") as mount:
        yield mount


@pytest.fixture
def broker(tmp_path):
    """A real mosquitto of this test's own, on a free loopback port."""
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed: scripts/test installs it (apt-get install mosquitto)")
    try:
        b = Broker(tmp_path / "broker").start()
    except BrokerUnavailable as exc:
        pytest.fail(str(exc))
    yield b
    b.kill()


@pytest.fixture(scope="session")
def clip_and_gallery(tmp_path_factory, facenet_model, mobilefacenet_model):
    """The demo's clip and a gallery with Obama and Biden, built once with the real models: enrolled as the default
    identity is (FaceNet fused with MobileFaceNet), so it holds both models' templates and serves a door running
    either the default or FaceNet alone (base_config)."""
    from edge.config import config_from_dict
    from edge.identity.gallery import GalleryFile
    from edge.recognition.enroll import enrol
    from edge.service.assembly import build_identifier

    root = tmp_path_factory.mktemp("clip")
    render_clip(root / "frames")
    config = config_from_dict({"models": {"dir": str(facenet_model.parent)},
                               "embedder": {"model": str(facenet_model), "fuse_with": [str(mobilefacenet_model)]},
                               "confirmation": {"require_gesture": False},
                               "matcher": {"gallery": str(root / "gallery.npz")}}, base_dir=root)
    identifier = build_identifier(config, with_matcher=False)
    for name, photos in {"Barack Obama": ["obama-1.jpg", "obama-2.jpg"], "Joe Biden": ["biden-1.jpg"]}.items():
        enrol(identifier, GalleryFile.from_config(config), name, [sample(p) for p in photos], None, 4)
    return root


@pytest.fixture
def mqtt_config(base_config, tmp_path, broker, clip_and_gallery):
    for name in ("gallery.npz", "gallery.key"):  # the sealed gallery is no use without its key
        shutil.copy2(clip_and_gallery / name, tmp_path / name)
    base_config.update({
        "camera": {"kind": "replay", "path": str(clip_and_gallery / "frames"), "fps": 10, "realtime": False},
        "matcher": {"gallery": str(tmp_path / "gallery.npz")},
        "mqtt": {"enabled": True, "port": broker.port, "keepalive_s": 5, "reconnect_min_s": 1,
                 "reconnect_max_s": 1, "health_interval_s": 1},
        "confirmation": {"require_gesture": False, "unknown_frames": 4, "unknown_interval_s": 0, "cooldown_s": 0},
        # these tests count the attendance events of a looping clip; learning from visits (and its template_added
        # audit events) is tested in test_adaptation.py and test_daemon.py
        "adaptation": {"enabled": False},
        "commands": {"allow": ["reload", "health", "roster", "enroll", "remove", "snapshot"],
                     "signing_key_file": str(write_key(tmp_path / "command-key"))},
    })
    return base_config


def command(sub: Subscriber, name: str, payload: bytes, response_topic: str | None = None,
            correlation: bytes | None = None) -> dict:
    topic = f"{BASE}/cmd/{name}/result"
    before = len(sub.on(topic))
    props = None
    if response_topic:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = response_topic
        if correlation:
            props.CorrelationData = correlation
    sub.client.publish(f"{BASE}/cmd/{name}", payload, qos=1, properties=props)
    assert sub.wait_for(lambda: len(sub.on(topic)) > before, 60), f"no result for {name}"
    result = json.loads(sub.on(topic)[-1])
    validate(result, "command-result")
    return result
