"""One identity from several embedders: each face's unit embeddings from every model, joined end to end.

Why: no embedder we may ship separates East Asian faces well, but FaceNet and MobileFaceNet err on different
pairs, so a face judged by both is judged better than by either (docs/accuracy.md). Joining unit vectors, each
scaled by 1/sqrt(n), gives a unit vector whose squared distance to another is the mean of the models' squared
distances: every distance-based rule (threshold, roster bound, SVC, learned radius) works on it unchanged, and it
has its own measured operating point like any model. Equal weights: nothing here is tuned on a population.

A fused identity is never stored: a gallery keeps each model's own templates (enrolment computes them all) and
`Gallery.select` joins them when a door asks for the fused id, so a door switches between one model and the
fusion with no re-enrolment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PREFIX, SEPARATOR = "fusion:", "+"


def fusion_id(model_ids: Sequence[str]) -> str:
    """The id of the identity fused from these models, in this order; one model's id is its own."""
    if len(model_ids) == 1:
        return model_ids[0]
    return PREFIX + SEPARATOR.join(model_ids)


def fusion_parts(model_id: str) -> list[str] | None:
    """The models a fused id is joined from; None for one model's id."""
    if not model_id.startswith(PREFIX):
        return None
    return model_id[len(PREFIX):].split(SEPARATOR)


def join(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Each model's embeddings (one vector, or one row per template, in the same order) unit-normalised and joined,
    each scaled by 1/sqrt(len(parts)): a unit vector (or rows of them)."""
    scale = 1.0 / np.sqrt(len(parts))
    normed = [np.asarray(p, np.float32) / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-12) for p in parts]
    return (np.concatenate(normed, axis=-1) * scale).astype(np.float32)


def held_by(model_id: str, models: Sequence[str]) -> bool:
    """Whether templates of these models serve this identity: its own model's, or every part of a fused one."""
    return all(part in models for part in (fusion_parts(model_id) or [model_id]))
