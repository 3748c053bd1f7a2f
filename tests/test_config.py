
import pytest

from edge.config import (
    Config,
    ConfigError,
    FileCamera,
    GStreamerCamera,
    ReplayCamera,
    UrlCamera,
    V4L2Camera,
    config_from_dict,
    load_config,
)
from tests.conftest import ROOT, run_cli, write_yaml


def test_shipped_config_yaml_is_valid_and_resolves_paths_relative_to_itself():
    config = load_config(ROOT / "config.yaml", env={})
    assert isinstance(config, Config)
    assert isinstance(config.camera, V4L2Camera)
    assert config.embedder.model == ROOT / "models" / "facenet-keras-int8full.tflite"
    assert config.outbox.path == ROOT / "state" / "outbox.sqlite"
    assert config.base_topic == "facecheck/door-1"
    assert config.source_path == (ROOT / "config.yaml").resolve()


def test_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("")
    config = load_config(path, env={})
    assert config.device_id == "door-1"
    assert config.matcher.gallery == tmp_path / "state" / "gallery.npz"


def test_each_camera_kind_validates(tmp_path):
    kinds = {
        "v4l2": ({"device": "/dev/video2"}, V4L2Camera),
        "url": ({"url": "rtsp://192.0.2.1/stream"}, UrlCamera),
        "gstreamer": ({"pipeline": "videotestsrc ! videoconvert ! appsink"}, GStreamerCamera),
        "file": ({"path": "clip.mp4"}, FileCamera),
        "replay": ({"path": "frames/*.jpg"}, ReplayCamera),
    }
    for kind, (extra, cls) in kinds.items():
        config = config_from_dict({"camera": {"kind": kind, **extra}}, base_dir=tmp_path)
        assert isinstance(config.camera, cls)
    replay = config_from_dict({"camera": {"kind": "replay", "path": "frames/*.jpg"}}, base_dir=tmp_path)
    assert replay.camera.path == str(tmp_path / "frames/*.jpg")


@pytest.mark.parametrize("raw, fragments", [
    ({"camara": {}}, ["camara", "unknown key"]),
    ({"mqtt": {"hosts": ["10.0.0.5"]}}, ["mqtt.hosts", "'10.0.0.5' is not host:port"]),
    ({"mqtt": {"hosts": ["b:99999"]}}, ["mqtt.hosts", "'b:99999'"]),
    ({"confirmation": {"hold_frames": 4, "hold_window": 3}}, ["confirmation", "hold_window 3 is below hold_frames 4"]),
    ({"gestures": {"classifier": "teachable"}}, ["gestures.classifier", "learned"]),
    ({"detector": {"min_confidence": 1.5}}, ["detector.min_confidence", "1.5", "less than 1"]),
    ({"camera": {"kind": "v4l2", "fps": "fast"}}, ["camera.v4l2.fps", "'fast'"]),
    ({"camera": {"kind": "webcam"}}, ["camera.kind", "'webcam'", "replay"]),
    ({"camera": {"device": 0}}, ["camera", "set 'kind'"]),
    ({"camera": {"kind": "replay"}}, ["camera.replay.path", "missing"]),
    ({"camera": {"kind": "url", "url": "ftp://x"}}, ["camera.url.url", "rtsp://"]),
    ({"camera": {"kind": "gstreamer", "pipeline": "v4l2src ! fakesink"}}, ["camera.gstreamer.pipeline", "appsink"]),
    ({"mqtt": {"port": 70000}}, ["mqtt.port", "70000"]),
    ({"mqtt": {"base_topic": "facecheck/#"}}, ["mqtt.base_topic", "wildcards"]),
    ({"mqtt": {"tls": {"ca_file": "ca.pem", "cert_file": "c.pem"}}}, ["mqtt.tls", "cert_file and key_file"]),
    ({"device_id": "door 1/x"}, ["device_id", "'door 1/x'", "letters"]),
    ({"log": {"level": "verbose"}}, ["log.level", "'verbose'", "debug"]),
])
def test_bad_values_name_the_key_the_value_and_the_fix(tmp_path, raw, fragments):
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw, base_dir=tmp_path, source=tmp_path / "bad.yaml")
    message = str(err.value)
    assert str(tmp_path / "bad.yaml") in message
    for fragment in fragments:
        assert fragment in message, message


def test_broken_yaml_and_wrong_top_level_are_refused(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("camera: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken, env={})
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listing, env={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml", env={})


def test_environment_overrides_device_id_and_broker(tmp_path):
    config = config_from_dict({}, base_dir=tmp_path, env={"FACECHECK_DEVICE_ID": "door-7",
                                                         "FACECHECK_MQTT_HOST": "broker.local"})
    assert config.device_id == "door-7"
    assert config.mqtt.host == "broker.local"
    assert config.base_topic == "facecheck/door-7"


def test_cli_exits_2_with_the_key_on_a_bad_config(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", {"detector": {"threads": -1}})
    result = run_cli("roster", "-c", str(path), "list")
    assert result.returncode == 2
    assert "detector.threads" in result.stderr
    assert "Traceback" not in result.stderr


def test_version():
    from edge import __version__

    result = run_cli("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_mqtt_hosts_are_the_brokers_in_turn_and_host_port_the_single_default():
    assert config_from_dict({}, ROOT).mqtt.brokers() == [("127.0.0.1", 1883)]
    cluster = config_from_dict({"mqtt": {"hosts": ["10.0.0.5:1883", "rabbit-2.site:1884", "[::1]:1885"]}}, ROOT)
    assert cluster.mqtt.brokers() == [("10.0.0.5", 1883), ("rabbit-2.site", 1884), ("::1", 1885)]


def test_the_health_payload_is_made_from_a_typed_snapshot_and_fits_its_schema():
    from edge.inference.liveness import VerdictCounts
    from edge.service.health import HealthSnapshot, OutboxState, health_payload
    from tests.conftest import validate

    snapshot = HealthSnapshot(
        device_id="door-1", uptime_s=12.34, fps=9.876, latency_ms={"frame": {"p50": 40.0, "p95": 55.0, "n": 120}}, frames=120,
        frames_dropped=3, camera_reconnects=0, outbox=OutboxState(2, 1.25, 17, False, 0, 0), jobs_pending=0,
        events=17, detector_model="blazeface-short", embedder_model="facenet-test", matcher=None,
        liveness_policy="refuse", liveness_check="minifasnet v2",
        liveness_verdicts=VerdictCounts(live=4, spoof=1, spoof_suspected=1),
        broker="127.0.0.1:1883")
    payload = health_payload(snapshot)
    validate(payload, "health")
    assert (payload["uptime_s"], payload["fps"], payload["outbox_depth"], payload["last_seq"]) == (12.3, 9.88, 2, 17)
    assert payload["roster"] == {"people": 0, "version": 0, "adapted": 0} and payload["matcher"] is None
    assert payload["liveness"] == {"policy": "refuse", "check": "minifasnet v2", "live": 4, "uncertain": 0, "spoof": 1,
                                   "spoof_suspected": 1}
