"""Loads .tflite models with whichever TFLite interpreter is installed (LiteRT first)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge.errors import BadInputError

try:
    from ai_edge_litert.interpreter import Interpreter as _Interpreter

    INTERPRETER = "ai-edge-litert"
except ImportError:  # pragma: no cover - boards that ship the older runtime
    from tflite_runtime.interpreter import Interpreter as _Interpreter

    INTERPRETER = "tflite-runtime"


class ModelError(BadInputError):
    """A model file is missing, corrupt or not the model we expect; the message names its path."""


def resolve_threads(threads: int) -> int:
    return threads if threads > 0 else max(1, os.cpu_count() or 1)


def load_interpreter(path: Path, threads: int = 0):
    """An allocated interpreter for path, or ModelError naming the file."""
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        interpreter = _Interpreter(model_path=str(path), num_threads=resolve_threads(threads))
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: not a valid TFLite model ({exc})") from None
    return interpreter


class TfliteModel:
    """One interpreter with named access to its single input and its outputs."""

    def __init__(self, path: Path, threads: int = 0):
        self.path = path
        self.interpreter = load_interpreter(path, threads)
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1:
            raise ModelError(f"{path}: expected one input tensor, found {len(inputs)}")
        self.input = inputs[0]
        self.outputs = self.interpreter.get_output_details()
        self.input_shape = tuple(int(v) for v in self.input["shape"])

    def expect_input(self, shape: tuple[int, ...]) -> None:
        if self.input_shape != shape:
            raise ModelError(f"{self.path}: input shape {self.input_shape}, expected {shape}; wrong model file?")

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self.input["index"], tensor)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(o["index"]) for o in self.outputs]


# The models besides FaceNet, as `facecheck-convert bundle` copies them out of the mediapipe wheel at build
# time. The runtime never imports or locates mediapipe: it reads these files from the bundle folder.
BUNDLED = {
    "face_detection_short_range.tflite": "face_detection/face_detection_short_range.tflite",
    "face_detection_full_range_sparse.tflite": "face_detection/face_detection_full_range_sparse.tflite",
    "pose_detection.tflite": "pose_detection/pose_detection.tflite",
    "pose_landmark_full.tflite": "pose_landmark/pose_landmark_full.tflite",
    "face_landmark.tflite": "face_landmark/face_landmark.tflite",
}
DEFAULT_MODELS_DIR = Path("models")
_verified: dict[Path, str] = {}


def bundle_model(models_dir: Path, name: str) -> Path:
    """models_dir/name, checked once per process against the sha256 in its sidecar (name + .json)."""
    import hashlib
    import json

    path = Path(models_dir) / name
    fix = f"build the model bundle with `facecheck-convert bundle --out {models_dir}` (scripts/bootstrap does)"
    sidecar = path.with_name(name + ".json")
    if not path.is_file() or not sidecar.is_file():
        raise ModelError(f"{path}: model {'file' if not path.is_file() else 'sidecar ' + sidecar.name} not found; {fix}")
    if path not in _verified:
        try:
            expected = json.loads(sidecar.read_text())["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ModelError(f"{sidecar}: not a readable model sidecar; {fix}") from None
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected:
            raise ModelError(f"{path}: sha256 {actual[:12]}... does not match its sidecar ({expected[:12]}...): "
                             f"a corrupt or replaced file; {fix}")
        _verified[path] = actual
    return path
