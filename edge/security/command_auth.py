"""Signed commands: an HMAC over the request with the site's key, a timestamp and a one-time nonce.

The broker's ACL is the first line (only an admin account may write `cmd/#`, docs/mqtt.md); a signature
is the second, so a leaked door password or a wide ACL still cannot enrol a stranger, erase a person or
pull a camera image. A signed request is a JSON envelope:

    {"signed": "<the command's JSON body, as a string>", "ts": <unix seconds>, "nonce": "<16-128 chars>",
     "hmac": "<hex HMAC-SHA256 of MESSAGE with the key>"}

    MESSAGE = "facecheck-command-v1\\n<device_id>\\n<command>\\n<ts>\\n<nonce>\\n<signed>"

so a request made for one door and one command is refused by every other door and command; `ts` must
lie within commands.max_clock_skew_s of the door's clock, and a nonce is accepted once (remembered on
disk for that window, so a restart does not reopen it). `facecheck sign-command` makes envelopes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path

from edge.atomic import atomic_write
from edge.config import CommandsConfig, ConfigError
from edge.errors import BadInputError

VERSION = "facecheck-command-v1"
MIN_KEY_CHARS = 32


class AuthError(BadInputError):
    """A request that is unsigned, badly signed, stale or replayed."""


def signing_key(config: CommandsConfig, env: dict[str, str] | None = None) -> bytes | None:
    """The command signing key, from where every secret comes from (security.secrets); None where none is set."""
    from edge.security.secrets import COMMAND_KEY, resolve

    secret = resolve(COMMAND_KEY, config.signing_key_file, env)
    key = secret.text if secret else None
    if key is not None and len(key) < MIN_KEY_CHARS:
        raise ConfigError(f"the command signing key has {len(key)} characters; use at least {MIN_KEY_CHARS} "
                          "random ones (e.g. `openssl rand -hex 32`)")
    return key.encode() if key is not None else None


def _mac(key: bytes, device_id: str, command: str, ts: int, nonce: str, signed: str) -> str:
    message = "\n".join((VERSION, device_id, command, str(ts), nonce, signed)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(key: bytes, device_id: str, command: str, body: dict, ts: int | None = None,
         nonce: str | None = None) -> dict:
    """The envelope for one command to one door."""
    signed = json.dumps(body, separators=(",", ":"))
    ts = int(time.time()) if ts is None else ts
    nonce = nonce or secrets.token_hex(16)
    return {"signed": signed, "ts": ts, "nonce": nonce, "hmac": _mac(key, device_id, command, ts, nonce, signed)}


class NonceLedger:
    """Nonces already accepted, with when they stop mattering; kept in a small JSON file."""

    def __init__(self, path: Path):
        self.path = path
        try:
            loaded = json.loads(path.read_text())
            self.seen = {str(k): float(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self.seen = {}

    def accept(self, nonce: str, expires: float, now: float) -> bool:
        """True the first time a nonce is offered; the ledger is written before the command runs."""
        self.seen = {n: t for n, t in self.seen.items() if t > now}
        if nonce in self.seen:
            return False
        self.seen[nonce] = expires
        text = json.dumps(self.seen).encode()
        atomic_write(self.path, lambda handle: handle.write(text))
        return True


def verify(key: bytes, device_id: str, command: str, envelope: dict, ledger: NonceLedger, max_skew_s: float,
           now: float | None = None) -> dict:
    """The command body inside a valid envelope; AuthError saying what is wrong otherwise."""
    now = time.time() if now is None else now
    if set(envelope) != {"signed", "ts", "nonce", "hmac"}:
        raise AuthError(f"command {command!r} must be signed: send {{signed, ts, nonce, hmac}} "
                        "(facecheck sign-command makes it)")
    signed, ts, nonce, mac = envelope["signed"], envelope["ts"], envelope["nonce"], envelope["hmac"]
    if not (isinstance(signed, str) and isinstance(ts, int) and isinstance(nonce, str) and isinstance(mac, str)
            and 16 <= len(nonce) <= 128):
        raise AuthError("signed envelope: 'signed' string, 'ts' integer, 'nonce' of 16-128 characters, 'hmac' hex")
    if not hmac.compare_digest(mac, _mac(key, device_id, command, ts, nonce, signed)):
        raise AuthError("signature does not match (wrong key, device, command, or a modified request)")
    if abs(now - ts) > max_skew_s:
        raise AuthError(f"request time {ts} is {abs(now - ts):.0f} s from this door's clock "
                        f"(allowed {max_skew_s:.0f} s); check both clocks")
    if not ledger.accept(nonce, ts + max_skew_s, now):
        raise AuthError("replayed request: this nonce was already used")
    try:
        body = json.loads(signed)
    except ValueError:
        raise AuthError("the signed body is not JSON") from None
    if not isinstance(body, dict):
        raise AuthError("the signed body must be a JSON object")
    return body
