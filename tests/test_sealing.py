"""Templates sealed at rest: after a real enrolment no file holds a readable name or template; a missing,
wrong or exposed key stops every command with exit 2; an old plaintext gallery is sealed once, on request."""

import json
import os

import numpy as np
import pytest

from edge.config import config_from_dict
from edge.identity.gallery import Gallery, GalleryFile
from edge.samples import sample
from edge.security.sealing import Key, SealError, encode_key, new_key, seal, unseal
from edge.security.secrets import GALLERY_KEY
from tests.conftest import run_cli, write_yaml


def readable_forms(names, embeddings=()):
    """How names (UTF-8, and UTF-32 as NumPy stores them) and float32 templates look in a plaintext file."""
    return ([n.encode() for n in names] + [n.encode("utf-32-le") for n in names]
            + [np.asarray(e, "<f4").tobytes() for e in embeddings])


def state_bytes(folder):
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def enrolled(base_config, tmp_path):
    config = write_yaml(tmp_path / "config.yaml", base_config)
    for name, photos in {"Barack Obama": ["obama-1.jpg", "obama-2.jpg"], "Joe Biden": ["biden-1.jpg"]}.items():
        result = run_cli("enroll", "-c", str(config), "--name", name, *[str(sample(p)) for p in photos])
        assert result.returncode == 0, result.stderr
    return config


def test_after_enrolment_no_file_holds_a_name_or_a_template(enrolled, tmp_path):
    gallery_path = tmp_path / "state" / "gallery.npz"
    stored = GalleryFile.from_config(config_from_dict({"matcher": {"gallery": str(gallery_path)}}, tmp_path))
    key_file = stored.key_file
    assert key_file == tmp_path / "state" / "gallery.key" and (key_file.stat().st_mode & 0o777) == 0o600
    gallery = stored.load()
    assert sorted(gallery.names) == ["Barack Obama", "Joe Biden"]
    raw = stored.path.read_bytes()
    assert not any(form in raw for form in readable_forms(gallery.names, gallery.embeddings[gallery.original]))
    with pytest.raises(ValueError):
        np.load(stored.path, allow_pickle=False)
    listing = run_cli("roster", "-c", str(enrolled), "list")
    assert listing.returncode == 0 and len(listing.stdout.splitlines()) == 2
    doctor = run_cli("doctor", "-c", str(enrolled))
    assert "sealed (AES-256-GCM) with the key from file" in doctor.stdout


def test_removed_person_is_gone_from_every_file(enrolled, tmp_path):
    listing = [json.loads(line) for line in run_cli("roster", "-c", str(enrolled), "list").stdout.splitlines()]
    biden = next(p["person_id"] for p in listing if p["name"] == "Joe Biden")
    gallery_path = tmp_path / "state" / "gallery.npz"
    stored = GalleryFile.from_config(config_from_dict({"matcher": {"gallery": str(gallery_path)}}, tmp_path))
    before = stored.load()
    biden_rows = before.embeddings[before.labels == before.person_ids.index(biden)]
    assert run_cli("roster", "-c", str(enrolled), "remove", biden).returncode == 0
    after = stored.load()
    assert after.names == ["Barack Obama"] and biden not in after.person_ids
    opened = unseal(stored.path.read_bytes(), stored.key(), "gallery", "test")
    everything = state_bytes(tmp_path / "state") + opened
    assert not any(form in everything for form in readable_forms(["Joe Biden", biden], biden_rows))


@pytest.mark.parametrize("problem", ["missing", "wrong", "exposed", "malformed"])
def test_a_missing_wrong_or_exposed_key_is_exit_2_with_the_reason(enrolled, tmp_path, problem):
    key_file = tmp_path / "state" / "gallery.key"
    if problem == "missing":
        key_file.unlink()
        expect = "no gallery key was found"
    elif problem == "wrong":
        key_file.write_text(encode_key(new_key()))
        expect = "cannot be opened with the gallery key"
    elif problem == "exposed":
        key_file.chmod(0o644)
        expect = "may be read by others (mode 644); chmod 600"
    else:
        key_file.write_text("not a key\n")
        expect = "not a key (expected 32 bytes as base64"
    for command in (("roster", "list"), ("identify", str(sample("obama-3.jpg"))), ("run",)):
        result = run_cli(*command, "-c", str(enrolled))
        assert result.returncode == 2, (command, result.stderr)
        assert expect in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_the_key_may_come_from_the_environment_or_a_systemd_credential(enrolled, tmp_path):
    key_file = tmp_path / "state" / "gallery.key"
    text = key_file.read_text()
    key_file.unlink()
    by_env = run_cli("roster", "-c", str(enrolled), "list", env={GALLERY_KEY.env_var: text.strip()})
    assert by_env.returncode == 0 and "Joe Biden" in by_env.stdout
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "gallery-key").write_text(text)
    by_credential = run_cli("doctor", "-c", str(enrolled), env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert "with the key from systemd credential gallery-key" in by_credential.stdout


def test_a_plaintext_gallery_is_refused_until_sealed_once_and_the_plaintext_is_gone(base_config, tmp_path):
    config = write_yaml(tmp_path / "config.yaml", base_config)
    old = Gallery("facenet-keras-ms1m-int8full-m00-prewhiten", 128)
    old.add("ada", "Ada Lovelace", np.eye(1, 128, dtype=np.float32), np.array([True]), old.model_id)
    path = tmp_path / "state" / "gallery.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(old.to_bytes())  # the format galleries had before sealing
    refused = run_cli("roster", "-c", str(config), "list")
    assert refused.returncode == 2 and "facecheck roster seal" in refused.stderr
    sealed = run_cli("roster", "-c", str(config), "seal")
    assert sealed.returncode == 0, sealed.stderr
    assert not any(form in path.read_bytes() for form in readable_forms(["Ada Lovelace"], old.embeddings))
    assert "Ada Lovelace" in run_cli("roster", "-c", str(config), "list").stdout
    assert "sealed already" in run_cli("roster", "-c", str(config), "seal").stdout


def test_rekey_seals_under_a_new_key_and_keeps_the_old_one_aside(enrolled, tmp_path):
    key_file = tmp_path / "state" / "gallery.key"
    old_key = key_file.read_text()
    result = run_cli("roster", "-c", str(enrolled), "rekey")
    assert result.returncode == 0, result.stderr
    assert key_file.read_text() != old_key and (tmp_path / "state" / "gallery.key.old").read_text() == old_key
    assert len(run_cli("roster", "-c", str(enrolled), "list").stdout.splitlines()) == 2


def test_sealed_data_is_bound_to_its_purpose_and_its_bytes():
    key = Key(new_key(), "test")
    blob = seal(b"roster bytes", key.value, "roster")
    assert unseal(blob, key, "roster", "x") == b"roster bytes"
    with pytest.raises(SealError, match="the wrong key, or the data was changed"):
        unseal(blob, key, "gallery", "x")  # a roster cannot pass as a gallery
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(SealError):
        unseal(bytes(tampered), key, "roster", "x")


def test_keys_generate_writes_owner_only_files_and_never_overwrites(tmp_path):
    result = run_cli("keys", "generate", "signing", "--out", str(tmp_path / "station.key"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "station.key").stat().st_mode & 0o777 == 0o600 and (tmp_path / "station.pub").is_file()
    again = run_cli("keys", "generate", "signing", "--out", str(tmp_path / "station.key"))
    assert again.returncode == 2 and "already there" in again.stderr
    assert os.path.getsize(tmp_path / "station.key") == 45
