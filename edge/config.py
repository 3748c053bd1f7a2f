"""Typed, validated configuration: the YAML file is read once here and nowhere else.

Every other module receives these frozen objects. Validation errors are turned into a
`ConfigError` that names the key path, the bad value and what is allowed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.errors import BadInputError

DEFAULT_CONFIG_PATHS = (Path("config.yaml"), Path("/etc/facecheck/config.yaml"))
ENV_PREFIX = "FACECHECK_"


class ConfigError(BadInputError):
    """A config problem the operator must fix; the CLI prints it and exits 2."""


NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"


def _topic_name(value: str | None, why: str = "") -> str | None:
    """Names that become MQTT topic levels: 1-64 letters, digits, '.', '_' or '-'."""
    if value is not None and not re.fullmatch(NAME_PATTERN, value):
        raise ValueError("use 1-64 letters, digits, '.', '_' or '-'" + why)
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- camera


class _CameraBase(_Model):
    width: int = Field(640, ge=64, le=7680, description="Requested frame width in pixels.")
    height: int = Field(480, ge=48, le=4320, description="Requested frame height in pixels.")
    fps: float = Field(15.0, gt=0, le=240, description="Requested (or replayed) frames per second.")
    reconnect_initial_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    rotate: Literal[0, 90, 180, 270] = 0


class V4L2Camera(_CameraBase):
    kind: Literal["v4l2"]
    device: int | str = Field(0, description="Index (0) or device node (/dev/video0).")


class UrlCamera(_CameraBase):
    kind: Literal["url"]
    url: str

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not re.match(r"^(rtsp|rtsps|http|https|rtmp|udp|tcp)://", value):
            raise ValueError("must start with rtsp://, rtsps://, http://, https://, rtmp://, udp:// or tcp://")
        return value


class GStreamerCamera(_CameraBase):
    kind: Literal["gstreamer"]
    pipeline: str = Field(description="A GStreamer pipeline ending in 'appsink' (Jetson CSI: nvarguscamerasrc ...).")

    @field_validator("pipeline")
    @classmethod
    def _appsink(cls, value: str) -> str:
        if "appsink" not in value:
            raise ValueError("must end in an appsink element, e.g. '... ! videoconvert ! appsink'")
        return value


class FileCamera(_CameraBase):
    kind: Literal["file"]
    path: Path
    loop: bool = False
    realtime: bool = Field(True, description="Pace playback at the file's fps (false: as fast as decoded).")


class ReplayCamera(_CameraBase):
    kind: Literal["replay"]
    path: str = Field(description="A folder of images, or a glob such as 'frames/*.jpg'.")
    loop: bool = False
    realtime: bool = Field(True, description="Pace replay at fps (false: as fast as the pipeline takes them).")


class PiCamera(_CameraBase):
    kind: Literal["picamera2"]
    camera_index: int = Field(0, ge=0)


CameraConfig = Annotated[
    V4L2Camera | UrlCamera | GStreamerCamera | FileCamera | ReplayCamera | PiCamera,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- inference


class ModelsConfig(_Model):
    dir: Path = Field(Path("models"), description="The model bundle (facecheck-convert bundle): BlazeFace and "
                      "BlazePose .tflite files with sha256 sidecars; on a device /var/lib/facecheck/models.")


class DetectorConfig(_Model):
    model: Literal["short_range", "full_range"] = Field(
        "short_range", description="short_range: faces within ~2 m (doors); full_range: up to ~5 m (rooms)."
    )
    min_confidence: float = Field(0.6, gt=0, lt=1)
    min_face_px: int = Field(40, ge=8, le=2000, description="Smaller faces are ignored (too few pixels to identify).")
    tile_every_n_frames: int = Field(
        3, ge=0, le=1000, description="Also search overlapping tiles every N frames, for faces far below a fifth "
        "of the frame width (0 = never; photos are always searched this way).")
    threads: int = Field(0, ge=0, le=64, description="Interpreter threads; 0 = number of cores.")


class EmbedderConfig(_Model):
    model: Path = Field(Path("models/facenet-keras-int8full.tflite"), description="The embedder .tflite built by "
                        "facecheck-convert (FaceNet; or models/mobilefacenet-float32.tflite).")
    threads: int = Field(0, ge=0, le=64, description="Interpreter threads; 0 = number of cores.")
    enrol_also: list[Path] = Field(
        [], max_length=4, description="Other embedder .tflite files enrolment also stores templates of, so that "
        "embedder.model can later point at one of them without re-enrolling anyone (docs/accuracy.md).")
    fuse_with: list[Path] = Field(
        [Path("models/mobilefacenet-float32.tflite")], max_length=2, description="Other embedder .tflite files whose "
        "embeddings the door joins to embedder.model's into one identity, with equal weight. By default MobileFaceNet "
        "(built by scripts/bootstrap): FaceNet and MobileFaceNet together separate East Asian faces far better than "
        "FaceNet alone, which misses the per-visit bar there (docs/accuracy.md); [] runs FaceNet alone. Enrolment "
        "stores each model's own templates, so a gallery enrolled with them (or with enrol_also naming them) needs no "
        "re-enrolment.")

    @model_validator(mode="after")
    def _fused_models_differ(self) -> EmbedderConfig:
        if self.model in self.fuse_with or len(set(self.fuse_with)) != len(self.fuse_with):
            raise ValueError(f"fuse_with {[str(p) for p in self.fuse_with]}: name each other embedder once, and not "
                             f"embedder.model ({self.model}) itself")
        return self


class TrackingConfig(_Model):
    min_iou: float = Field(0.3, gt=0, lt=1, description="Box overlap that continues a face track.")
    max_age_s: float = Field(0.5, gt=0, le=10, description="A track unseen this long is ended.")
    reuse_iou: float = Field(0.8, gt=0, le=1, description="A face that moved less than this reuses its embedding.")
    reembed_every_n_frames: int = Field(5, ge=1, le=1000, description="Re-embed a tracked face at least this often.")
    split_distance: float | None = Field(
        None, gt=0, le=2, description="A new face this far from its track's fused identity starts a new track; "
        "null = SPLIT_FRACTION of the embedder's measured operating point (0.9 for the default FaceNet), so another "
        "model's distance scale carries over.")
    fuse_frames: int = Field(8, ge=1, le=100, description="The track's best frames fused into its identity.")


class MatcherConfig(_Model):
    kind: Literal["auto", "svc", "nearest"] = Field(
        "auto", description="svc: the seed's SVC (small rosters); nearest: nearest neighbour (10k+); auto picks."
    )
    gallery: Path = Field(Path("state/gallery.npz"))
    distance_threshold: float | None = Field(
        None, gt=0, le=2, description="Max L2 distance to the person's enrolled embeddings; null = calibrated."
    )
    svc_max_identities: int = Field(150, ge=2, description="auto uses the SVC up to this many people.")
    stranger_far: float = Field(
        1e-4, gt=0, lt=0.5, description="Strangers accepted per visit that the roster's own bound on the "
        "threshold aims at (a normal model of the enrolled people's impostor distances; docs/accuracy.md).")
    ambiguity_margin: float = Field(
        0.05, ge=0, le=1, description="A face not this much closer to its best person than to the next is unknown.")
    augmentations: int = Field(20, ge=0, le=100, description="Augmented variants embedded per enrolment photo.")
    site_point: Path = Field(Path("state/site-point.json"), description="The site's own operating point, written by "
                             "`facecheck calibrate FOLDER`; it can only tighten the model's. No file: the model's point.")


class AdaptationConfig(_Model):
    """Templates learned from the door's own confirmed visits (edge/recognition/adaptation.py: every guard)."""

    enabled: bool = Field(False, description="true: the door adds templates from its confirmed visits (off by "
                          "default: on East Asian faces it lets about three times the strangers in, docs/accuracy.md).")
    max_per_person: int = Field(10, ge=1, le=1000, description="Learned templates kept per person (oldest leave).")
    within: float = Field(1.0, gt=0, le=1, description="A visit is learned only within this fraction of the threshold "
                          "of the person's enrolled template (learned templates never vouch for a visit).")
    min_margin: float = Field(0.1, ge=0, le=2, description="...and the next person's enrolled template at least "
                              "this much farther away.")
    min_quality: float = Field(0.5, ge=0, le=1, description="...and the track's best frame at least this quality weight.")
    min_frames: int = Field(10, ge=1, le=1000,
                            description="...and, without a confirming gesture, a track seen in this many frames.")
    novel_beyond: float = Field(0.3, ge=0, le=2, description="A visit this close to one of the person's templates "
                                "adds nothing and is not kept.")


