"""The model bundle: one folder with every model the daemon runs, each beside a sha256 sidecar.

BlazeFace (short and full range) and BlazePose (detector, full landmarks) are copied out of one pinned
mediapipe wheel, fetched with `pip download` at build time (never by the runtime, which never imports or
locates mediapipe); FaceNet is built by the converter. The same wheel is fetched on every machine (x86_64,
cp311), so a bundle built on a Pi and one built on a laptop hold byte-identical detector files. A bundle
is portable: build it anywhere, copy the folder to the door.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from converters.registry import download, extract
from edge.atomic import atomic_write
from edge.inference.liveness import MODELS as LIVENESS_MODELS
from edge.inference.tflite import BUNDLED

LIVENESS_DIR = Path(__file__).resolve().parent / "data" / "liveness"
LIVENESS_INPUT = ("1x80x80x3 float32 B,G,R 0-255 (no normalisation): the face box scaled {scale} times about "
                  "its centre, shifted inside the image, resized to 80x80 (edge/inference/liveness.py); "
                  "output logits [1,3], softmax class 1 = live")

MEDIAPIPE_VERSION = "0.10.21"
MEDIAPIPE_WHEEL = ("--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                   "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64")
INPUTS = {
    "face_detection_short_range.tflite": "1x128x128x3 float32 RGB scaled to [-1, 1], letterboxed",
    "face_detection_full_range_sparse.tflite": "1x192x192x3 float32 RGB scaled to [-1, 1], letterboxed",
    "pose_detection.tflite": "1x224x224x3 float32 RGB scaled to [-1, 1], letterboxed",
    "pose_landmark_full.tflite": "1x256x256x3 float32 RGB scaled to [0, 1], rotated person crop",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_sidecar(path: Path, meta: dict) -> None:
    text = json.dumps(meta, indent=2).encode()
    atomic_write(path.with_name(path.name + ".json"), lambda handle: handle.write(text))


def is_current(out: Path) -> bool:
    """Every bundled file present and matching its sidecar."""
    for name in BUNDLED:
        path, sidecar = out / name, out / (name + ".json")
        try:
            if json.loads(sidecar.read_text())["sha256"] != sha256(path):
                return False
        except (OSError, ValueError, KeyError):
            return False
    return True


def copy_mediapipe_models(out: Path, wheel: Path | None = None, log=print) -> list[Path]:
    """The four .tflite files out of the mediapipe wheel into out, each with its sidecar."""
    wheel = wheel or download("mediapipe", MEDIAPIPE_VERSION, sdist=False, wheel_tags=MEDIAPIPE_WHEEL)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, inner in BUNDLED.items():
            extracted = extract(wheel, f"mediapipe/modules/{inner}", Path(tmp))[0]
            target = out / name
            shutil.copyfile(extracted, target)
            write_sidecar(target, {
                "model_id": f"mediapipe-{MEDIAPIPE_VERSION}-{Path(name).stem}", "sha256": sha256(target),
                "bytes": target.stat().st_size, "source": f"{wheel.name} (PyPI), mediapipe/modules/{inner}",
                "licence": "Apache-2.0 (the mediapipe wheel's LICENSE)", "input": INPUTS[name]})
            written.append(target)
            log(f"bundled {name} ({target.stat().st_size / 1e6:.1f} MB) from {wheel.name}")
    return written


def copy_liveness_models(out: Path, log=print) -> list[Path]:
    """The two MiniFASNet .tflite files the project ships (converters/data/liveness, with their licence
    and NOTICE) into out, each with its sidecar; skipped where the bundle already holds the same bytes."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (file_name, scale) in LIVENESS_MODELS.items():
        source, target = LIVENESS_DIR / file_name, out / file_name
        digest = sha256(source)
        sidecar = target.with_name(file_name + ".json")
        if target.is_file() and sidecar.is_file() and json.loads(sidecar.read_text()).get("sha256") == digest \
                and sha256(target) == digest:
            continue
        shutil.copyfile(source, target)
        write_sidecar(target, {
            "model_id": f"minifasnet-{name}-{scale}-float32", "sha256": digest, "bytes": target.stat().st_size,
            "source": "Silent-Face-Anti-Spoofing (MiniVision) at b6d5f04, converted to TFLite float32: "
                      "converters/data/liveness/NOTICE",
            "licence": "Apache-2.0 (converters/data/liveness/LICENSE-minivision-Apache-2.0.txt)",
            "input": LIVENESS_INPUT.format(scale=scale)})
        written.append(target)
        log(f"bundled {file_name} ({target.stat().st_size / 1e6:.1f} MB) from converters/data/liveness")
    return written
