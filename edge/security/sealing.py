"""Face templates sealed at rest and on the wire: nobody who reads a file, a broker or a backup reads a face.

- At rest: the gallery (templates and names) is AES-256-GCM under the door's own key, which never lies in
  the same file; it comes from where every secret comes from (security.secrets: `FACECHECK_GALLERY_KEY`, else
  the systemd credential `gallery-key`, else `privacy.gallery_key_file`, mode 0600). A missing or wrong key is
  an error (exit 2), never a fall-back to plaintext.
- On the wire: a site roster is AES-256-GCM under the site's roster key and its manifest is signed with the
  enrolment station's Ed25519 key; a door holds only the public half, so a key taken from a door cannot
  publish a roster.
- Capture embeddings are sealed to the backend's X25519 public key (ephemeral X25519, HKDF-SHA256,
  AES-256-GCM), so only the backend reads them (examples/backend_subscriber.py: `open_sealed`).

Keys are 32 random bytes, stored base64 on one line (`facecheck keys generate`).
"""

from __future__ import annotations

import base64
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from edge.errors import BadInputError

log = logging.getLogger(__name__)

MAGIC = b"FCSEAL1\n"
NONCE_BYTES = 12
KEY_BYTES = 32
EMBEDDING_ALG = "X25519-HKDF-SHA256-AES256GCM"


class SealError(BadInputError):
    """A key is missing, malformed or wrong, or sealed data was tampered with; the message names which."""


@dataclass(frozen=True)
class Key:
    value: bytes
    source: str  # where it came from, for doctor and error messages


def encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode() + "\n"


def decode_key(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != KEY_BYTES:
        raise SealError(f"{where}: not a key (expected {KEY_BYTES} bytes as base64 on one line); "
                        "make one with `facecheck keys generate`")
    return raw


def read_key_file(path: Path, what: str) -> Key:
    """A key file, refused where others than its owner may read it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except FileNotFoundError:
        raise SealError(f"{path}: {what} not found; make one with `facecheck keys generate` or set the "
                        "path in config.yaml (privacy)") from None
    except OSError as exc:
        raise SealError(f"{path}: {what} not readable ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SealError(f"{path}: {what} may be read by others (mode {stat.S_IMODE(mode):o}); chmod 600 {path}")
    return Key(decode_key(text, str(path)), f"file {path}")


def write_key_file(path: Path, raw: bytes) -> None:
    """Create a key file readable by its owner only; never overwrites one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SealError(f"{path}: a key is already there; move it away first (it may still seal data)") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(encode_key(raw))
        handle.flush()
        os.fsync(handle.fileno())


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def gallery_key(key_file: Path | None, env: dict[str, str] | None = None) -> Key | None:
    """The door's gallery key from the first source that has one (security.secrets: environment, systemd
    credential, then the 0600 key file); None where no source holds a key."""
    from edge.security.secrets import GALLERY_KEY, resolve

    secret = resolve(GALLERY_KEY, key_file, env)
    return None if secret is None else Key(decode_key(secret.text, secret.source), secret.source)


def door_gallery_key(key_file: Path, create: bool = False) -> Key | None:
    """gallery_key(); with create, a new key file when no source holds one (a door's first enrolment)."""
    key = gallery_key(key_file)
    if key is None and create:
        write_key_file(key_file, new_key())
        log.warning("created the gallery key %s (0600): without it the gallery cannot be read; see "
                    "docs/operations.md for keeping it in a systemd credential", key_file)
        key = read_key_file(key_file, "gallery key")
    return key


def seal(data: bytes, key: bytes, purpose: str) -> bytes:
    """MAGIC + nonce + AES-256-GCM(data); the purpose is authenticated, so a roster cannot pass as a
    gallery or the reverse."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, data, MAGIC + purpose.encode())


def is_sealed(data: bytes) -> bool:
    return data.startswith(MAGIC)


def unseal(blob: bytes, key: Key, purpose: str, where: str) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not is_sealed(blob) or len(blob) < len(MAGIC) + NONCE_BYTES + 16:
        raise SealError(f"{where}: not sealed data")
    nonce, body = blob[len(MAGIC):len(MAGIC) + NONCE_BYTES], blob[len(MAGIC) + NONCE_BYTES:]
    try:
        return AESGCM(key.value).decrypt(nonce, body, MAGIC + purpose.encode())
    except InvalidTag:
        raise SealError(f"{where}: cannot be opened with the {purpose} key from {key.source}: the wrong key, "
                        "or the data was changed") from None


# --------------------------------------------------------------------------- signatures (site rosters)


def signing_key(path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(read_key_file(path, "roster signing key").value)


def verify_key(path: Path):
    """An Ed25519 public key (public, so any file mode will do)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        text = path.read_text()
    except OSError as exc:
        raise SealError(f"{path}: roster verify key not readable ({exc.strerror}); copy the enrolment "
                        "station's .pub file there") from None
    return Ed25519PublicKey.from_public_bytes(decode_key(text, str(path)))


def public_bytes(private) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign(private, message: bytes) -> str:
    return base64.b64encode(private.sign(message)).decode()


def verified(public, message: bytes, signature: str) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        public.verify(base64.b64decode(signature, validate=True), message)
        return True
    except (InvalidSignature, ValueError):
        return False


# --------------------------------------------------------------------------- capture embeddings


def backend_public_key(path: Path):
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    try:
        text = path.read_text()
    except OSError as exc:
        raise SealError(f"{path}: backend public key not readable ({exc.strerror})") from None
    return X25519PublicKey.from_public_bytes(decode_key(text, str(path)))


def _box_key(shared: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=b"facecheck capture embedding").derive(shared)


def seal_to(public, data: bytes) -> dict:
    """data sealed to an X25519 public key: only the holder of its private key can open it."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    ephemeral = X25519PrivateKey.generate()
    nonce = os.urandom(NONCE_BYTES)
    epk = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ciphertext = AESGCM(_box_key(ephemeral.exchange(public))).encrypt(nonce, data, epk)
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return {"alg": EMBEDDING_ALG, "epk": b64(epk), "nonce": b64(nonce), "ciphertext": b64(ciphertext)}


def open_sealed(private_raw: bytes, sealed: dict) -> bytes:
    """The backend's side of seal_to (the recipe examples/backend_subscriber.py documents)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    epk = base64.b64decode(sealed["epk"])
    shared = X25519PrivateKey.from_private_bytes(private_raw).exchange(X25519PublicKey.from_public_bytes(epk))
    return AESGCM(_box_key(shared)).decrypt(base64.b64decode(sealed["nonce"]),
                                            base64.b64decode(sealed["ciphertext"]), epk)


def generate(kind: str, out: Path) -> list[Path]:
    """New key files: gallery/roster (one secret key), signing/backend (a secret .key and its .pub)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    if kind in ("gallery", "roster"):
        write_key_file(out, new_key())
        return [out]
    private = Ed25519PrivateKey.generate() if kind == "signing" else X25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    write_key_file(out, raw)
    pub = out.with_suffix(".pub")
    pub.write_text(encode_key(public_bytes(private)))
    return [out, pub]
