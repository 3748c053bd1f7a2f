"""Where the broker password comes from: a file, the environment, or a systemd credential."""

from __future__ import annotations

import os
from pathlib import Path

from edge.config import ConfigError, MqttConfig

CREDENTIAL_NAME = "mqtt-password"


def broker_password(config: MqttConfig, env: dict[str, str] | None = None) -> str | None:
    """mqtt.password_file, else $FACECHECK_MQTT_PASSWORD, else $CREDENTIALS_DIRECTORY/mqtt-password."""
    env = dict(os.environ if env is None else env)
    if config.password_file is not None:
        return _read(config.password_file, "mqtt.password_file")
    if env.get("FACECHECK_MQTT_PASSWORD"):
        return env["FACECHECK_MQTT_PASSWORD"]
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / CREDENTIAL_NAME).is_file():
        return _read(Path(creds) / CREDENTIAL_NAME, f"systemd credential {CREDENTIAL_NAME}")
    return None


def check_tls_files(config: MqttConfig) -> None:
    """Refuse to start with a missing or unreadable TLS file, naming the key and the path."""
    if config.tls is None:
        return
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(config.tls, key)
        if path is not None:
            _read(path, f"mqtt.tls.{key}", binary=True)


def _read(path: Path, what: str, binary: bool = False) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what}: {path} does not exist; fix the path or create the file") from None
    except OSError as exc:
        raise ConfigError(f"{what}: {path} cannot be read ({exc.strerror}); check its permissions") from None
    if binary:
        return ""
    text = data.decode("utf-8", errors="strict").strip()
    if not text:
        raise ConfigError(f"{what}: {path} is empty; put the password in it")
    return text
