"""Shared fixtures: the real converted models, the shipped sample photos and a real mosquitto."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
FACECHECK = [sys.executable, "-m", "edge"]


def model_path(variant: str) -> Path:
    path = MODELS / f"facenet-{variant}.tflite"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/bootstrap (it builds the models the tests use)")
    return path


@pytest.fixture(scope="session")
def facenet_model() -> Path:
    return model_path("keras-int8full")  # the default in config.yaml


@pytest.fixture
def base_config(tmp_path: Path, facenet_model: Path) -> dict:
    """A config dict for one test: real model, state under tmp_path, no broker."""
    return {
        "device_id": "test-door",
        "camera": {"kind": "replay", "path": str(tmp_path / "frames"), "fps": 10, "realtime": False},
        "models": {"dir": str(MODELS)},
        "embedder": {"model": str(facenet_model)},
        "matcher": {"gallery": str(tmp_path / "state" / "gallery.npz"), "augmentations": 4},
        "outbox": {"path": str(tmp_path / "state" / "outbox.sqlite")},
        "confirmation": {"require_gesture": False},
        "mqtt": {"enabled": False},
        "log": {"stage_timing_every_s": 0},
    }


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.update(kwargs.pop("env", {}))
    return subprocess.run([*FACECHECK, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=kwargs.pop("cwd", ROOT), **kwargs)


from testkit.brokers import broker  # noqa: E402,F401  (fixture)


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
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write until the file system says ENOSPC; the filler file is returned so space can come back."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler
