"""Where every secret comes from: one resolver, one order, for the broker password, the command signing key,
the site roster key and the door's gallery key.

The first source that holds the secret wins:

1. the environment variable (`FACECHECK_MQTT_PASSWORD`, `FACECHECK_COMMAND_KEY`, `FACECHECK_ROSTER_KEY`,
   `FACECHECK_GALLERY_KEY`): what is set for this one run, or by the unit's `Environment=`;
2. the systemd credential of that name in `$CREDENTIALS_DIRECTORY` (`LoadCredential=`,
   `LoadCredentialEncrypted=`, TPM2-bound where the board has one): what systemd hands this service;
3. the file the config names (`mqtt.password_file`, `commands.signing_key_file`, `privacy.roster_key_file`,
   `privacy.gallery_key_file`): the default a fleet's config shares.

The more particular source wins over the more general one, so an operator can override a shared config
for one door without editing it. Every secret carries the name of its source, for doctor and for errors.
(Before this module the broker password and the command key read the file first and the gallery key last.)
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from edge.config import ConfigError, MqttConfig
from edge.errors import BadInputError

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


class SecretError(BadInputError):
    """A secret's file is missing, unreadable, empty or readable by others; the message names it and the fix."""


@dataclass(frozen=True)
class SecretSource:
    """Where one secret may be found: its environment variable, systemd credential and config key."""

    env_var: str
    credential: str
    config_key: str
    private: bool = False  # the file must be readable by its owner only (keys that seal data)
    created_later: bool = False  # a named file that does not exist yet is no error (made at first use)

    def places(self) -> str:
        return f"${self.env_var}, the systemd credential {self.credential} or {self.config_key}"


@dataclass(frozen=True)
class Secret:
    text: str
    source: str  # "environment X", "systemd credential Y" or "file Z"


MQTT_PASSWORD = SecretSource("FACECHECK_MQTT_PASSWORD", "mqtt-password", "mqtt.password_file")
COMMAND_KEY = SecretSource("FACECHECK_COMMAND_KEY", "command-key", "commands.signing_key_file")
ROSTER_KEY = SecretSource("FACECHECK_ROSTER_KEY", "roster-key", "privacy.roster_key_file")
GALLERY_KEY = SecretSource("FACECHECK_GALLERY_KEY", "gallery-key", "privacy.gallery_key_file", private=True,
                           created_later=True)


def resolve(source: SecretSource, file: Path | None, env: dict[str, str] | None = None) -> Secret | None:
    """The secret from the first place that holds it (see the module's docstring); None where none does."""
    env = dict(os.environ if env is None else env)
    if env.get(source.env_var):
        return Secret(env[source.env_var].strip(), f"environment {source.env_var}")
    credentials = env.get(CREDENTIALS_ENV)
    if credentials and (Path(credentials) / source.credential).is_file():
        path = Path(credentials) / source.credential
        return Secret(_read(path, f"systemd credential {source.credential}"), f"systemd credential {source.credential}")
    if file is None or (source.created_later and not file.exists()):
        return None
    if source.private:
        _refuse_shared(file, source.config_key)
    return Secret(_read(file, source.config_key), f"file {file}")


def broker_password(config: MqttConfig, env: dict[str, str] | None = None) -> str | None:
    secret = resolve(MQTT_PASSWORD, config.password_file, env)
    return secret.text if secret else None


def check_tls_files(config: MqttConfig) -> None:
    """Refuse to start with a missing or unreadable TLS file, naming the key and the path."""
    if config.tls is None:
        return
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(config.tls, key)
        if path is not None:
            _read(path, f"mqtt.tls.{key}", binary=True)


def _refuse_shared(path: Path, what: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # _read names the problem
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"{path}: {what} may be read by others (mode {stat.S_IMODE(mode):o}); chmod 600 {path}")


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
