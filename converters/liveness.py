"""The anti-spoofing models an operator supplies: MiniFASNet (Silent-Face-Anti-Spoofing, MiniVision, Apache-2.0)
into the model bundle, as TFLite with sha256 sidecars. No registry package ships usable passive anti-spoofing
weights, and the project may not redistribute upstream's, so the operator brings the files (docs/liveness.md):

- the two PyTorch state dicts from upstream's `resources/anti_spoof_models/`, identified by sha256. They are
  read without PyTorch and without running their pickles: a restricted unpickler rebuilds only tensors (any
  other object in the pickle is refused), and the network is this module's own TensorFlow function, written
  from upstream's published structure (MiniFASNet: conv blocks, depthwise residual blocks, squeeze-excitation
  in V1SE), converted to TFLite float32 at build time;
- or TFLite exports of them already made elsewhere, identified by sha256 and copied as they are.

Every converted model is checked against the graph it came from on random crops; with `reference` (a folder
holding upstream's sample crops and `reference_outputs.json`, the softmax PyTorch gave on them) it must also
reproduce PyTorch, as the tests do on every CI run.
"""

from __future__ import annotations

import collections
import hashlib
import json
import pickle
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edge.atomic import atomic_write
from edge.inference.liveness import INPUT_SIZE, MODELS

UPSTREAM = "Silent-Face-Anti-Spoofing (MiniVision), commit b6d5f04, resources/anti_spoof_models/"
LICENCE = "Apache-2.0 (Silent-Face-Anti-Spoofing's LICENSE; copy it beside the bundle when you ship it)"
INPUT = ("1x80x80x3 float32 B,G,R 0-255 (no normalisation): the face box scaled {scale} times about its centre, "
         "shifted inside the image, resized to 80x80 (edge/inference/liveness.py); output logits [1,3], softmax "
         "class 1 = live")
PARITY = 1e-4  # largest softmax difference allowed, against the source graph and against PyTorch's outputs
BN_EPS = 1e-5  # PyTorch's BatchNorm default, which upstream keeps


class LivenessConversionError(Exception):
    """A file is not the expected model, or its conversion does not reproduce it; the message names which."""


@dataclass(frozen=True)
class Accepted:
    """The files accepted for one model: upstream's state dict, or a TFLite export of it."""

    state_dict_name: str
    state_dict_sha256: str
    tflite_sha256: tuple[str, ...]


ACCEPTED = {
    "v2": Accepted("2.7_80x80_MiniFASNetV2.pth", "a5eb02e1843f19b5386b953cc4c9f011c3f985d0ee2bb9819eea9a142099bec0",
                   ("82026c6b30182cb38a1178adfeaccae90147ea23c186269e2e2cc10becf3f04c",)),
    "v1se": Accepted("4_0_0_80x80_MiniFASNetV1SE.pth",
                     "84ee1d37d96894d5e82de5a57df044ef80a58be2b218b5ed7cdfd875ec2f5990",
                     ("4a281c376f348a45851e05c8c3991ac08adbcc259d7b50fd0cf896c189b0212f",)),
}
_STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
             "LongStorage": np.int64, "IntStorage": np.int32}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """A PyTorch state dict in the legacy serialisation upstream's files use (magic, protocol, system info,
    the pickled dict, the storage keys, then each storage's raw bytes), as arrays; `module.` prefixes dropped.
    Only tensors are rebuilt: the unpickler refuses every other global."""

    class Storage:
        def __init__(self, dtype: type) -> None:
            self.dtype = dtype
            self.data: np.ndarray = np.zeros(0, dtype)  # filled from the file's tail

    storages: dict[str, Storage] = {}

    def rebuild(storage: Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> tuple:
        return storage, offset, tuple(size), tuple(stride)

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if module == "torch" and name in _STORAGES:
                return name
            raise LivenessConversionError(f"{path}: holds {module}.{name}, not only tensors; refused")

        def persistent_load(self, pid: Any) -> Storage:
            _, kind, key, *_ = pid
            return storages.setdefault(key, Storage(_STORAGES[kind]))

    try:
        with path.open("rb") as handle:
            for _ in range(3):  # magic number, protocol version, system info: plain values, no globals
                Restricted(handle).load()
            state = Restricted(handle).load()
            for key in Restricted(handle).load():
                storage = storages[key]
                count = struct.unpack("<q", handle.read(8))[0]
                storage.data = np.frombuffer(handle.read(count * np.dtype(storage.dtype).itemsize), storage.dtype)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, struct.error) as exc:
        raise LivenessConversionError(f"{path}: not a PyTorch state dict in the legacy format ({exc})") from None
    arrays = {}
    for name, (storage, offset, size, stride) in state.items():
        extent = offset + sum((n - 1) * step for n, step in zip(size, stride)) + 1 if all(size) else offset
        if offset < 0 or min(stride, default=0) < 0 or extent > storage.data.size:
            raise LivenessConversionError(f"{path}: tensor {name} reaches past its storage; not a state dict")
        item = storage.data.itemsize
        view = np.lib.stride_tricks.as_strided(storage.data[offset:], size, tuple(s * item for s in stride))
        arrays[name.removeprefix("module.")] = np.array(view)
    return arrays