class GestureConfig(_Model):
    classifier: Literal["learned", "trained", "rules"] = Field(
        "learned", description="learned: the packaged network trained on real people's poses; trained: the site's "
        "own (facecheck gestures train); rules: the geometric rules (docs/gestures.md).")
    trained_model: Path = Field(Path("state/gestures.npz"), description="The site's model (classifier: trained).")
    min_visibility: float = Field(0.5, ge=0, le=1, description="Shoulders (learned, trained) or arm landmarks "
                                  "(rules) seen less surely than this give no gesture.")
    min_pose_score: float = Field(0.6, gt=0, lt=1, description="Bodies detected less surely are ignored.")
    idle_pose_every_n_frames: int = Field(0, ge=0, description="Pose rate when nobody awaits confirmation; 0 = never.")


class ConfirmationConfig(_Model):
    require_gesture: bool = Field(True, description="false: a recognised face checks in without a gesture.")
    timeout_s: float = Field(8.0, gt=0, le=120)
    hold_frames: int = Field(3, ge=1, le=100, description="Frames of the last hold_window in which the O, X or "
                             "capture must be seen.")
    hold_window: int = Field(5, ge=1, le=200, description="How many of a track's recent frames hold_frames counts in.")
    recognise_frames: int = Field(2, ge=1, le=100, description="Frames a face must be recognised before asking.")
    unknown_frames: int = Field(10, ge=1, le=1000, description="Frames a face must stay unknown to report it.")
    unknown_interval_s: float = Field(30.0, ge=0, description="At most one unknown_face event per interval.")
    cooldown_s: float = Field(60.0, ge=0, description="No second check-in for the same person within this.")
    include_embedding_on_capture: bool = Field(
        False, description="Send the capture's embedding, sealed to privacy.backend_public_key_file.")
    include_image_on_capture: bool = Field(False, description="Opt in to a JPEG of the face on capture events.")

    @model_validator(mode="after")
    def _window_holds_the_frames(self) -> ConfirmationConfig:
        if self.hold_window < self.hold_frames:
            raise ValueError(f"hold_window {self.hold_window} is below hold_frames {self.hold_frames}; "
                             "set hold_window >= hold_frames")
        return self


