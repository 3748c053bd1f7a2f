"""Face embeddings from a converted .tflite, checked against its sidecar before use.

The sidecar is the model's input contract and the runtime follows it: input size, normalisation, alignment
(`facenet-3point` with `align_margin`, or `arcface-5point`), output size. FaceNet (the default) and
MobileFaceNet (converters/mobilefacenet.py) both run through `FaceNetEmbedder`; any model whose sidecar states
a contract this build knows runs the same way. A sidecar from before `alignment` existed is FaceNet's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Protocol

import numpy as np

from edge.inference.align import ALIGNMENTS
from edge.inference.tflite import ModelError, TfliteModel


class Embedder(Protocol):
    model_id: str
    input_size: int
    dim: int
    align_margin: float  # part of the model's preprocessing contract, from its sidecar
    alignment: str  # "facenet-3point" or "arcface-5point" (edge.inference.align)
    meta: dict  # the whole sidecar: the contract, the source and the licence

    def embed(self, aligned_rgb: np.ndarray) -> np.ndarray: ...


def prewhiten(rgb: np.ndarray) -> np.ndarray:
    """Per-image standardisation (zero mean, unit variance, flat images guarded): the Keras FaceNet's input."""
    x = rgb.astype(np.float32)
    mean, std = x.mean(), x.std()
    return (x - mean) / max(float(std), 1.0 / np.sqrt(x.size))


def fixed_standardise(rgb: np.ndarray) -> np.ndarray:
    """(x - 127.5) / 128: what Sandberg's 2018 models were trained on (prewhitening costs them accuracy)."""
    return (rgb.astype(np.float32) - 127.5) / 128.0


# The input normalisation a model was trained with, named in its sidecar; nothing else chooses it.
NORMALISATIONS = {"prewhiten": prewhiten, "fixed": fixed_standardise}


def sidecar_path(model: Path) -> Path:
    return model.with_suffix(model.suffix + ".json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sidecar(model: Path, verify_hash: bool = True) -> dict:
    """The converter's sidecar, after checking it describes this exact file."""
    side = sidecar_path(model)
    if not model.is_file():
        if model.name.startswith("mobilefacenet"):  # the embedder the door fuses with FaceNet by default
            raise ModelError(f"{model}: model file not found; build it with `facecheck-convert mobilefacenet --out "
                             f"{model.parent}` (or scripts/bootstrap), or run FaceNet alone with embedder.fuse_with: []")
        raise ModelError(f"{model}: model file not found; build it with `facecheck-convert facenet --out {model}` "
                         "(or scripts/bootstrap)")
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        raise ModelError(f"{side}: sidecar missing; rebuild the model with facecheck-convert") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{side}: unreadable sidecar ({exc}); rebuild the model with facecheck-convert") from None
    needed = {"sha256", "model_id", "input_size", "embedding_size", "normalisation", "precision", "align_margin"}
    if not isinstance(meta, dict) or not needed <= set(meta):
        raise ModelError(f"{side}: sidecar lacks {sorted(needed - set(meta or {}))}; rebuild with facecheck-convert")
    if verify_hash:
        actual = file_sha256(model)
        if actual != meta["sha256"]:
            raise ModelError(f"{model}: sha256 {actual[:12]}… does not match its sidecar ({meta['sha256'][:12]}…); "
                             "the file is corrupt or was replaced: rebuild it with facecheck-convert")
    if meta.get("alignment", "facenet-3point") not in ALIGNMENTS:
        raise ModelError(f"{side}: alignment {meta['alignment']!r} is not one this build knows ({', '.join(ALIGNMENTS)}); "
                         "use a model built by this version's facecheck-convert")
    if meta["normalisation"] not in NORMALISATIONS:
        raise ModelError(f"{side}: normalisation {meta['normalisation']!r} is not one this build knows "
                         f"({', '.join(NORMALISATIONS)}); rebuild the model with this version's facecheck-convert")
    return meta


def describe(meta: dict) -> dict:
    """The contract a sidecar states, as doctor and identify --explain report which embedder runs."""
    alignment = meta.get("alignment", "facenet-3point")
    return {"model_id": meta["model_id"], "input": f"{meta['input_size']}x{meta['input_size']} RGB, {meta['normalisation']}",
            "alignment": alignment + (f", margin {meta['align_margin']}" if alignment == "facenet-3point" else ""),
            "dim": int(meta["embedding_size"]), "licence": meta.get("licence"), "source": meta.get("source_package")}


VIEWS = ("plain", "mirrored", "both")


def embed_views(embedder: Embedder, aligned_rgb: np.ndarray, view: str = "both") -> np.ndarray:
    """The embedding of one view of the face: "plain", "mirrored", or "both" averaged and re-normalised.

    A face and its mirror image are the same person seen twice, and their mean is a steadier embedding:
    on the benchmark's door protocol (k = 1) it recognised 80.9 % of probes against 75.6 % for one
    view, with no stranger accepted either way (docs/accuracy.md). A photo is embedded as "both"; the
    daemon alternates "plain" and "mirrored" over a track's frames, so its fused identity averages both
    views at the cost of one embedding per frame.
    """
    if view not in VIEWS:
        raise ValueError(f"view {view!r}: use one of {', '.join(VIEWS)}")
    if view == "plain":
        return embedder.embed(aligned_rgb)
    mirrored = embedder.embed(np.ascontiguousarray(aligned_rgb[:, ::-1]))
    if view == "mirrored":
        return mirrored
    total = embedder.embed(aligned_rgb) + mirrored
    return total / max(float(np.linalg.norm(total)), 1e-12)


class FaceNetEmbedder:
    def __init__(self, model: Path, threads: int = 0, verify_hash: bool = True):
        meta = read_sidecar(model, verify_hash)
        self.meta = meta
        self.model_id: str = meta["model_id"]
        self.input_size: int = int(meta["input_size"])
        self.dim: int = int(meta["embedding_size"])
        self.align_margin: float = float(meta["align_margin"])
        self.alignment: str = meta.get("alignment", "facenet-3point")
        self.normalise = NORMALISATIONS[meta["normalisation"]]
        self.model = TfliteModel(model, threads)
        self.model.expect_input((1, self.input_size, self.input_size, 3))

    def embed(self, aligned_rgb: np.ndarray) -> np.ndarray:
        """L2-normalised embedding of one aligned RGB crop."""
        out = self.model.run(self.normalise(aligned_rgb)[None])[0][0].astype(np.float32)
        return out / max(float(np.linalg.norm(out)), 1e-12)
