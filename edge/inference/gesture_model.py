"""The learned gesture classifier: a small neural network over body-frame landmarks, as the seed's
Teachable Machine model was, trained on real people's poses and shipped as plain arrays.

Features: the upper body's landmarks (nose, ears, elbows, wrists, index fingers, hips) in the body frame
(origin between the shoulders, one unit = shoulder width, y up, +x towards the person's own left), each
with the pose model's visibility. Only the shoulders must be seen: a crossed forearm in front of the
chest is often given visibility 0.2-0.5 while its position is right, and the network learns how far to
trust an arm from its visibility (training hides landmarks at random for that reason).

The model file is an .npz of weights read with allow_pickle=False: no code is loaded from it. It carries
the training rows' provenance; `facecheck gestures train` writes a site's own (the packaged poses plus
the site's recordings) in the same format.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.atomic import atomic_write
from edge.errors import BadInputError
from edge.inference.pose import (
    LEFT_ELBOW,
    LEFT_HIP,
    LEFT_SHOULDER,
    LEFT_WRIST,
    RIGHT_ELBOW,
    RIGHT_HIP,
    RIGHT_SHOULDER,
    RIGHT_WRIST,
    body_coordinates,
)

PACKAGED = Path(__file__).resolve().parent.parent / "data" / "gestures"
DEFAULT_MODEL = PACKAGED / "model.npz"
DEFAULT_LANDMARKS = PACKAGED / "landmarks.npz"

# nose, left/right ear, elbow, wrist, index finger, hip (MediaPipe's 33-landmark numbering)
POINTS = (0, 7, 8, 13, 14, 15, 16, 19, 20, 23, 24)
# Positions in POINTS of the same points with left and right swapped: a mirrored person.
MIRROR = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9)
LEARNED = ("confirm", "reject", "capture", "none")
FEATURE_VERSION = 1
ARMS = (LEFT_ELBOW, RIGHT_ELBOW, LEFT_WRIST, RIGHT_WRIST)
TURNED_BELOW = 0.35  # shoulder width / shoulder-to-hip length; facing the camera 0.45-0.8 in the photos
ARMS_SEEN_FROM = 0.4  # mean visibility of elbows and wrists; no O, X or capture photo falls below it
COORD_LIMIT = 4.0  # body units; landmarks further out (guessed, off the frame) are clipped here
GESTURE_COPIES = 3  # augmented copies of an O, X or capture pose per copy of a near miss


class GestureError(BadInputError):
    """A gesture model or landmark file is unusable; the message names its path and the fix."""


def body_points(landmarks: np.ndarray, visibility: np.ndarray, min_visibility: float) -> np.ndarray | None:
    """(len(POINTS), 3): body-frame x, y and visibility; None where the body cannot show a gesture.

    That is: a shoulder not seen; a body turned sideways (shoulders narrower than TURNED_BELOW of the
    shoulder-to-hip length, where the hips are seen: the body frame then stretches every point); or arms
    barely seen (mean visibility of elbows and wrists below ARMS_SEEN_FROM: their positions are guesses).
    On real passers-by (OpenCV's vtest.avi) the network read 4 walking side views and a body cut by the
    frame's corner as X or capture without these; on the labelled photos they change no read."""
    if visibility[LEFT_SHOULDER] < min_visibility or visibility[RIGHT_SHOULDER] < min_visibility:
        return None
    d = body_coordinates(landmarks)
    if d is None or float(np.mean(visibility[list(ARMS)])) < ARMS_SEEN_FROM:
        return None
    if min(visibility[LEFT_HIP], visibility[RIGHT_HIP]) >= min_visibility:
        torso = float(np.linalg.norm((d[LEFT_HIP] + d[RIGHT_HIP]) / 2))  # in shoulder widths
        if 1.0 < TURNED_BELOW * torso:
            return None
    xy = np.clip(d[list(POINTS)], -COORD_LIMIT, COORD_LIMIT)
    return np.hstack([xy, visibility[list(POINTS), None]]).astype(np.float32)


def vector(points: np.ndarray) -> np.ndarray:
    """The network's input: x, y of each point, then each point's visibility."""
    return np.concatenate([points[:, :2].ravel(), points[:, 2]]).astype(np.float32)


def augment(points: np.ndarray, label: str, rng: np.random.Generator) -> np.ndarray:
    """One plausible variant of a real pose: mirrored (left and right swapped), scaled (a shoulder width
    misjudged by the pose model), turned in the image plane, jittered, and now and then one landmark hidden.
    An O is also opened up (`open_ring`)."""
    p = open_ring(points, rng) if label == "confirm" and rng.random() < 0.5 else points.copy()
    if rng.random() < 0.5:
        p = p[list(MIRROR)]
        p[:, 0] = -p[:, 0]
    angle = np.radians(rng.uniform(-12, 12))
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    p[:, :2] = (p[:, :2] @ turn.T) * rng.uniform(0.85, 1.15) + rng.normal(0, 0.04, (len(p), 2))
    if rng.random() < 0.3:
        hidden = rng.integers(len(p))
        p[hidden, 2] = rng.uniform(0.0, 0.3)
        p[hidden, :2] += rng.normal(0, 0.3, 2)
    if rng.random() < 0.25:  # framed from the waist up, as a door camera often is: the hips are guessed
        p[list(_HIPS), 2] = rng.uniform(0.0, 0.3, 2)
        p[list(_HIPS), :2] += rng.normal(0, 0.5, (2, 2))
    p[:, 2] = np.clip(p[:, 2] + rng.normal(0, 0.05, len(p)), 0, 1)
    p[:, :2] = np.clip(p[:, :2], -COORD_LIMIT, COORD_LIMIT)
    return p


# Positions in POINTS: left/right elbow, (wrist, index finger), hip.
_ELBOWS, _HANDS, _HIPS = (3, 4), ((5, 7), (6, 8)), (9, 10)


def open_ring(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An O with the hands apart and the arms rounded, from an O with the palms joined.

    The door's O allows hands apart by up to about a head's width (docs/gestures.md), but the photos show
    only joined palms: each hand moves outwards by up to 0.2 shoulder widths (a head is 0.4-0.5 wide, ear to
    ear, in the photos) and down by up to 0.4, staying above the head (the photos' wrists are 0.9-1.6 above
    the nose; hands on the head, a near miss, 0.4 at most), and each elbow out by up to 0.5 (a ring)."""
    p = points.copy()
    out, down, elbow = rng.uniform(0, 0.2), rng.uniform(0, 0.4), rng.uniform(0, 0.5)
    for sign, (wrist, index), e in zip((1.0, -1.0), _HANDS, _ELBOWS):  # +x is the person's left
        p[[wrist, index], 0] += sign * out
        p[[wrist, index], 1] -= down
        p[e, 0] += sign * elbow
    return p


@dataclass(frozen=True)
class GestureNetwork:
    """Standardise -> dense ReLU layers -> softmax over LEARNED, as plain arrays."""

    mean: np.ndarray
    scale: np.ndarray
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    labels: tuple[str, ...]
    meta: dict

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        h = (np.atleast_2d(x) - self.mean) / self.scale
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.maximum(h @ w + b, 0.0)
        logits = h @ self.weights[-1] + self.biases[-1]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: np.ndarray) -> list[str]:
        return [self.labels[i] for i in self.probabilities(x).argmax(axis=1)]

    def save(self, path: Path) -> None:
        layers = {f"w{i}": w for i, w in enumerate(self.weights)} | {f"b{i}": b for i, b in enumerate(self.biases)}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: np.savez(
            handle, mean=self.mean, scale=self.scale, labels=np.array(self.labels, dtype=np.str_),
            layers=np.int64(len(self.weights)), meta=np.array(json.dumps(self.meta, sort_keys=True)), **layers))

    @classmethod
    def load(cls, path: Path) -> GestureNetwork:
        try:
            with np.load(path, allow_pickle=False) as data:
                if "layers" not in data:
                    raise GestureError(
                        f"{path}: a gesture file of an older version (recorded samples, not a model); "
                        "record the samples again with `facecheck gestures record` and run `facecheck gestures train`")
                count = int(data["layers"])
                network = cls(data["mean"].astype(np.float32), data["scale"].astype(np.float32),
                              tuple(data[f"w{i}"].astype(np.float32) for i in range(count)),
                              tuple(data[f"b{i}"].astype(np.float32) for i in range(count)),
                              tuple(str(v) for v in data["labels"]), json.loads(str(data["meta"])))
        except FileNotFoundError:
            raise GestureError(f"{path}: no gesture model there; run `facecheck gestures train`, or set "
                                    "gestures.classifier: learned for the packaged one") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise GestureError(f"{path}: not a readable gesture model ({exc}); train it again with "
                                    "`facecheck gestures train`") from None
        width = 3 * len(POINTS)
        shapes_ok = (network.mean.shape == network.scale.shape == (width,) and network.weights[0].shape[0] == width
                     and network.weights[-1].shape[1] == len(network.labels)
                     and all(w.shape[1] == b.shape[0] for w, b in zip(network.weights, network.biases)))
        if network.meta.get("feature_version") != FEATURE_VERSION or not shapes_ok:
            raise GestureError(f"{path}: a gesture model for another feature layout; train it again with "
                                    "`facecheck gestures train`")
        unknown = set(network.labels) - set(LEARNED)
        if unknown:
            raise GestureError(f"{path}: unknown gesture labels {sorted(unknown)}; allowed {list(LEARNED)}")
        return network


def fit(points: np.ndarray, labels: np.ndarray, meta: dict, copies: int = 20, seed: int = 0,
        hidden: tuple[int, ...] = (32, 16)) -> GestureNetwork:
    """Train on real poses (N x len(POINTS) x 3) and augmented variants of each: `copies` of a none, and
    GESTURE_COPIES times as many of an O, X or capture, which are a few dozen photos against a thousand
    near misses (without it the ring O, taught only by augmentation, fell in and out of none from one
    retraining to the next)."""
    from sklearn.neural_network import MLPClassifier

    labels = np.asarray(labels).astype(str)
    if len(set(labels)) < 2:
        raise GestureError("training needs poses of at least two gestures")
    rng = np.random.default_rng(seed)
    made = [copies * (1 if label == "none" else GESTURE_COPIES) for label in labels]
    rows = [vector(p) for p in points] + [vector(augment(p, label, rng)) for p, label, n in zip(points, labels, made)
                                         for _ in range(n)]
    y = np.concatenate([labels, np.repeat(labels, made)])
    x = np.stack(rows)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    mlp = MLPClassifier(hidden_layer_sizes=hidden, alpha=1e-3, max_iter=400, early_stopping=False,
                        random_state=seed).fit((x - mean) / scale, y)
    counts = {str(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True))}
    weights, biases = list(mlp.coefs_), list(mlp.intercepts_)
    if len(mlp.classes_) == 2:  # one logistic output: the same as a softmax over (0, logit)
        weights[-1] = np.hstack([np.zeros_like(weights[-1]), weights[-1]])
        biases[-1] = np.concatenate([np.zeros_like(biases[-1]), biases[-1]])
    return GestureNetwork(mean.astype(np.float32), scale.astype(np.float32),
                          tuple(w.astype(np.float32) for w in weights),
                          tuple(b.astype(np.float32) for b in biases), tuple(str(c) for c in mlp.classes_),
                          {"feature_version": FEATURE_VERSION, "poses": counts, "augmented_copies": copies,
                           "hidden": list(hidden), "seed": seed, **meta})


# ------------------------------------------------------------------ the packaged landmark data


@dataclass(frozen=True)
class LandmarkSet:
    """Landmarks of labelled real photos (numbers, not photos), as `facecheck-convert gesture-landmarks`
    derives them: one row per photo, NaN where no body was found."""

    landmarks: np.ndarray  # N x 33 x 2, image pixels
    visibility: np.ndarray  # N x 33
    gesture: np.ndarray  # N, the door's gesture (LEARNED)
    source_class: np.ndarray  # N, the photo set's own class name
    source: np.ndarray  # N, the photo's path inside its set
    split: np.ndarray  # N, "train" or "heldout"
    meta: dict

    @property
    def found(self) -> np.ndarray:
        return np.isfinite(self.landmarks[:, 0, 0])

    def rows(self, split: str) -> np.ndarray:
        return np.nonzero(self.split == split)[0]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: np.savez_compressed(
            handle, landmarks=self.landmarks.astype(np.float32), visibility=self.visibility.astype(np.float32),
            gesture=self.gesture.astype(np.str_), source_class=self.source_class.astype(np.str_),
            source=self.source.astype(np.str_), split=self.split.astype(np.str_),
            meta=np.array(json.dumps(self.meta, sort_keys=True))))

    @classmethod
    def load(cls, path: Path = DEFAULT_LANDMARKS) -> LandmarkSet:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(data["landmarks"], data["visibility"], data["gesture"].astype(str),
                           data["source_class"].astype(str), data["source"].astype(str), data["split"].astype(str),
                           json.loads(str(data["meta"])))
        except FileNotFoundError:
            raise GestureError(f"{path}: the packaged gesture landmarks are missing; reinstall the package") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise GestureError(f"{path}: not a readable landmark file ({exc})") from None

    def points(self, indices: np.ndarray, min_visibility: float) -> tuple[np.ndarray, np.ndarray]:
        """Body-frame points and door gestures of the given rows that have a usable body."""
        kept, labels = [], []
        for i in indices:
            if not self.found[i]:
                continue
            p = body_points(self.landmarks[i], self.visibility[i], min_visibility)
            if p is not None:
                kept.append(p)
                labels.append(self.gesture[i])
        return np.stack(kept), np.array(labels)


# ------------------------------------------------------------------ a site's own recordings


SITE_WEIGHT = 3  # a site's recorded pose counts as this many of the packaged ones when training


def save_recordings(path: Path, points: np.ndarray, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: np.savez(handle, points=np.asarray(points, np.float32),
                                               labels=np.asarray(labels, dtype=np.str_),
                                               feature_version=np.int64(FEATURE_VERSION)))


def load_recordings(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(points N x len(POINTS) x 3, labels N) recorded by `facecheck gestures record`; never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "points" not in data or int(data.get("feature_version", -1)) != FEATURE_VERSION:
                raise GestureError(f"{path}: recorded by an older version (another landmark layout); delete it "
                                   "and record the samples again with `facecheck gestures record`")
            points, labels = data["points"].astype(np.float32), data["labels"].astype(str)
    except FileNotFoundError:
        raise GestureError(f"{path}: no gesture samples yet; record some with `facecheck gestures record`") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise GestureError(f"{path}: not a readable gesture samples file ({exc})") from None
    if points.ndim != 3 or points.shape[1:] != (len(POINTS), 3) or labels.shape != (len(points),) \
            or not np.isfinite(points).all():
        raise GestureError(f"{path}: gesture arrays are inconsistent (corrupt file); record the samples again")
    unknown = set(labels) - set(LEARNED)
    if unknown:
        raise GestureError(f"{path}: unknown gesture labels {sorted(unknown)}; allowed {list(LEARNED)}")
    return points, labels


def train_site(recordings: Path, out: Path, min_visibility: float, landmarks: Path = DEFAULT_LANDMARKS) -> dict:
    """A site's model: the packaged real poses plus the site's recordings (each counted SITE_WEIGHT times),
    so a door's own people and camera angle weigh in without losing what the packaged photos taught.
    Reports how it reads the packaged held-out photos and, cross-validated, the site's own samples."""
    site_points, site_labels = load_recordings(recordings)
    data = LandmarkSet.load(landmarks)
    base_points, base_labels = data.points(data.rows("train"), min_visibility)
    held_points, held_labels = data.points(data.rows("heldout"), min_visibility)

    def train_on(points: np.ndarray, labels: np.ndarray) -> GestureNetwork:
        return fit(np.concatenate([base_points] + [points] * SITE_WEIGHT),
                   np.concatenate([base_labels] + [labels] * SITE_WEIGHT),
                   {"trained_on": f"{landmarks.name} train split + {recordings.name} (x{SITE_WEIGHT})",
                    "min_visibility": min_visibility, "site_samples": len(labels)})

    folds = min(5, int(min(np.unique(site_labels, return_counts=True)[1])))
    site_accuracy = None
    if folds >= 2:
        order = np.random.default_rng(0).permutation(len(site_labels))
        right = 0
        for fold in range(folds):
            test = order[fold::folds]
            train = np.setdiff1d(order, test)
            right += sum(a == b for a, b in zip(train_on(site_points[train], site_labels[train]).predict(
                np.stack([vector(p) for p in site_points[test]])), site_labels[test]))
        site_accuracy = right / len(site_labels)
    network = train_on(site_points, site_labels)
    network.save(out)
    held = network.predict(np.stack([vector(p) for p in held_points]))
    return {"site_samples": len(site_labels), "labels": sorted(set(site_labels)),
            "site_cv_accuracy": site_accuracy, "packaged_heldout_accuracy": float(np.mean(np.array(held) == held_labels))}
