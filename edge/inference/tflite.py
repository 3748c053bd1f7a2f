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
    from tflite_runtime.interpreter import Interpreter as _Interpreter  # type: ignore[import-not-found,no-redef]

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


def mediapipe_model(relative: str) -> Path:
    """Path of a .tflite shipped inside the mediapipe wheel (modules/...), located without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"mediapipe is not installed; it ships {relative} (pip install 'mediapipe>=0.10.18,<=0.10.21')")
    path = Path(list(spec.submodule_search_locations)[0]) / "modules" / relative
    if not path.is_file():
        raise ModelError(f"{path}: not in this mediapipe release; install mediapipe 0.10.18-0.10.21")
    return path
