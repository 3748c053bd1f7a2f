"""Where secrets come from (the broker password, the command signing key): a file named in the config,
the environment, or a systemd credential ($CREDENTIALS_DIRECTORY, LoadCredential=)."""

from __future__ import annotations

import os
from pathlib import Path

from edge.config import ConfigError, MqttConfig

CREDENTIAL_NAME = "mqtt-password"


def secret(file: Path | None, key: str, env_var: str, credential: str, env: dict[str, str] | None = None) -> str | None:
    """The file the config names at `key`, else $env_var, else the systemd credential, else None."""
    env = dict(os.environ if env is None else env)
    if file is not None:
        return _read(file, key)
    if env.get(env_var):
        return env[env_var]
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / credential).is_file():
        return _read(Path(creds) / credential, f"systemd credential {credential}")
    return None


def broker_password(config: MqttConfig, env: dict[str, str] | None = None) -> str | None:
    """mqtt.password_file, else $FACECHECK_MQTT_PASSWORD, else $CREDENTIALS_DIRECTORY/mqtt-password."""
    return secret(config.password_file, "mqtt.password_file", "FACECHECK_MQTT_PASSWORD", CREDENTIAL_NAME, env)


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
        raise ConfigError(f"{what}: {path} is empty; put the secret in it")
    return text