class LivenessConfig(_Model):
    policy: Literal["refuse", "flag", "off"] = Field(
        "refuse", description="refuse: a track judged a spoof is never checked in (a spoof_suspected event "
        "instead); flag: it is checked in with its verdict; off: no anti-spoofing model runs.")
    models: list[Literal["v2", "v1se"]] = Field(
        ["v2"], min_length=1, description="MiniFASNet models whose live probabilities are averaged "
        "(docs/liveness.md: v2 alone refused as many attacks as the mean, in half the time).")
    spoof_below: float = Field(0.0187, ge=0, le=1, description="A track's median score below this is a spoof "
                               "(chosen out of sample on live tracks: docs/liveness.md).")
    live_from: float = Field(0.05, ge=0, le=1, description="From this up it is live; between: uncertain (flagged).")
    threads: int = Field(1, ge=0, le=64, description="Interpreter threads; 0 = number of cores.")

    @model_validator(mode="after")
    def _ordered(self) -> LivenessConfig:
        if self.live_from < self.spoof_below:
            raise ValueError(f"live_from {self.live_from} is below spoof_below {self.spoof_below}; "
                             "set live_from >= spoof_below")
        return self


# --------------------------------------------------------------------------- MQTT and outbox


class TlsConfig(_Model):
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = Field(False, description="Never in production: disables hostname verification.")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        return self


class MqttConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    hosts: list[str] = Field(
        [], description="Several brokers as host:port (the nodes of a cluster), tried in turn: when the one in use "
        "is lost, the door reconnects to the next with the same back-off. Empty: host and port.")
    protocol: Literal["5", "3.1.1"] = "5"
    base_topic: str | None = Field(None, description="Default facecheck/<device_id>.")
    client_id: str | None = Field(None, description="Default facecheck-<device_id>.")
    keepalive_s: int = Field(30, ge=5, le=3600)
    session_expiry_s: int = Field(86400, ge=0, description="MQTT 5 persistent session lifetime.")
    reconnect_min_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(4.0, gt=0, le=600, description="Longest back-off: how late a door may notice "
                                   "its broker is back (jittered down by up to 25 % per outage).")
    health_interval_s: float = Field(30.0, gt=0)
    username: str | None = None
    password_file: Path | None = Field(None, description="File holding the password (or FACECHECK_MQTT_PASSWORD).")
    tls: TlsConfig | None = None
    max_command_bytes: int = Field(4_000_000, ge=1024, description="Larger command payloads are refused.")

    @field_validator("hosts")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        for item in value:
            host, sep, port = item.rpartition(":")
            if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"{item!r} is not host:port (e.g. 10.0.0.5:1883)")
        return value

    def brokers(self) -> list[tuple[str, int]]:
        """The brokers to try, in order."""
        if not self.hosts:
            return [(self.host, self.port)]
        return [(h.strip("[]"), int(p)) for h, _, p in (item.rpartition(":") for item in self.hosts)]  # [v6]:port

    @field_validator("base_topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in "#+") or value.endswith("/")):
            raise ValueError("must be a non-empty topic without wildcards (# +) or a trailing '/'")
        return value


# The commands a door knows, written once: the config's allow-list, the command service and the CLI's
# sign-command read them from here.
CommandName = Literal["reload", "health", "roster", "enroll", "remove", "snapshot"]
COMMAND_NAMES: tuple[str, ...] = get_args(CommandName)
# Commands that change who gets in or show camera images: off by default, and always signed when on.
SIGNED_COMMANDS = ("enroll", "remove", "snapshot")


class CommandsConfig(_Model):
    allow: list[CommandName] = Field(
        ["reload", "health", "roster"],
        description="Commands this door accepts; enroll, remove and snapshot also need a signed request.")
    signing_key_file: Path | None = Field(
        None, description="The site's shared HMAC key (or FACECHECK_COMMAND_KEY, or systemd credential command-key).")
    max_clock_skew_s: float = Field(300.0, gt=0, le=86400, description="Signed requests older or newer are refused.")
    per_minute: int = Field(30, ge=1, le=6000, description="Commands accepted per topic per minute; more are refused.")

    @field_validator("allow")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return sorted(set(value), key=COMMAND_NAMES.index)


class LimitsConfig(_Model):
    max_image_pixels: int = Field(
        25_000_000, ge=1_000_000, le=200_000_000,
        description="Images declaring more pixels are refused before decoding (CLI, MQTT enroll).")


class OutboxConfig(_Model):
    path: Path = Path("state/outbox.sqlite")
    max_events: int = Field(100_000, ge=100, description="Beyond this the outbox warns loudly; it never drops.")
    max_age_days: float = Field(30.0, gt=0, description="Older undelivered events are warned about, not dropped.")


class RosterConfig(_Model):
    site: str | None = Field(None, description="Follow this site's central roster (facecheck roster publish).")
    topic: str | None = Field(None, description="Default facecheck/site/<site>/roster.")

    _site = field_validator("site")(classmethod(lambda cls, value: _topic_name(value)))


class PrivacyConfig(_Model):
    gallery_key_file: Path | None = Field(
        None, description="The door's own gallery key (0600; created at the first enrolment); null: beside "
        "the gallery (<gallery>.key). FACECHECK_GALLERY_KEY or the systemd credential gallery-key take precedence.")
    roster_key_file: Path | None = Field(
        None, description="The site roster key (AES-256; or FACECHECK_ROSTER_KEY, or the systemd credential "
        "roster-key): the site's doors and its enrolment station share it.")
    roster_verify_key_file: Path | None = Field(
        None, description="Doors: the enrolment station's Ed25519 public key (.pub); rosters it did not sign "
        "are refused.")
    roster_signing_key_file: Path | None = Field(
        None, description="The enrolment station only: its Ed25519 private key for `facecheck roster publish`.")
    backend_public_key_file: Path | None = Field(
        None, description="X25519 public key (.pub) that capture embeddings are sealed to.")


class HomeAssistantConfig(_Model):
    enabled: bool = Field(False, description="Announce the device to Home Assistant by MQTT discovery.")
    discovery_prefix: str = "homeassistant"


class LogConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"
    stage_timing_every_s: float = Field(10.0, ge=0, description="Log per-stage timing this often; 0 = never.")


class SinksConfig(_Model):
    stdout: bool = Field(False, description="Also print each event as a JSON line on stdout.")


class Config(_Model):
    device_id: str = Field("door-1", description="Unique per device; also FACECHECK_DEVICE_ID.")
    camera: CameraConfig = Field(default_factory=lambda: V4L2Camera(kind="v4l2"))
    models: ModelsConfig = ModelsConfig()
    detector: DetectorConfig = DetectorConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    tracking: TrackingConfig = TrackingConfig()
    matcher: MatcherConfig = MatcherConfig()
    adaptation: AdaptationConfig = AdaptationConfig()
    gestures: GestureConfig = GestureConfig()
    confirmation: ConfirmationConfig = ConfirmationConfig()
    liveness: LivenessConfig = LivenessConfig()
    mqtt: MqttConfig = MqttConfig()
    outbox: OutboxConfig = OutboxConfig()
    roster: RosterConfig = RosterConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    commands: CommandsConfig = CommandsConfig()
    limits: LimitsConfig = LimitsConfig()
    sinks: SinksConfig = SinksConfig()
    log: LogConfig = LogConfig()
    source_path: Path | None = Field(None, exclude=True, description="Set by the loader, not the file.")

    @model_validator(mode="after")
    def _keys_for_what_is_on(self) -> Config:
        if self.confirmation.include_embedding_on_capture and self.privacy.backend_public_key_file is None:
            raise ValueError("confirmation.include_embedding_on_capture needs privacy.backend_public_key_file (the "
                             "embedding is sent sealed to the backend, never in the clear); set it or turn it off")
        if self.roster_topic and self.privacy.roster_verify_key_file is None:
            raise ValueError("following a site roster (roster.site / roster.topic) needs "
                             "privacy.roster_verify_key_file (the enrolment station's public key: a door applies "
                             "only rosters it signed)")
        return self

    _device_id = field_validator("device_id")(
        classmethod(lambda cls, value: _topic_name(value, " (it becomes part of MQTT topics)")))

    @property
    def base_topic(self) -> str:
        return self.mqtt.base_topic or f"facecheck/{self.device_id}"

    @property
    def roster_topic(self) -> str | None:
        """Where this door's site roster lives (None: the door follows no site)."""
        return self.roster_topic_of(self.roster.site)

    def roster_topic_of(self, site: str | None) -> str | None:
        """The roster topic of a site: roster.topic where set, else facecheck/site/<site>/roster."""
        if self.roster.topic:
            return self.roster.topic
        return f"facecheck/site/{site}/roster" if site else None

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"facecheck-{self.device_id}"


# --------------------------------------------------------------------------- loading

_PATH_KEYS = (
    ("embedder", "enrol_also"),
    ("embedder", "fuse_with"),
    ("models", "dir"),
    ("embedder", "model"),
    ("matcher", "gallery"),
    ("matcher", "site_point"),
    ("gestures", "trained_model"),
    ("outbox", "path"),
    ("mqtt", "password_file"),
    ("commands", "signing_key_file"),
    ("privacy", "gallery_key_file"),
    ("privacy", "roster_key_file"),
    ("privacy", "roster_verify_key_file"),
    ("privacy", "roster_signing_key_file"),
    ("privacy", "backend_public_key_file"),
    ("mqtt", "tls", "ca_file"),
    ("mqtt", "tls", "cert_file"),
    ("mqtt", "tls", "key_file"),
    ("camera", "path"),
)


def find_config(explicit: str | os.PathLike | None) -> Path | None:
    """The explicit path, else ./config.yaml, else /etc/facecheck/config.yaml, else None (defaults)."""
    if explicit is not None:
        return Path(explicit)
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> Config:
    """Read, validate and resolve a config file (relative paths are relative to the file)."""
    env = dict(os.environ if env is None else env)
    resolved = find_config(path)
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if resolved is not None:
        try:
            text = resolved.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{resolved}: config file not found; pass -c PATH or copy config.yaml there") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{resolved}: cannot read config file: {exc}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{resolved}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{resolved}: the top level must be a mapping of keys, got {type(loaded).__name__}")
        raw = loaded
        base = resolved.resolve().parent
    return config_from_dict(raw, base_dir=base, env=env, source=resolved)


