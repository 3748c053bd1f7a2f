"""The one place that builds the pipeline's parts from the validated config."""

from __future__ import annotations

import logging
from pathlib import Path

from edge.config import Config, ConfigError
from edge.identity.fusion import fusion_id
from edge.identity.gallery import Gallery, GalleryFile
from edge.identity.matcher import FALLBACK_THRESHOLD, Matcher, build_matcher
from edge.identity.operating import operating_point
from edge.inference.detector import BlazeFaceDetector
from edge.inference.embedder import Embedder, FaceNetEmbedder, read_sidecar
from edge.inference.face_landmarks import FaceMesh
from edge.inference.gestures import GestureClassifier, GestureReader, GestureStage, build_classifier
from edge.inference.liveness import MODELS as LIVENESS_MODELS
from edge.inference.liveness import Liveness, LivenessRule, MiniFasNet
from edge.inference.pose import BlazePose
from edge.recognition.decision import Confirmation
from edge.recognition.pipeline import SPLIT_FRACTION, Identifier, Pipeline
from edge.recognition.tracking import IouTracker
from edge.timing import StageTimer

log = logging.getLogger(__name__)


# What a reload (SIGHUP, the reload command) may change, and the stage each section feeds. Every other
# section owns the camera, the broker session, the models, the outbox or the command policy: changing
# one of those takes a restart, and a reload that sees such a change refuses as a whole.
RELOADABLE_SECTIONS = {
    "matcher": "gallery and matcher",
    "confirmation": "decision stage (and whether the gesture stage runs)",
    "gestures": "gesture stage",
    "tracking": "tracker",
    "adaptation": "learning from confirmed visits",
    "log": "log level",
}
RESTART_SECTIONS = tuple(name for name in Config.model_fields if name not in RELOADABLE_SECTIONS
                         and name != "source_path")


def build_detector(config: Config, threads: int | None = None) -> BlazeFaceDetector:
    d = config.detector
    return BlazeFaceDetector(d.model, d.min_confidence, d.min_face_px, d.threads if threads is None else threads,
                             tiles=True, models_dir=config.models.dir)


def build_embedder(config: Config, threads: int | None = None, model: Path | None = None) -> FaceNetEmbedder:
    return FaceNetEmbedder(model or config.embedder.model, config.embedder.threads if threads is None else threads)


def door_identity(config: Config) -> tuple[str, int]:
    """(model id, embedding size) of the door's identity, read from the sidecars (no model loaded): embedder.model's,
    or those of it fused with embedder.fuse_with."""
    metas = [read_sidecar(path, verify_hash=False) for path in (config.embedder.model, *config.embedder.fuse_with)]
    return fusion_id([meta["model_id"] for meta in metas]), sum(int(meta["embedding_size"]) for meta in metas)


def load_gallery(config: Config, model_id: str, dim: int) -> Gallery:
    """The enrolled gallery (empty if none yet) through this model's templates (or a fused identity's, joined from
    its models'); refuses one that lacks them, or sealed under another key."""
    return GalleryFile.from_config(config).load_or_new(model_id, dim)


def build_matcher_for(config: Config, gallery: Gallery) -> Matcher:
    """The configured matcher over the gallery, with the site's own operating point where one was measured."""
    from edge.identity.operating import SitePointError, load_site_point

    m = config.matcher
    try:
        site = load_site_point(m.site_point, gallery.model_id)
    except SitePointError as exc:
        raise ConfigError(str(exc)) from None
    return build_matcher(gallery, m.kind, m.distance_threshold, m.svc_max_identities, m.ambiguity_margin,
                         m.stranger_far, site, learned_per_person=config.adaptation.max_per_person,
                         visit_looks=config.tracking.fuse_frames)


LIVENESS_INSTALL = "facecheck-convert liveness --from DIR --out {models}"


class LivenessNotInstalled(ConfigError):
    """liveness.policy asks for anti-spoofing, and its models are not in the bundle (the operator supplies them)."""


