"""One resolver for every secret, one order: environment, then systemd credential, then the config's file."""

import pytest

from edge.config import ConfigError
from edge.security.secrets import COMMAND_KEY, GALLERY_KEY, MQTT_PASSWORD, SecretError, resolve


@pytest.mark.parametrize("source", [MQTT_PASSWORD, COMMAND_KEY, GALLERY_KEY])
def test_the_environment_wins_then_the_credential_then_the_file(tmp_path, source):
    file = tmp_path / "secret"
    file.write_text("from-file\n")
    file.chmod(0o600)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / source.credential).write_text("from-credential\n")
    env = {source.env_var: "from-env", "CREDENTIALS_DIRECTORY": str(credentials)}

    first = resolve(source, file, env)
    assert (first.text, first.source) == ("from-env", f"environment {source.env_var}")
    del env[source.env_var]
    second = resolve(source, file, env)
    assert (second.text, second.source) == ("from-credential", f"systemd credential {source.credential}")
    third = resolve(source, file, {})
    assert (third.text, third.source) == ("from-file", f"file {file}")
    assert resolve(source, None, {}) is None


def test_a_named_file_that_is_missing_or_empty_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"mqtt.password_file: .* does not exist; fix the path"):
        resolve(MQTT_PASSWORD, tmp_path / "nowhere", {})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=r"commands.signing_key_file: .* is empty"):
        resolve(COMMAND_KEY, tmp_path / "empty", {})


def test_a_gallery_key_file_may_be_made_later_but_never_shared(tmp_path):
    assert resolve(GALLERY_KEY, tmp_path / "gallery.key", {}) is None  # the first enrolment creates it
    shared = tmp_path / "shared.key"
    shared.write_text("k\n")
    shared.chmod(0o644)
    with pytest.raises(SecretError, match="may be read by others .mode 644.; chmod 600"):
        resolve(GALLERY_KEY, shared, {})
