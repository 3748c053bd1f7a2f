"""One roster for a whole site: published once (retained, chunked), applied by every door atomically.

Layout under `facecheck/site/<site>/roster` (config `roster.topic`):
- `.../manifest` (retained, QoS 1): {"version", "model_id", "dim", "people", "bytes", "sha256", "chunks",
  "signature"}: signed (Ed25519) by the enrolment station over every other field
- `.../chunk/<i>` (retained, QoS 1): {"version", "index", "data": base64 of that slice of the sealed roster}

A door subscribes to the manifest's exact topic and, once a newer manifest verifies, to each chunk's exact
topic: RabbitMQ sends no retained message to a wildcard subscription. On a cluster that keeps retained
messages per node (RabbitMQ 3.10) the station publishes the same sealed package to every node.

The roster is the gallery's pickle-free .npz sealed (AES-256-GCM) under the site roster key, so the broker,
its backups and every client that reads the topic see ciphertext. A door applies a version only when its
manifest's signature verifies against the station's public key (privacy.roster_verify_key_file: a key
taken from a door cannot sign), it is newer than the one in force (an old version replayed is ignored),
every chunk has arrived, the checksum matches, it opens under the roster key, the file parses, and its
model id is the door's own; then it replaces its gallery (sealed under the door's own key) in one atomic
write, so a person removed from the site roster leaves no template on any door that applied it. Until
then it keeps serving the old roster.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass, field, replace

import numpy as np

from edge.identity.fusion import held_by
from edge.identity.gallery import Gallery, GalleryError, GalleryFile, check_name, check_person_id
from edge.security.sealing import Key, SealError, decode_key, seal, sign, unseal, verified

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
MAX_ROSTER_BYTES = 256 * 1024 * 1024


class RosterError(Exception):
    """A roster package is malformed, incomplete, corrupt or for another model."""


def roster_key(privacy, env: dict[str, str] | None = None) -> Key:
    """The site roster key, from where every secret comes from (security.secrets)."""
    from edge.security.secrets import ROSTER_KEY, resolve

    secret = resolve(ROSTER_KEY, privacy.roster_key_file, env)
    if secret is None:
        raise SealError(f"no site roster key: set {ROSTER_KEY.places()} (the key the site's enrolment station "
                        "seals rosters with)")
    return Key(decode_key(secret.text, "the site roster key"), f"the site roster key ({secret.source})")


def gallery_from_bytes(data: bytes) -> Gallery:
    try:
        gallery = Gallery.from_bytes(data, "roster package")
        for person_id, name in zip(gallery.person_ids, gallery.names):
            check_person_id(person_id)
            check_name(name)
        return gallery
    except GalleryError as exc:
        raise RosterError(str(exc)) from None


def signed_part(manifest: dict) -> bytes:
    """What the station signs: every manifest field but the signature, canonically encoded."""
    return json.dumps({k: v for k, v in manifest.items() if k != "signature"}, sort_keys=True,
                      separators=(",", ":")).encode()


def package(gallery: Gallery, version: int, key: Key, signer, chunk_bytes: int = CHUNK_BYTES
            ) -> tuple[dict, list[dict]]:
    """The signed manifest and the chunks of one roster version, sealed under the site roster key."""
    gallery.version = version
    data = seal(gallery.to_bytes(), key.value, "roster")
    pieces = [data[i:i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
    manifest = {"version": version, "model_id": gallery.model_id, "dim": gallery.dim, "people": gallery.people,
                "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "chunks": len(pieces),
                "models": gallery.models}
    manifest["signature"] = sign(signer, signed_part(manifest))
    chunks = [{"version": version, "index": i, "data": base64.b64encode(p).decode()} for i, p in enumerate(pieces)]
    return manifest, chunks


def manifest_models(manifest: dict) -> list[str]:
    """The embedders whose templates a roster holds; a manifest from before several models names one (and its
    signature covers only the fields it has, so the default is never written into it)."""
    return manifest.get("models", [manifest.get("model_id")])


def parse_manifest(payload: bytes) -> dict:
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RosterError(f"manifest is not JSON: {exc}") from None
    needed = {"version": int, "model_id": str, "dim": int, "people": int, "bytes": int, "sha256": str, "chunks": int,
              "signature": str}
    if not isinstance(body, dict):
        raise RosterError("manifest must be a JSON object")
    for key, kind in needed.items():
        if not isinstance(body.get(key), kind) or isinstance(body.get(key), bool):
            raise RosterError(f"manifest field {key!r} missing or not {kind.__name__}")
    models = manifest_models(body)
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models) or not 1 <= len(models) <= 8:
        raise RosterError("manifest field 'models' must be a list of 1 to 8 model ids")
    if not 0 < body["bytes"] <= MAX_ROSTER_BYTES or not 0 < body["chunks"] <= 10_000:
        raise RosterError(f"manifest size out of range ({body['bytes']} bytes in {body['chunks']} chunks)")
    return body


def parse_chunk(payload: bytes) -> tuple[int, int, bytes]:
    try:
        body = json.loads(payload)
        return int(body["version"]), int(body["index"]), base64.b64decode(body["data"], validate=True)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise RosterError(f"chunk is malformed: {exc}") from None


@dataclass
class RosterAssembler:
    """Collects manifest and chunks (in any order) and yields a verified gallery once complete.
    key: the site roster key; verify_key: the enrolment station's Ed25519 public key."""

    model_id: str
    key: Key
    verify_key: object
    manifest: dict | None = None
    chunks: dict[int, dict[int, bytes]] = field(default_factory=dict)  # version -> index -> bytes

    def add_manifest(self, manifest: dict) -> None:
        """A manifest already checked by parse_manifest."""
        if not verified(self.verify_key, signed_part(manifest), manifest["signature"]):
            raise RosterError(f"roster version {manifest['version']}: the manifest's signature does not verify "
                              "against privacy.roster_verify_key_file: not published by this site's enrolment "
                              "station (forged or altered)")
        if not held_by(self.model_id, manifest_models(manifest)):
            raise RosterError(f"roster version {manifest['version']} holds templates of model "
                              f"{', '.join(manifest_models(manifest))}; this device runs model {self.model_id!r}")
        self.manifest = manifest
        self.chunks = {v: c for v, c in self.chunks.items() if v == manifest["version"]}

    def add_chunk(self, payload: bytes, floor: int = 0) -> None:
        """floor: the version in force; chunks of it or older (another node's copy of a roster already
        applied) are not kept."""
        version, index, data = parse_chunk(payload)
        if version <= floor or (self.manifest is not None and version != self.manifest["version"]):
            return  # a leftover of another version
        self.chunks.setdefault(version, {})[index] = data

    def complete(self) -> Gallery | None:
        """The new gallery when every chunk is in and verified; RosterError if it is not acceptable."""
        m = self.manifest
        if m is None:
            return None
        got = self.chunks.get(m["version"], {})
        if any(i not in got for i in range(m["chunks"])):
            return None
        data = b"".join(got[i] for i in range(m["chunks"]))
        self.manifest, self.chunks = None, {}
        if len(data) != m["bytes"] or hashlib.sha256(data).hexdigest() != m["sha256"]:
            raise RosterError(f"roster version {m['version']}: checksum mismatch (corrupt or mixed chunks)")
        try:
            opened = unseal(data, self.key, "roster", f"roster version {m['version']}")
        except SealError as exc:
            raise RosterError(str(exc)) from None
        gallery = gallery_from_bytes(opened)
        if gallery.models != manifest_models(m) or gallery.dim != m["dim"] or not held_by(self.model_id, gallery.models):
            raise RosterError(f"roster version {m['version']}: gallery holds model {', '.join(gallery.models)}, "
                              f"not what the manifest says")
        gallery = gallery.select(self.model_id)
        if gallery.people != m["people"] or gallery.version != m["version"]:
            raise RosterError(f"roster version {m['version']}: contents disagree with the manifest")
        if not np.isfinite(gallery.embeddings).all():
            raise RosterError(f"roster version {m['version']}: non-finite embeddings")
        return gallery


