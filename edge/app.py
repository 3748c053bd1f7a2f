"""The one place that builds the pipeline's parts from the validated config."""

from __future__ import annotations

import logging

from edge.config import Config
from edge.decision import Confirmation
from edge.inference.detector import BlazeFaceDetector
from edge.inference.embedder import FaceNetEmbedder
from edge.inference.gallery import Gallery
from edge.inference.matcher import Matcher, build_matcher
from edge.pipeline import Identifier, Pipeline
from edge.timing import StageTimer
from edge.tracking import IouTracker

log = logging.getLogger(__name__)


def build_detector(config: Config) -> BlazeFaceDetector:
    d = config.detector
    return BlazeFaceDetector(d.model, d.min_confidence, d.min_face_px, d.threads)


def build_embedder(config: Config) -> FaceNetEmbedder:
    return FaceNetEmbedder(config.embedder.model, config.embedder.threads)


def load_gallery(config: Config, embedder: FaceNetEmbedder) -> Gallery:
    """The enrolled gallery (empty if none yet); refuses one from another model."""
    return Gallery.load_or_new(config.matcher.gallery, embedder.model_id, embedder.dim)


def build_matcher_for(config: Config, gallery: Gallery) -> Matcher:
    m = config.matcher
    return build_matcher(gallery, m.kind, m.distance_threshold, m.svc_max_identities)


def build_identifier(config: Config, with_matcher: bool = True, timer: StageTimer | None = None) -> Identifier:
    embedder = build_embedder(config)
    matcher = build_matcher_for(config, load_gallery(config, embedder)) if with_matcher else None
    return Identifier(build_detector(config), embedder, matcher, timer)


def build_pipeline(config: Config, timer: StageTimer | None = None) -> Pipeline:
    identifier = build_identifier(config, timer=timer)
    t = config.tracking
    return Pipeline(identifier, Confirmation(config.confirmation), IouTracker(t.min_iou, t.max_age_s),
                    gestures=build_gestures(config), reuse_iou=t.reuse_iou, reembed_every=t.reembed_every_n_frames)


def build_gestures(config: Config):
    """The pose + gesture stage, needed only when a confirmation gesture is required."""
    if not config.confirmation.require_gesture:
        return None
    from edge.inference.gestures import GestureStage

    return GestureStage.from_config(config)