def network(state: dict[str, np.ndarray]) -> Any:
    """MiniFASNet (V2, or V1SE where the state holds squeeze-excitation weights) as one tf.function: NHWC
    float32 B,G,R 0-255 in, 3 logits out. Channel counts come from the weights; PyTorch's symmetric padding
    is explicit (TensorFlow's SAME pads a stride-2 convolution unevenly)."""
    import tensorflow as tf

    def const(array: np.ndarray) -> Any:
        return tf.constant(np.asarray(array, np.float32))

    def batch_norm(x: Any, name: str) -> Any:
        scale = state[f"{name}.weight"] / np.sqrt(state[f"{name}.running_var"] + BN_EPS)
        return x * const(scale) + const(state[f"{name}.bias"] - state[f"{name}.running_mean"] * scale)

    def prelu(x: Any, name: str) -> Any:
        return tf.maximum(x, 0.0) + const(state[f"{name}.weight"]) * tf.minimum(x, 0.0)

    def conv(x: Any, name: str, stride: int = 1, pad: int = 0) -> Any:
        weight = state[f"{name}.weight"]  # out, in / groups, kh, kw
        if pad:
            x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        if weight.shape[1] == 1 and weight.shape[0] == x.shape[-1] > 1:  # depthwise
            return tf.nn.depthwise_conv2d(x, const(weight.transpose(2, 3, 0, 1)), [1, stride, stride, 1], "VALID")
        return tf.nn.conv2d(x, const(weight.transpose(2, 3, 1, 0)), stride, "VALID")

    def block(x: Any, name: str, stride: int = 1, pad: int = 0, activation: bool = True) -> Any:
        y = batch_norm(conv(x, f"{name}.conv", stride, pad), f"{name}.bn")
        return prelu(y, f"{name}.prelu") if activation else y

    def squeeze_excite(x: Any, name: str) -> Any:
        s = tf.reduce_mean(x, axis=(1, 2), keepdims=True)
        s = tf.nn.relu(batch_norm(conv(s, f"{name}.fc1"), f"{name}.bn1"))
        return x * tf.sigmoid(batch_norm(conv(s, f"{name}.fc2"), f"{name}.bn2"))

    def depth_wise(x: Any, name: str, stride: int, residual: bool) -> Any:
        y = block(x, f"{name}.conv")
        y = block(y, f"{name}.conv_dw", stride, 1)
        y = block(y, f"{name}.project", activation=False)
        if not residual:
            return y
        if f"{name}.se_module.fc1.weight" in state:
            y = squeeze_excite(y, f"{name}.se_module")
        return x + y

    @tf.function(input_signature=[tf.TensorSpec((1, INPUT_SIZE, INPUT_SIZE, 3), tf.float32)])
    def forward(image: Any) -> Any:
        x = block(image, "conv1", 2, 1)
        x = block(x, "conv2_dw", 1, 1)
        x = depth_wise(x, "conv_23", 2, False)
        for stage, down in (("conv_3", "conv_34"), ("conv_4", "conv_45"), ("conv_5", None)):
            index = 0
            while f"{stage}.model.{index}.conv.conv.weight" in state:
                x = depth_wise(x, f"{stage}.model.{index}", 1, True)
                index += 1
            if down:
                x = depth_wise(x, down, 2, False)
        x = block(x, "conv_6_sep")
        x = block(x, "conv_6_dw", activation=False)
        x = tf.reshape(tf.transpose(x, (0, 3, 1, 2)), (1, -1))  # PyTorch flattens channels first
        if "linear.weight" in state:
            x = tf.matmul(x, const(state["linear.weight"].T))
        return tf.matmul(batch_norm(x, "bn"), const(state["prob.weight"].T))

    return forward


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