class RosterFollower:
    """A door's side of the site roster: feeds retained parts to the assembler and, when a newer version
    is complete and verified, saves it and swaps the matcher; until then the old roster keeps serving.
    Every outcome is answered on <base>/roster/result."""

    def __init__(self, link, assembler: RosterAssembler, gallery_file: GalleryFile, current_version,
                 reload_gallery, jobs):
        self.link = link
        self.assembler = assembler
        self.gallery_file = gallery_file
        self.current_version = current_version  # () -> int
        self.reload_gallery = reload_gallery  # () -> edge.jobs.Outcome, on the jobs thread
        self.jobs = jobs  # edge.jobs.BackgroundJobs: the write and the matcher rebuild happen there
        # The version being written: on a cluster the same version comes once from every node's retained
        # copy, and the later copies must not apply it again while the first is still being saved.
        self.applying = 0

    def pump(self) -> None:
        import queue

        while True:
            try:
                part, payload = self.link.roster_messages.get_nowait()
            except queue.Empty:
                return
            if payload:  # an empty payload clears a chunk of an older version
                self._take(part, payload)

    def _take(self, part: str, payload: bytes) -> None:
        current = max(self.current_version(), self.applying)
        try:
            if part == "manifest":
                manifest = parse_manifest(payload)
                if manifest["version"] <= current:
                    log.debug("roster version %s is not newer than %s; ignored", manifest["version"], current)
                    return
                if self.assembler.manifest == manifest:
                    return  # another node's copy of the version being assembled
                self.assembler.add_manifest(manifest)
                self.link.subscribe_roster_chunks(manifest["chunks"])
            elif part.startswith("chunk/"):
                self.assembler.add_chunk(payload, floor=current)
            else:
                return
            gallery = self.assembler.complete()
        except RosterError as exc:
            log.error("roster refused, still serving version %d: %s", current, exc)
            self.link.publish_json("roster/result", {"ok": False, "error": str(exc), "version": current}, qos=1)
            return
        if gallery is None:
            return

        def write_and_rebuild():
            if self.gallery_file.exists():  # what this door learned from its visits stays with it
                try:
                    kept = gallery.carry_adapted(self.gallery_file.load())
                    log.info("roster version %d: %d learned templates kept", gallery.version, kept)
                except GalleryError as exc:
                    log.warning("roster version %d: the door's learned templates could not be read (%s); they "
                                "are dropped", gallery.version, exc)
            self.gallery_file.save(gallery)
            return self.reload_gallery()

        def answer(result: dict) -> None:
            self.applying = 0
            if result["ok"]:
                log.info("roster version %d applied: %d people", gallery.version, result["people"])
                result = {"ok": True, "error": None, "version": gallery.version, "people": result["people"]}
            else:
                result = {**result, "version": current}
            self.link.publish_json("roster/result", result, qos=1)

        self.applying = gallery.version
        self.jobs.submit(f"roster version {gallery.version}", write_and_rebuild, answer)


def follower(config, link, model_id: str, current_version, reload_gallery, jobs) -> RosterFollower | None:
    """The door's roster follower for roster.site, with the site's keys (None without a site). A missing or
    malformed key stops the start-up with the reason (exit 2), never a door that takes unsigned rosters."""
    from edge.identity.gallery import GalleryFile
    from edge.security.sealing import verify_key

    if not config.roster_topic:
        return None
    assembler = RosterAssembler(model_id, roster_key(config.privacy), verify_key(config.privacy.roster_verify_key_file))
    return RosterFollower(link, assembler, GalleryFile.from_config(config), current_version, reload_gallery, jobs)


def publish(client, topic: str, manifest: dict, chunks: list[dict], previous_chunks: int = 0,
            timeout: float = 30.0) -> None:
    """Publish one package's chunks first, then its manifest (all retained, QoS 1); clear chunks the old
    version had beyond."""
    infos = [client.publish(f"{topic}/chunk/{c['index']}", json.dumps(c), qos=1, retain=True) for c in chunks]
    infos += [client.publish(f"{topic}/chunk/{i}", b"", qos=1, retain=True)
              for i in range(len(chunks), previous_chunks)]
    infos.append(client.publish(f"{topic}/manifest", json.dumps(manifest), qos=1, retain=True))
    for info in infos:
        info.wait_for_publish(timeout)