def missing_liveness_models(config: Config) -> list[str]:
    """The anti-spoofing model files liveness.policy asks for that are not in the bundle (none with policy off)."""
    if config.liveness.policy == "off":
        return []
    files = [LIVENESS_MODELS[name][0] for name in config.liveness.models]
    return [name for name in files if not (config.models.dir / name).is_file()]


def liveness_status(config: Config) -> str:
    """Which liveness is in force: "off" (liveness.policy off), "not installed" (asked for, models absent) or
    the models in use, e.g. "minifasnet v2"."""
    if config.liveness.policy == "off":
        return "off"
    return "not installed" if missing_liveness_models(config) else "minifasnet " + "+".join(config.liveness.models)


def require_liveness(config: Config) -> None:
    """Models that are asked for and absent stop the door (exit 2), naming the command that installs them and
    the setting that does without them."""
    missing = missing_liveness_models(config)
    if missing:
        raise LivenessNotInstalled(
            f"liveness.policy is {config.liveness.policy}, but the anti-spoofing models are not installed "
            f"({', '.join(missing)} missing in {config.models.dir}): install them with "
            f"`{LIVENESS_INSTALL.format(models=config.models.dir)}` (docs/liveness.md: where to get the files), or "
            "set liveness.policy: off to run without them, which accepts a photo or a screen held up to the camera")


def build_liveness(config: Config, required: bool = True) -> Liveness | None:
    """The anti-spoofing models and their thresholds; None with liveness.policy off. Absent models stop the door
    (require_liveness); with required=False (identify, the demo) they give None, and liveness_status says so."""
    lv = config.liveness
    status = liveness_status(config)
    if status == "off" or (status == "not installed" and not required):
        return None
    require_liveness(config)
    return Liveness(MiniFasNet(config.models.dir, tuple(lv.models), lv.threads),
                    LivenessRule(lv.spoof_below, lv.live_from))


def build_identifier(config: Config, with_matcher: bool = True, timer: StageTimer | None = None,
                     threads: int | None = None, liveness_required: bool = True) -> Identifier:
    """The door's identity (embedder.model, fused with embedder.fuse_with) with its matcher and anti-spoofing model; or,
    without the matcher, enrolment's: it stores every model's own templates (embedder.model, fuse_with and
    enrol_also), never a fused one, and loads no anti-spoofing model. threads overrides the config's interpreter
    threads (the jobs thread embeds with one)."""
    timer = timer or StageTimer()  # one clock for every embedder of the identity
    if not with_matcher:
        detector = build_detector(config, threads)
        wanted = dict.fromkeys([*config.embedder.fuse_with, *config.embedder.enrol_also])
        also = [_embedding_part(config, detector, path, threads, timer) for path in wanted
                if path != config.embedder.model]
        primary = _embedding_part(config, detector, config.embedder.model, threads, timer)
        primary.also = also
        return primary
    identifier = build_identity(config, timer, threads)
    identifier.matcher = build_matcher_for(config, load_gallery(config, identifier.model_id, identifier.dim))
    identifier.liveness = build_liveness(config, liveness_required)
    return identifier


def build_identity(config: Config, timer: StageTimer | None = None, threads: int | None = None) -> Identifier:
    """The door's identity without matcher or anti-spoofing (what `calibrate` measures): embedder.model, and the
    embedders of embedder.fuse_with joined to it (edge/identity/fusion.py)."""
    timer = timer or StageTimer()
    detector = build_detector(config, threads)
    identifier = _embedding_part(config, detector, config.embedder.model, threads, timer)
    identifier.fused = [_embedding_part(config, detector, path, threads, timer) for path in config.embedder.fuse_with]
    return identifier


def _embedding_part(config: Config, detector: BlazeFaceDetector, model: Path, threads: int | None,
                    timer: StageTimer | None) -> Identifier:
    """One embedder on the shared detector, with FaceMesh where its alignment needs it."""
    embedder = build_embedder(config, threads, model)
    return Identifier(detector, embedder, None, timer, None, build_mesh(config, embedder, threads))