def _tflite_runner(model: bytes) -> Callable[[np.ndarray], np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def run(crop: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(source, crop[None].astype(np.float32))
        interpreter.invoke()
        return softmax(interpreter.get_tensor(target)[0])

    return run


def check_reference(name: str, run: Callable[[np.ndarray], np.ndarray], reference: Path) -> float:
    """The largest softmax difference from PyTorch's outputs on upstream's sample crops (reference_outputs.json
    and samples/<image>_crop_<name>_<scale>.png in `reference`)."""
    import cv2

    scale = MODELS[name][1]
    key = f"{name}_{scale}"
    expected = json.loads((reference / "reference_outputs.json").read_text())["crops"]
    worst = 0.0
    for image, outputs in expected.items():
        crop = cv2.imread(str(reference / "samples" / f"{image}_crop_{key}.png"))
        if crop is None:
            raise LivenessConversionError(f"{reference}/samples/{image}_crop_{key}.png: missing or unreadable")
        worst = max(worst, float(np.abs(run(crop) - np.array(outputs[key])).max()))
    return worst


def convert(state: dict[str, np.ndarray]) -> tuple[bytes, float]:
    """(TFLite float32 bytes, the largest softmax difference from the TensorFlow graph on 8 random crops)."""
    import tensorflow as tf

    forward = network(state)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([forward.get_concrete_function()], forward)
    model = converter.convert()
    run = _tflite_runner(model)
    crops = np.random.default_rng(0).uniform(0, 255, (8, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32)
    worst = max(float(np.abs(run(c) - softmax(forward(tf.constant(c[None])).numpy()[0])).max()) for c in crops)
    return model, worst


def _write(data: bytes, handle: BinaryIO) -> None:
    handle.write(data)


def find(folder: Path, name: str) -> tuple[Path, str]:
    """(file, "state dict" | "tflite") for one model in the operator's folder, recognised by sha256."""
    accepted = ACCEPTED[name]
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".pth", ".tflite")):
        digest = sha256(path)
        if digest == accepted.state_dict_sha256:
            return path, "state dict"
        if digest in accepted.tflite_sha256:
            return path, "tflite"
    raise LivenessConversionError(
        f"{folder}: no file is MiniFASNet {name}: expected upstream's {accepted.state_dict_name} (sha256 "
        f"{accepted.state_dict_sha256}) from {UPSTREAM}, or its TFLite export (docs/liveness.md)")


def is_installed(out: Path, name: str) -> bool:
    """The bundle holds this model intact (its sha256 matches its sidecar) and made from upstream's file."""
    target = out / MODELS[name][0]
    try:
        meta = json.loads(target.with_name(target.name + ".json").read_text())
    except (OSError, ValueError):
        return False
    return (target.is_file() and meta.get("sha256") == sha256(target)
            and ACCEPTED[name].state_dict_sha256 in str(meta.get("source", "")))


def install(folder: Path, out: Path, names: tuple[str, ...] = ("v2", "v1se"), reference: Path | None = None,
            log: Callable[[str], None] = print, if_stale: bool = False) -> list[Path]:
    """Each named model from the operator's folder into the bundle `out` with its sidecar, checked first;
    if_stale: leave a model the bundle already holds intact."""
    if not folder.is_dir():
        raise LivenessConversionError(f"{folder}: not a folder (give the one holding upstream's .pth files)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        file_name, scale = MODELS[name]
        if if_stale and is_installed(out, name):
            log(f"{file_name} is installed (sha256 matches its sidecar)")
            continue
        source, kind = find(folder, name)
        if kind == "state dict":
            model, drift = convert(read_state_dict(source))
            if drift > PARITY:
                raise LivenessConversionError(f"{source}: the TFLite conversion differs from its graph by {drift:.2g}")
            how = f"converted from {source.name} by converters/liveness.py (graph parity {drift:.1e})"
        else:
            model, how = source.read_bytes(), f"copied from {source.name}, a TFLite export"
        if reference is not None:
            worst = check_reference(name, _tflite_runner(model), reference)
            if worst > PARITY:
                raise LivenessConversionError(f"{source}: differs from PyTorch's reference outputs by {worst:.2g}")
            how += f"; PyTorch's reference outputs reproduced to {worst:.1e}"
        target = out / file_name
        atomic_write(target, partial(_write, model))
        meta = {"model_id": f"minifasnet-{name}-{scale}-float32", "sha256": sha256(target), "bytes": len(model),
                "source": f"{UPSTREAM}{ACCEPTED[name].state_dict_name} (sha256 {ACCEPTED[name].state_dict_sha256}); "
                          f"{how}",
                "licence": LICENCE, "input": INPUT.format(scale=scale)}
        text = json.dumps(meta, indent=2).encode()
        atomic_write(target.with_name(file_name + ".json"), partial(_write, text))
        log(f"installed {file_name} ({len(model) / 1e6:.1f} MB): {how}")
        written.append(target)
    licence = folder / "LICENSE"
    for candidate in (licence, *sorted(folder.glob("LICENSE*"))):
        if candidate.is_file():
            shutil.copyfile(candidate, out / "LICENSE-minifasnet.txt")
            break
    return written
