"""The model bundle: one folder with every model the daemon runs, each beside a sha256 sidecar.

BlazeFace (short and full range) and BlazePose (detector, full landmarks) are copied out of one pinned
mediapipe wheel, fetched with `pip download` at build time (never by the runtime, which never imports or
locates mediapipe); FaceNet is built by the converter. The same wheel is fetched on every machine (x86_64,
cp311), so a bundle built on a Pi and one built on a laptop hold byte-identical detector files. A bundle
is portable: build it anywhere, copy the folder to the door. The anti-spoofing models are not in it unless
the operator installs them (converters/liveness.py: no registry package ships them).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from converters.registry import download, extract
from edge.atomic import atomic_write
from edge.inference.tflite import BUNDLED

MEDIAPIPE_VERSION = "0.10.21"
MEDIAPIPE_WHEEL = ("--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                   "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64")
INPUTS = {
    "face_detection_short_range.tflite": "1x128x128x3 float32 RGB scaled to [-1, 1], letterboxed",
    "face_detection_full_range_sparse.tflite": "1x192x192x3 float32 RGB scaled to [-1, 1], letterboxed",
    "pose_detection.tflite": "1x224x224x3 float32 RGB scaled to [-1, 1], letterboxed",
    "pose_landmark_full.tflite": "1x256x256x3 float32 RGB scaled to [0, 1], rotated person crop",
    "face_landmark.tflite": "1x192x192x3 float32 RGB scaled to [0, 1], face box x1.5 square turned eyes-level",
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
    """The .tflite files out of the mediapipe wheel into out, each with its sidecar."""
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
