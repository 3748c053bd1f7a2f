"""The enrolled roster: embeddings, person ids and names, persisted sealed, without pickle, atomically.

Inside, the roster is a NumPy .npz read with allow_pickle=False, so loading a gallery can never run code;
on disk that .npz is sealed (AES-256-GCM, edge/security/sealing.py) under the door's gallery key, so the file alone
gives no name and no template. A plaintext gallery from before is refused until `facecheck roster seal`.
"""

from __future__ import annotations

import io
import re
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.atomic import atomic_write
from edge.config import Config
from edge.errors import BadInputError, InputError
from edge.identity.fusion import fusion_parts, join
from edge.security.sealing import Key, SealError, door_gallery_key, is_sealed, new_key, seal, unseal, write_key_file

FORMAT_VERSION = 1


class GalleryError(BadInputError):
    """A gallery file is corrupt, from another model, or an operation on it is invalid."""


# person_id flows into every event a backend stores: letters, digits, '.', '_', '-', at most 64, not
# only dots. A name is what people are called: printable, at most 100 characters, no control characters.
PERSON_ID_PATTERN = re.compile(r"(?!\.+$)[A-Za-z0-9._-]{1,64}")
MAX_NAME_CHARS = 100


def check_person_id(value: str) -> str:
    if not isinstance(value, str) or not PERSON_ID_PATTERN.fullmatch(value):
        raise GalleryError(f"person_id {value!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-'")
    return value


def check_name(value: str) -> str:
    if (not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS
            or any(not ch.isprintable() for ch in value)):
        raise GalleryError(f"name {value!r} is not allowed: 1-{MAX_NAME_CHARS} printable characters, "
                           "no control characters")
    return value


@dataclass
class Templates:
    """One embedder's templates of the gallery's people (labels index the gallery's person_ids)."""

    dim: int
    embeddings: np.ndarray
    labels: np.ndarray
    original: np.ndarray


@dataclass
class Adapted:
    """Templates a door learned from its own confirmed visits (edge/recognition/adaptation.py), for one embedder.

    Kept apart from the enrolled templates on purpose: they count when a face is matched (they are the door's own
    camera, light and angle), never when the threshold is set (the roster's bound and calibration read enrolled
    photos only), and never train the SVC; and a visit is judged against the enrolled photos alone before it may
    become one, so they cannot drift a person towards a look-alike.
    """

    model_id: str
    dim: int
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    added_at: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))  # unix seconds

    def __post_init__(self) -> None:
        if self.embeddings.size == 0:
            self.embeddings = np.zeros((0, self.dim), np.float32)

    def keep(self, rows: np.ndarray) -> None:
        """Only the rows (a mask) stay."""
        self.embeddings, self.labels, self.added_at = self.embeddings[rows], self.labels[rows], self.added_at[rows]