def build_mesh(config: Config, embedder: Embedder, threads: int | None = None) -> FaceMesh | None:
    """FaceMesh, for an embedder whose contract aligns faces on five points (MobileFaceNet); None for FaceNet."""
    if embedder.alignment != "arcface-5point":
        return None
    return FaceMesh(config.models.dir, config.embedder.threads if threads is None else threads)


def build_pipeline(config: Config, timer: StageTimer | None = None) -> Pipeline:
    identifier = build_identifier(config, timer=timer)
    return _assemble(config, identifier, build_confirmation(config), build_tracker(config), build_gestures(config))


def build_confirmation(config: Config) -> Confirmation:
    """The decision stage; a capture's embedding is sealed to the backend's public key (never sent in the clear)."""
    seal_embedding = None
    if config.confirmation.include_embedding_on_capture:
        from edge.security.sealing import backend_public_key, seal_to

        if config.privacy.backend_public_key_file is None:  # the config refuses this combination; say so again
            raise ConfigError("confirmation.include_embedding_on_capture needs privacy.backend_public_key_file")
        public = backend_public_key(config.privacy.backend_public_key_file)
        seal_embedding = lambda vector: seal_to(public, vector.tobytes())  # noqa: E731
    return Confirmation(config.confirmation, config.liveness.policy, seal_embedding, liveness_status(config))


def build_tracker(config: Config) -> IouTracker:
    return IouTracker(config.tracking.min_iou, config.tracking.max_age_s)


def split_distance(config: Config, model_id: str) -> float:
    """tracking.split_distance, or SPLIT_FRACTION of the model's operating point: a split is a person swap, so it is
    judged on the same scale as `known` (0.9 was chosen for FaceNet, whose point is 1.058)."""
    if config.tracking.split_distance is not None:
        return config.tracking.split_distance
    point = operating_point(model_id)
    return round(SPLIT_FRACTION * (point.threshold if point else FALLBACK_THRESHOLD), 3)


def _assemble(config: Config, identifier: Identifier, confirmation: Confirmation, tracker: IouTracker,
              gestures: GestureReader | None) -> Pipeline:
    t = config.tracking
    return Pipeline(identifier, confirmation, tracker, gestures=gestures, reuse_iou=t.reuse_iou,
                    reembed_every=t.reembed_every_n_frames,
                    split_distance=split_distance(config, identifier.model_id),
                    fuse_frames=t.fuse_frames, tile_every=config.detector.tile_every_n_frames,
                    adaptation=config.adaptation if config.adaptation.enabled else None)


def rebuild_pipeline(current: Pipeline, old: Config, new: Config, matcher: Matcher) -> Pipeline:
    """A whole new pipeline for a reloaded config, reusing the loaded detector, embedder and every stage
    whose sections did not change; the caller swaps it in at once. Raises if a new stage cannot be built."""
    was = current.identifier
    identifier = Identifier(was.detector, was.embedder, matcher, current.timer, was.liveness, was.mesh, fused=was.fused)
    confirmation = current.confirmation if new.confirmation == old.confirmation else build_confirmation(new)
    tracker = current.tracker if new.tracking == old.tracking else build_tracker(new)
    gestures_same = new.gestures == old.gestures and current.gestures is not None
    gestures = (current.gestures if gestures_same and new.confirmation.require_gesture
                else build_gestures(new))
    return _assemble(new, identifier, confirmation, tracker, gestures)


def build_pose(config: Config) -> BlazePose:
    """The body landmark model (BlazePose from the bundle)."""
    return BlazePose(config.detector.threads, config.gestures.min_pose_score, models_dir=config.models.dir)


def build_gesture_classifier(config: Config) -> GestureClassifier:
    """The classifier gestures.classifier names: learned (packaged), trained (the site's own) or rules."""
    g = config.gestures
    return build_classifier(g.classifier, g.trained_model, g.min_visibility)


def build_gestures(config: Config) -> GestureReader | None:
    """The pose + gesture stage, needed only when a confirmation gesture is required."""
    if not config.confirmation.require_gesture:
        return None
    g = config.gestures
    return GestureStage(build_pose(config), build_gesture_classifier(config), g.min_visibility,
                        g.idle_pose_every_n_frames)