def config_from_dict(
    raw: dict[str, Any], base_dir: Path, env: dict[str, str] | None = None, source: Path | None = None
) -> Config:
    raw = _apply_env(dict(raw), env or {})
    where = str(source) if source else "config"
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where)) from None
    data = config.model_dump()
    for keys in _PATH_KEYS:
        _resolve_path(data, keys, base_dir)
    data["source_path"] = source.resolve() if source else None
    return Config.model_validate(data)


def _apply_env(raw: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Environment overrides for what differs per device or is secret."""
    if env.get(ENV_PREFIX + "DEVICE_ID"):
        raw["device_id"] = env[ENV_PREFIX + "DEVICE_ID"]
    if env.get(ENV_PREFIX + "MQTT_HOST"):
        mqtt = dict(raw.get("mqtt") or {})
        mqtt["host"] = env[ENV_PREFIX + "MQTT_HOST"]
        raw["mqtt"] = mqtt
    if env.get(ENV_PREFIX + "MQTT_USERNAME"):
        mqtt = dict(raw.get("mqtt") or {})
        mqtt["username"] = env[ENV_PREFIX + "MQTT_USERNAME"]
        raw["mqtt"] = mqtt
    return raw


def _resolve_path(data: dict[str, Any], keys: tuple[str, ...], base_dir: Path) -> None:
    node: Any = data
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return
    last = keys[-1]
    if not isinstance(node, dict) or node.get(last) is None:
        return
    value = node[last]
    if isinstance(value, Path):
        node[last] = value if value.is_absolute() else base_dir / value
    elif isinstance(value, list) and all(isinstance(item, Path) for item in value):
        node[last] = [item if item.is_absolute() else base_dir / item for item in value]
    elif isinstance(value, str) and keys == ("camera", "path") and not os.path.isabs(value):
        node[last] = str(base_dir / value)


def _describe(exc: ValidationError, where: str) -> str:
    lines = [f"{where}: {exc.error_count()} problem(s):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        kind = err["type"]
        value = err.get("input")
        if kind == "extra_forbidden":
            lines.append(f"  {key}: unknown key; remove it or check the spelling against config.yaml")
            continue
        if kind == "missing":
            lines.append(f"  {key}: required key is missing; add it")
            continue
        if kind == "union_tag_invalid":
            allowed = err.get("ctx", {}).get("expected_tags", "")
            lines.append(f"  {key}.kind: {value.get('kind') if isinstance(value, dict) else value!r} is not a "
                         f"camera kind; use one of {allowed}")
            continue
        if kind == "union_tag_not_found":
            lines.append(f"  {key}: set 'kind' (v4l2, url, gstreamer, file, replay or picamera2)")
            continue
        if kind == "value_error" and isinstance(value, dict):  # a section's own rule across its keys
            lines.append(f"  {key}: {err['msg'].removeprefix('Value error, ')}")
            continue
        shown = repr(value) if not isinstance(value, dict) else "a mapping"
        lines.append(f"  {key}: {shown} is not allowed: {err['msg']}")
    return "\n".join(lines)