def publish_to_nodes(config, client_id: str, topic: str, gallery: Gallery, version: int, key: Key, signer
                     ) -> tuple[dict | None, dict[str, str]]:
    """Publish one roster version, retained, to each broker of mqtt.brokers() (a cluster keeps retained
    messages per node). The version must be newer than any node already holds. Returns the manifest (None
    if no broker could be reached) and, per broker host:port, "published" or why not."""
    from edge.errors import InputError
    from edge.messaging.link import each_broker

    with each_broker(config, client_id) as (clients, nodes):
        previous = {name: read_retained_manifest(client, topic) for name, client in clients.items()}
        newest = max((m["version"] for m in previous.values() if m), default=None)
        if newest is not None and newest >= version:
            raise InputError(f"roster publish: version {version} is not newer than the published {newest}; "
                             "doors would ignore it")
        if not clients:
            return None, nodes
        # Sealed once: every node gets the same bytes, so a door may take chunks from one node's copy and
        # the manifest from another's.
        manifest, chunks = package(gallery, version, key, signer)
        for name, client in clients.items():
            old = previous[name]
            publish(client, topic, manifest, chunks, old["chunks"] if old else 0)
            nodes[name] = "published"
        return manifest, nodes


@dataclass
class PublishReport:
    topic: str
    manifest: dict | None  # None: no broker could be reached
    nodes: dict[str, str]  # host:port -> "published" or why not

    @property
    def unreachable(self) -> dict[str, str]:
        return {node: outcome for node, outcome in self.nodes.items() if outcome != "published"}


def publish_site_roster(config, gallery: Gallery, site: str | None = None, version: int | None = None
                        ) -> PublishReport:
    """`facecheck roster publish`: the enrolment station's gallery, sealed under the site roster key and signed
    with its signing key, retained on every broker of mqtt.hosts, not just one: RabbitMQ keeps retained
    messages per node, so a door gets the roster whichever node it reaches only if every node holds it (on one
    broker, or a bridged mosquitto, that is one publish). The version defaults to now in milliseconds."""
    import time

    from edge.errors import InputError
    from edge.security.sealing import signing_key

    site = site or config.roster.site
    if not site:
        raise InputError("roster publish: name the site with --site SITE or set roster.site in the config")
    if config.privacy.roster_signing_key_file is None:
        raise InputError("roster publish: set privacy.roster_signing_key_file (the enrolment station's Ed25519 key, "
                         "`facecheck keys generate signing`): doors apply only signed rosters")
    topic = config.roster_topic_of(site)
    version = version if version is not None else int(time.time() * 1000)
    key, signer = roster_key(config.privacy), signing_key(config.privacy.roster_signing_key_file)
    # templates a station learned from its own visits are its own (they stay door-local, like every door's)
    manifest, nodes = publish_to_nodes(config, f"facecheck-roster-publisher-{site}", topic,
                                       replace(gallery, adapted=None), version, key, signer)
    return PublishReport(topic, manifest, nodes)


def read_retained_manifest(client, topic: str, wait: float = 2.0) -> dict | None:
    """The manifest currently retained on the broker (None if there is none)."""
    import threading

    found: dict = {}
    got = threading.Event()

    def on_message(_client, _userdata, message):
        if message.payload:
            try:
                found.update(parse_manifest(message.payload))
            except RosterError:
                pass
        got.set()

    client.message_callback_add(f"{topic}/manifest", on_message)
    client.subscribe(f"{topic}/manifest", qos=1)
    got.wait(wait)
    client.unsubscribe(f"{topic}/manifest")
    client.message_callback_remove(f"{topic}/manifest")
    return found or None