@dataclass
class Gallery:
    """The roster of one door or site. The matcher reads the templates of one embedder (`model_id`, the one the
    door runs); `others` holds the same people's templates from other embedders the enrolment also ran
    (`embedder.enrol_also`), so pointing `embedder.model` at one of them needs no re-enrolment (`select`)."""

    model_id: str
    dim: int
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # N x dim, L2-normalised
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # N, index into person_ids
    original: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # N, False for augmented variants
    person_ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    version: int = 0
    others: dict[str, Templates] = field(default_factory=dict)
    adapted: Adapted | None = None  # learned at this door from confirmed visits, for adapted.model_id only

    def __post_init__(self) -> None:
        if self.embeddings.size == 0:
            self.embeddings = np.zeros((0, self.dim), np.float32)

    def adapted_templates(self) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings, labels) learned for the embedder in use; none for another model's."""
        if self.adapted is None or self.adapted.model_id != self.model_id or not len(self.adapted.labels):
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.int32)
        return self.adapted.embeddings, self.adapted.labels

    def adapted_counts(self) -> dict[str, int]:
        """person_id -> templates learned at the door (for the embedder they were learned with)."""
        labels = self.adapted.labels if self.adapted is not None else np.zeros(0, np.int32)
        return {pid: int((labels == i).sum()) for i, pid in enumerate(self.person_ids)}

    def carry_adapted(self, old: Gallery) -> int:
        """A new site roster keeps what this door learned (`old`'s learned templates) for the people it still holds,
        matched by person id: learned templates are the door's own and never travel in a roster. How many stayed."""
        if old.adapted is None:
            return 0
        a = old.adapted
        index = {pid: i for i, pid in enumerate(self.person_ids)}
        stay = np.array([old.person_ids[label] in index for label in a.labels], bool)
        labels = np.array([index[old.person_ids[label]] for label in a.labels[stay]], np.int32)
        self.adapted = Adapted(a.model_id, a.dim, a.embeddings[stay], labels, a.added_at[stay]) if stay.any() else None
        return int(stay.sum())

    def adapt(self, person_id: str, vector: np.ndarray, at: float, keep: int) -> int:
        """Add a template learned from a visit; the person keeps at most `keep` of them (the oldest leave first;
        enrolled templates never do). Returns how many were evicted. The roster's version does not change: it names
        what was enrolled (a site roster's version on a door that follows one), not what the door learned."""
        index = self.person_ids.index(person_id)
        if self.adapted is None or self.adapted.model_id != self.model_id:
            self.adapted = Adapted(self.model_id, self.dim)
        a = self.adapted
        vector = np.asarray(vector, np.float32).reshape(1, self.dim)
        a.embeddings = np.concatenate([a.embeddings, vector / max(float(np.linalg.norm(vector)), 1e-12)])
        a.labels = np.concatenate([a.labels, np.array([index], np.int32)])
        a.added_at = np.concatenate([a.added_at, np.array([at], np.float64)])
        mine = np.nonzero(a.labels == index)[0]
        evict = mine[np.argsort(a.added_at[mine], kind="stable")][:max(0, len(mine) - keep)]
        stay = np.ones(len(a.labels), bool)
        stay[evict] = False
        a.keep(stay)
        return len(evict)

    def reset_adapted(self, person_id: str | None = None) -> int:
        """Forget what the door learned (of one person, or of everyone); how many templates went."""
        if self.adapted is None:
            return 0
        a = self.adapted
        if person_id is None:
            gone = len(a.labels)
            self.adapted = None
        else:
            if person_id not in self.person_ids:
                raise GalleryError(f"no person with id {person_id!r} in the roster")
            stay = a.labels != self.person_ids.index(person_id)
            gone = int((~stay).sum())
            a.keep(stay)
        return gone

    @property
    def people(self) -> int:
        return len(self.person_ids)

    def name_of(self, person_id: str) -> str:
        return self.names[self.person_ids.index(person_id)]

    def counts(self) -> dict[str, tuple[int, int]]:
        """person_id -> (photos, embeddings including augmented)."""
        result = {}
        for i, pid in enumerate(self.person_ids):
            mask = self.labels == i
            result[pid] = (int((mask & self.original).sum()), int(mask.sum()))
        return result

    @property
    def models(self) -> list[str]:
        """Every embedder whose templates the gallery holds, the one in use first."""
        return [self.model_id, *self.others]

    def add(self, person_id: str, name: str, embeddings: np.ndarray, original: np.ndarray, model_id: str,
            also: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> list[str]:
        """A person's templates for the model in use, and (`also`) for other embedders: model id -> (embeddings,
        original flags). Every model's templates must hold every person, or a switch to it would turn the missing
        into strangers: a model not yet held joins only with the roster's first person, and a model this enrolment
        did not compute is dropped. Returns what was not kept, and why, for the enrolment report."""
        if model_id != self.model_id:
            raise GalleryError(f"embeddings from model {model_id!r} cannot join a gallery of model {self.model_id!r}")
        check_person_id(person_id)
        check_name(name)
        embeddings = np.asarray(embeddings, np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim or len(embeddings) == 0:
            raise GalleryError(f"expected N x {self.dim} embeddings, got {embeddings.shape}")
        also = {m: (np.asarray(v, np.float32), np.asarray(f, bool)) for m, (v, f) in (also or {}).items()}
        for other, (vectors, _flags) in also.items():
            known = self.others.get(other)
            if vectors.ndim != 2 or len(vectors) == 0 or (known is not None and vectors.shape[1] != known.dim):
                raise GalleryError(f"expected N x {known.dim if known else 'D'} embeddings for {other}, got {vectors.shape}")
        first = self.people == 0 or self.person_ids == [person_id]
        notes = [f"{other}: not stored, the roster's other people have no {other} templates (re-enrol everyone "
                 "with embedder.enrol_also naming it)" for other in also if other not in self.others and not first]
        notes += [f"{other}: templates dropped, this enrolment did not compute them (embedder.enrol_also)"
                  for other in self.others if other not in also]
        for other in [m for m in self.others if m not in also]:
            del self.others[other]
        if person_id in self.person_ids:
            index = self.person_ids.index(person_id)
            self.names[index] = name
        else:
            index = len(self.person_ids)
            self.person_ids.append(person_id)
            self.names.append(name)
        self.embeddings, self.labels, self.original = _appended(self.embeddings, self.labels, self.original,
                                                                embeddings, index, original)
        for other, (vectors, flags) in also.items():
            if other not in self.others and not first:
                continue
            t = self.others.setdefault(other, Templates(vectors.shape[1], np.zeros((0, vectors.shape[1]), np.float32),
                                                        np.zeros(0, np.int32), np.zeros(0, bool)))
            t.embeddings, t.labels, t.original = _appended(t.embeddings, t.labels, t.original, vectors, index, flags)
        self.version += 1
        return notes

    def select(self, model_id: str, where: str = "the gallery") -> Gallery:
        """The same roster read through another embedder's templates, or through several joined (a fused id,
        edge/identity/fusion.py): no re-enrolment."""
        if model_id == self.model_id:
            return self
        parts = fusion_parts(model_id)
        if parts is not None:
            return self._fused(model_id, parts, where)
        if model_id not in self.others:
            raise GalleryError(f"{where}: gallery was enrolled with model {self.model_id!r}"
                               + (f" (and {', '.join(self.others)})" if self.others else "")
                               + f" but the embedder is {model_id!r}; re-enrol with this model, point embedder.model "
                               "at one of those, or enrol with embedder.enrol_also naming this model")
        chosen = self.others[model_id]
        others = {m: t for m, t in self.others.items() if m != model_id}
        if fusion_parts(self.model_id) is None:  # a fused view's templates are joined on reading, never kept
            others[self.model_id] = Templates(self.dim, self.embeddings, self.labels, self.original)
        return Gallery(model_id, chosen.dim, chosen.embeddings, chosen.labels, chosen.original, list(self.person_ids),
                       list(self.names), self.version, others, self.adapted)

    def _fused(self, model_id: str, parts: list[str], where: str) -> Gallery:
        """The roster through the fused identity: each person's templates of every part joined row by row (enrolment
        stores every model's templates of a photo and its variants in the same order)."""
        held = {self.model_id: Templates(self.dim, self.embeddings, self.labels, self.original), **self.others}
        missing = [part for part in parts if part not in held]
        if missing:
            raise GalleryError(f"{where}: the embedder fuses {', '.join(parts)} but the gallery holds no templates of "
                               f"{', '.join(missing)} (it holds {', '.join(held)}); re-enrol with embedder.fuse_with "
                               "naming the missing model (enrolment then stores every model's templates), or run the "
                               "gallery's model alone with embedder.fuse_with: []")
        first = held[parts[0]]
        if any(not np.array_equal(held[p].labels, first.labels) or not np.array_equal(held[p].original, first.original)
               for p in parts[1:]):
            raise GalleryError(f"{where}: the templates of {', '.join(parts)} do not line up photo by photo (enrolled "
                               "at different times?); re-enrol everyone with embedder.fuse_with set")
        joined = join([held[p].embeddings for p in parts])
        return Gallery(model_id, joined.shape[1], joined, first.labels.copy(), first.original.copy(),
                       list(self.person_ids), list(self.names), self.version, held, self.adapted)

    def remove(self, person_id: str) -> None:
        """Erase a person: every embedding of theirs leaves the gallery."""
        if person_id not in self.person_ids:
            raise GalleryError(f"no person with id {person_id!r} in the roster")
        index = self.person_ids.index(person_id)
        self.embeddings, self.labels, self.original = _without(self.embeddings, self.labels, self.original, index)
        for t in self.others.values():
            t.embeddings, t.labels, t.original = _without(t.embeddings, t.labels, t.original, index)
        if self.adapted is not None:
            a = self.adapted
            a.embeddings, a.labels, a.added_at = _without(a.embeddings, a.labels, a.added_at, index)
        del self.person_ids[index], self.names[index]
        self.version += 1

    def to_bytes(self) -> bytes:
        """The roster as an uncompressed, pickle-free .npz (what is sealed at rest and on the wire). A fused view is
        kept as its models' own templates (what the door learned through it stays as it is)."""
        parts = fusion_parts(self.model_id)
        if parts is not None:
            return self.select(parts[0]).to_bytes()
        buffer = io.BytesIO()
        np.savez(
            buffer,
            format_version=np.int32(FORMAT_VERSION),
            model_id=np.str_(self.model_id),
            dim=np.int32(self.dim),
            version=np.int64(self.version),
            embeddings=self.embeddings.astype(np.float32),
            labels=self.labels.astype(np.int32),
            original=self.original.astype(bool),
            person_ids=np.array(self.person_ids, dtype=np.str_),
            names=np.array(self.names, dtype=np.str_),
            others=np.int32(len(self.others)),
            **self._adapted_fields(),
            **{f"other{i}_{key}": value for i, (model, t) in enumerate(self.others.items()) for key, value in (
                ("model_id", np.str_(model)), ("dim", np.int32(t.dim)), ("embeddings", t.embeddings.astype(np.float32)),
                ("labels", t.labels.astype(np.int32)), ("original", t.original.astype(bool)))},
        )
        return buffer.getvalue()

    def _adapted_fields(self) -> dict[str, np.ndarray]:
        a = self.adapted
        if a is None:
            return {}
        return {"adapted_model_id": np.array(a.model_id), "adapted_dim": np.array(a.dim, np.int32),
                "adapted_embeddings": a.embeddings.astype(np.float32), "adapted_labels": a.labels.astype(np.int32),
                "adapted_at": a.added_at.astype(np.float64)}

    def save(self, path: Path, key: Key) -> None:
        """Sealed under key, and atomic: a reader sees the old file or the new one, never half of one."""
        sealed = seal(self.to_bytes(), key.value, "gallery")
        atomic_write(path, lambda handle: handle.write(sealed))

    @classmethod
    def load(cls, path: Path, key: Key | None) -> Gallery:
        """The sealed gallery at path, opened with key; a plaintext or unopenable file is an error."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise GalleryError(f"{path}: gallery file not found; enrol people with `facecheck enroll`") from None
        except OSError as exc:
            raise GalleryError(f"{path}: not readable ({exc.strerror})") from None
        if not is_sealed(data) and data.startswith(b"PK"):
            raise GalleryError(f"{path}: a plaintext gallery (written before galleries were sealed): run "
                               "`facecheck roster seal` once to seal it under this door's key")
        if not is_sealed(data):
            raise GalleryError(f"{path}: not a gallery (neither sealed nor one from before sealing): a corrupt "
                               "file; restore a backup or re-enrol")
        if key is None:
            raise SealError(f"{path}: the gallery is sealed but no gallery key was found: set "
                            "FACECHECK_GALLERY_KEY, the systemd credential gallery-key, or "
                            "privacy.gallery_key_file to the key it was sealed with")
        return cls.from_bytes(unseal(data, key, "gallery", str(path)), str(path))

    @classmethod
    def load_plaintext(cls, path: Path) -> Gallery:
        """A gallery written before sealing (for `facecheck roster seal` only)."""
        return cls.from_bytes(Path(path).read_bytes(), str(path))

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Gallery:
        """A gallery from its .npz bytes, checked for consistency; GalleryError naming `where` otherwise."""
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:  # np.savez stores; deflate could be a zip bomb
                if any(member.compress_type != zipfile.ZIP_STORED for member in archive.infolist()):
                    raise GalleryError(f"{where}: compressed members; a gallery is written uncompressed by "
                                       "facecheck: restore a backup or re-enrol")
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                fields = {key: npz[key] for key in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise GalleryError(f"{where}: not a readable gallery ({exc}); restore a backup or re-enrol") from None
        needed = {"format_version", "model_id", "dim", "version", "embeddings", "labels", "original", "person_ids", "names"}
        if not needed <= set(fields):
            raise GalleryError(f"{where}: gallery lacks {sorted(needed - set(fields))}; restore a backup or re-enrol")
        if int(fields["format_version"]) != FORMAT_VERSION:
            raise GalleryError(f"{where}: gallery format {int(fields['format_version'])}, this build reads {FORMAT_VERSION}")
        dim = int(fields["dim"])
        embeddings, labels = fields["embeddings"], fields["labels"]
        person_ids, names = [str(s) for s in fields["person_ids"]], [str(s) for s in fields["names"]]
        consistent = (
            embeddings.ndim == 2 and embeddings.shape[1] == dim and embeddings.dtype == np.float32
            and labels.shape == (len(embeddings),) and fields["original"].shape == (len(embeddings),)
            and len(person_ids) == len(names) and len(set(person_ids)) == len(person_ids)
            and (labels.size == 0 or (labels.min() >= 0 and labels.max() < len(person_ids)))
            and np.isfinite(embeddings).all()
        )
        if not consistent:
            raise GalleryError(f"{where}: gallery arrays are inconsistent (corrupt file); restore a backup or re-enrol")
        others = {}
        for i in range(int(fields.get("others", 0))):  # a gallery from before several models: none
            keys = [f"other{i}_{k}" for k in ("model_id", "dim", "embeddings", "labels", "original")]
            if not set(keys) <= set(fields):
                raise GalleryError(f"{where}: gallery lacks {sorted(set(keys) - set(fields))}; restore a backup or re-enrol")
            model, other_dim, vectors, other_labels, flags = (fields[k] for k in keys)
            if not (vectors.ndim == 2 and vectors.shape[1] == int(other_dim) and vectors.dtype == np.float32
                    and other_labels.shape == (len(vectors),) and flags.shape == (len(vectors),)
                    and (other_labels.size == 0 or (other_labels.min() >= 0 and other_labels.max() < len(person_ids)))
                    and np.isfinite(vectors).all()):
                raise GalleryError(f"{where}: the {str(model)!r} templates are inconsistent (corrupt file); restore a "
                                   "backup or re-enrol")
            others[str(model)] = Templates(int(other_dim), vectors, other_labels.astype(np.int32), flags.astype(bool))
        adapted = None
        keys = ["adapted_model_id", "adapted_dim", "adapted_embeddings", "adapted_labels", "adapted_at"]
        if "adapted_model_id" in fields:  # a gallery from before doors learned from visits has none
            if not set(keys) <= set(fields):
                raise GalleryError(f"{where}: gallery lacks {sorted(set(keys) - set(fields))}; restore a backup or re-enrol")
            model, adapted_dim, vectors, adapted_labels, added_at = (fields[k] for k in keys)
            if not (vectors.ndim == 2 and vectors.shape[1] == int(adapted_dim) and vectors.dtype == np.float32
                    and adapted_labels.shape == added_at.shape == (len(vectors),)
                    and (adapted_labels.size == 0 or (adapted_labels.min() >= 0
                                                      and adapted_labels.max() < len(person_ids)))
                    and np.isfinite(vectors).all()):
                raise GalleryError(f"{where}: the learned templates are inconsistent (corrupt file); restore a backup "
                                   "or reset them with `facecheck roster reset-adapted`")
            adapted = Adapted(str(model), int(adapted_dim), vectors, adapted_labels.astype(np.int32),
                              added_at.astype(np.float64))
        return cls(model_id=str(fields["model_id"]), dim=dim, embeddings=embeddings, labels=labels.astype(np.int32),
                   original=fields["original"].astype(bool), person_ids=person_ids, names=names,
                   version=int(fields["version"]), others=others, adapted=adapted)

    @classmethod
    def load_or_new(cls, path: Path, model_id: str, dim: int, key: Key | None) -> Gallery:
        """The gallery at path (which must match model_id), or an empty one if there is none yet."""
        if not path.exists():
            return cls(model_id=model_id, dim=dim)
        return cls.load(path, key).select(model_id, str(path))


def _appended(embeddings: np.ndarray, labels: np.ndarray, original: np.ndarray, vectors: np.ndarray, index: int,
              flags: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One model's template arrays with a person's vectors (L2-normalised) added under label `index`."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (np.concatenate([embeddings, vectors / np.maximum(norms, 1e-12)]),
            np.concatenate([labels, np.full(len(vectors), index, np.int32)]),
            np.concatenate([original, np.asarray(flags, bool)]))


def _without(embeddings: np.ndarray, labels: np.ndarray, per_row: np.ndarray, index: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One model's template arrays (embeddings, labels and a per-row array: original flags, or when learned)
    without the person under label `index` (later labels move down by one)."""
    keep = labels != index
    kept = labels[keep]
    return embeddings[keep], np.where(kept > index, kept - 1, kept).astype(np.int32), per_row[keep]


def new_person_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class GalleryFile:
    """Where a door's gallery lives and the key it is sealed under: the one way every path (enrolment,
    commands, the site roster, the CLI, doctor) reads and writes it. The first save on a door without a
    key creates one (privacy.gallery_key_file, 0600); a sealed gallery without its key is an error."""

    path: Path
    key_file: Path

    @classmethod
    def from_config(cls, config: Config) -> GalleryFile:
        """matcher.gallery and its key file (privacy.gallery_key_file, else <gallery>.key beside it)."""
        gallery = config.matcher.gallery
        return cls(gallery, config.privacy.gallery_key_file or gallery.with_suffix(".key"))

    def key(self, create: bool = False) -> Key | None:
        return door_gallery_key(self.key_file, create)

    def key_source(self) -> str:
        """Where the gallery key comes from, for messages and doctor."""
        key = self.key()
        return key.source if key is not None else "nowhere (no gallery key yet)"

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> Gallery:
        return Gallery.load(self.path, self.key())

    def load_or_new(self, model_id: str, dim: int) -> Gallery:
        return Gallery.load_or_new(self.path, model_id, dim, None if not self.path.exists() else self.key())

    def save(self, gallery: Gallery) -> None:
        key = self.key(create=True)
        if key is None:  # door_gallery_key(create=True) makes one where no source holds one
            raise SealError(f"{self.key_file}: no gallery key could be made")
        gallery.save(self.path, key)

    def seal_plaintext(self) -> str:
        """`roster seal`: a plaintext gallery from before galleries were sealed, sealed in place (the plaintext
        file is replaced atomically). Says what it did."""
        if not self.path.exists():
            raise InputError(f"roster seal: {self.path} does not exist; nothing to seal")
        if is_sealed(self.path.read_bytes()):
            return f"{self.path} is sealed already (key: {self.key_source()})"
        gallery = Gallery.load_plaintext(self.path)
        self.save(gallery)
        return (f"sealed {self.path} ({gallery.people} people) under the gallery key from {self.key_source()}; "
                "the plaintext file is gone (replaced in place)")

    def rekey(self) -> str:
        """`roster rekey`: the sealed gallery under a fresh key file, the old key kept beside it as .old until the
        operator removes it. Only a key that comes from the key file can be rotated here. Says what it did."""
        if not self.path.exists():
            raise InputError(f"roster rekey: {self.path} does not exist; nothing to seal")
        if not is_sealed(self.path.read_bytes()):
            raise InputError(f"roster rekey: {self.path} is plaintext; run `facecheck roster seal` first")
        gallery = self.load()
        if not self.key_file.exists() or self.key_source() != f"file {self.key_file}":
            raise InputError(f"roster rekey: the gallery key comes from {self.key_source()}, not the key file "
                             f"{self.key_file}: replace it at its source, then seal again")
        old = self.key_file.with_name(self.key_file.name + ".old")
        if old.exists():
            raise InputError(f"roster rekey: {old} is still there from the last rotation; remove it first")
        self.key_file.rename(old)
        write_key_file(self.key_file, new_key())
        self.save(gallery)
        return (f"re-sealed {self.path} under a new key in {self.key_file}; the old key is in {old}: delete it once "
                "backups sealed with it are gone")
