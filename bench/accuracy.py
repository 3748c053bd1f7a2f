"""Recognition accuracy on real labelled photos, per population: our models beside face_recognition (dlib).

    python -m bench.accuracy [--quick] [--write-operating-points]

Data, each population on its own and never pooled (bench/datasets.py): the accuracy photos (125 real photos
of 9 people, almost all Western, from registry packages) and, where the shared data folder lies beside the
project, 312 labelled East Asian face crops of 13 people (skipped with a message where it is absent). For
every built model and precision, each fusion of several (FUSIONS: edge/identity/fusion.py) whose models are built,
plus (Western photos) alignment-margin and normalisation variants of the float32 models:
- over all pairs of photos (one embedding each, the largest face): ROC AUC, EER, TAR at FAR 1 % and 0.1 %;
- the door protocol: of the people with two or more photos, every group of three is enrolled in turn
  (k = 1, 3, 5 or all photos each, picked at random per round) through the real enrolment path (augmented
  embeddings, the product's matcher, and its threshold: the model's point bounded by the enrolled roster's
  own impostor distances, edge/identity/operating.py); every other photo is a probe. Enrolled people's probes
  are counted recognised / wrong person / missed; everybody else is a stranger, counted accepted or refused.
face_recognition runs the same protocol with its own detector, encoder and documented tolerance 0.6.
Writes bench/results/accuracy.json and accuracy.png (ROC); --write-operating-points stores each model's
threshold (edge/identity/operating.py) in edge/data/operating_points.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np

from bench.common import ROOT, SMOKE_HELP, default_fused, default_model, machine, smoke_mode, smoke_mode_on, write
from bench.datasets import SOURCES, Photo, labelled_photos
from edge.identity.matcher import DEFAULT_AMBIGUITY_MARGIN

MODELS = ROOT / "models"
GROUP = 3  # people enrolled per round of the door protocol
FACE_RECOGNITION_TOLERANCE = 0.6

Identify = Callable[[np.ndarray], "str | None"]


@dataclass
class View:
    """One system's embeddings of the photos: the largest face of each (None: no face found)."""

    system: str  # our models: the model id (a fused one for several); else a name
    vectors: list[np.ndarray | None]
    augmented: list[np.ndarray] = field(default_factory=list)  # per photo, enrolment augmentations
    seconds: float = 0.0


def detect_largest(photos: list[Photo], pad: bool = False):
    """(image, largest BlazeFace face or None) per photo, with the product's default detector settings.
    pad: search a photo with no face again padded, as enrolment and identify do (tight crops); the image
    returned is the one the face was found in."""
    from edge.config import config_from_dict
    from edge.images import read_image
    from edge.recognition.pipeline import Identifier
    from edge.service.assembly import build_detector

    detector = build_detector(config_from_dict({}, ROOT))
    search = Identifier(detector, None, None)
    found = []
    for photo in photos:
        image = read_image(photo.path)
        faces = detector.detect(image)
        if not faces and pad:
            image, faces, _ = search.photo_faces(image)
        found.append((image, max(faces, key=lambda f: f.box[2] * f.box[3]) if faces else None))
    return found


def embed_ours(model: Path, detections, augmentations: int = 0, margin: float | None = None,
               normalisation: str | None = None, threads: int = 0, mesh: bool = True) -> View:
    """mesh: for a model aligned on five points, FaceMesh's landmarks where the face is large enough (as the
    door does); False: BlazeFace's four keypoints always (the fallback)."""
    from edge.identity.augment import augment
    from edge.inference.align import align_face
    from edge.inference.embedder import NORMALISATIONS, FaceNetEmbedder, embed_views
    from edge.inference.face_landmarks import FaceMesh
    from edge.recognition.pipeline import Identifier

    embedder = FaceNetEmbedder(model, threads)
    if normalisation:
        embedder.normalise = NORMALISATIONS[normalisation]
    margin = embedder.align_margin if margin is None else margin
    marker = Identifier(None, embedder, None, mesh=FaceMesh(model.parent) if mesh else None)
    view = View(embedder.model_id, [], [])  # the gallery's model id: the matcher reads its operating point
    started = time.perf_counter()
    for n, (image, face) in enumerate(detections):
        if face is None:
            view.vectors.append(None)
            view.augmented.append(np.zeros((0, embedder.dim), np.float32))
            continue
        aligned = align_face(image, face, embedder.input_size, margin, embedder.alignment,
                             marker.five_point_landmarks(image, face))
        view.vectors.append(embed_views(embedder, aligned))  # a photo: both views, as enrolment does
        view.augmented.append(np.array([embedder.embed(v) for v in augment(aligned, augmentations, seed=n + 1)]
                                       ).reshape(-1, embedder.dim))
    view.seconds = time.perf_counter() - started
    return view


def embed_face_recognition(photos: list[Photo], whole_crop: bool = False) -> View:
    """whole_crop: a photo HOG finds no face in is taken as one face filling it (tight face crops)."""
    import face_recognition

    view = View("face_recognition", [])
    started = time.perf_counter()
    for photo in photos:
        rgb = cv2.cvtColor(cv2.imread(str(photo.path)), cv2.COLOR_BGR2RGB)
        locations = face_recognition.face_locations(rgb)
        if not locations and whole_crop:
            locations = [(0, rgb.shape[1], rgb.shape[0], 0)]
        if not locations:
            view.vectors.append(None)
            continue
        largest = max(locations, key=lambda box: (box[2] - box[0]) * (box[1] - box[3]))
        view.vectors.append(face_recognition.face_encodings(rgb, [largest])[0])
    view.seconds = time.perf_counter() - started
    return view


def pair_distances(view: View, photos: list[Photo]) -> tuple[np.ndarray, np.ndarray]:
    """(distances, same-person flags) over every pair of photos where a face was found."""
    keep = [i for i, v in enumerate(view.vectors) if v is not None]
    vectors = np.stack([view.vectors[i] for i in keep]).astype(np.float64)
    people = np.array([photos[i].person for i in keep])
    upper = np.triu_indices(len(keep), 1)
    dist = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=2)[upper]
    return dist, (people[:, None] == people[None, :])[upper]


def pair_metrics(view: View, photos: list[Photo]) -> dict:
    from sklearn.metrics import roc_auc_score, roc_curve

    dist, same = pair_distances(view, photos)
    fpr, tpr, _ = roc_curve(same, -dist)
    eer_at = int(np.argmin(np.abs(fpr - (1 - tpr))))

    def tar_at(far: float) -> float:
        return float(tpr[fpr <= far].max())

    return {"photos_with_face": sum(v is not None for v in view.vectors), "photos": len(photos),
            "genuine_pairs": int(same.sum()), "impostor_pairs": int((~same).sum()),
            "auc": round(float(roc_auc_score(same, -dist)), 4), "eer": round(float((fpr[eer_at] + 1 - tpr[eer_at]) / 2), 4),
            "tar_at_far_1pct": round(tar_at(0.01), 4), "tar_at_far_0.1pct": round(tar_at(0.001), 4),
            "impostor_min": round(float(dist[~same].min()), 4),
            "roc": {"fpr": fpr.round(5).tolist(), "tpr": tpr.round(5).tolist()}}


def enrolled_gallery(view: View, enrolled: dict[str, list[int]]):
    """A gallery of the enrolled photos as enrolment builds it: each photo's embedding and its enrolment variants."""
    from edge.identity.gallery import Gallery

    gallery = Gallery(model_id=view.system, dim=len(next(v for v in view.vectors if v is not None)))
    for person, indices in enrolled.items():
        vectors = [view.vectors[i][None] for i in indices] + [view.augmented[i] for i in indices]
        original = [True] * len(indices) + [False] * sum(len(view.augmented[i]) for i in indices)
        gallery.add(person, person, np.concatenate(vectors), np.array(original), view.system)
    return gallery


def ours_identify(view: View, photos: list[Photo], enrolled: dict[str, list[int]], ceiling: float) -> Identify:
    """The product's enrolment + matcher over the enrolled photos' embeddings (augmentations included), at
    the threshold the product would use for a probe that is one still photo: the measured point `ceiling`,
    tightened by calibration and bounded by the roster (edge/identity/matcher.py: resolve, photo_bound)."""
    from edge.identity.matcher import bounded_threshold, build_matcher, calibrate_threshold, photo_bound
    from edge.identity.operating import DEFAULT_STRANGER_FAR
    from edge.identity.svc import fit_here

    gallery = enrolled_gallery(view, enrolled)
    threshold = (photo_bound(*bounded_threshold(gallery, ceiling, DEFAULT_STRANGER_FAR)) if ROSTER_BOUND[0]
                 else calibrate_threshold(gallery, ceiling))
    matcher = build_matcher(gallery, "auto", threshold, ambiguity_margin=AMBIGUITY[0], svc_fit=fit_here)
    return lambda vector: matcher.match(vector).person_id


AMBIGUITY = [DEFAULT_AMBIGUITY_MARGIN]  # --ambiguity-margin
ROSTER_BOUND = [True]  # --no-roster-bound: the threshold as it was before the roster bounded it


def strict_tolerance(view: View, photos: list[Photo]) -> float:
    """face_recognition's own "no impostor pair accepted" point on these photos, for a like-for-like row (chosen after
    the fact on the photos it is then measured on)."""
    dist, same = pair_distances(view, photos)
    return float(dist[~same].min()) - 1e-6


def face_recognition_identify(view: View, photos: list[Photo], enrolled: dict[str, list[int]],
                              tolerance: float = FACE_RECOGNITION_TOLERANCE) -> Identify:
    """face_recognition's documented way: the nearest enrolled encoding, if within its tolerance."""
    people = [person for person, indices in enrolled.items() for _ in indices]
    matrix = np.stack([view.vectors[i] for indices in enrolled.values() for i in indices])

    def identify(vector: np.ndarray) -> str | None:
        dist = np.linalg.norm(matrix - vector, axis=1)
        best = int(np.argmin(dist))
        return people[best] if dist[best] <= tolerance else None

    return identify


def door_protocol(view: View, photos: list[Photo], k: int | None,
                  make_identify: Callable[[View, list[Photo], dict[str, list[int]]], Identify]) -> dict:
    """Counts over every round (k=None: every photo with a face is enrolled)."""
    by_person: dict[str, list[int]] = {}
    for i, photo in enumerate(photos):
        by_person.setdefault(photo.person, []).append(i)
    candidates = sorted(p for p, idx in by_person.items() if len(idx) >= (k or 1) + 1)
    counts = {"rounds": 0, "genuine_probes": 0, "recognised": 0, "wrong_person": 0, "missed": 0,
              "stranger_probes": 0, "strangers_accepted": 0}
    for round_index, group in enumerate(combinations(candidates, GROUP)):
        rng = np.random.default_rng(round_index)
        enrolled, probes = {}, []
        for person in group:
            with_face = [i for i in rng.permutation(by_person[person]) if view.vectors[i] is not None]
            enrolled[person] = [int(i) for i in (with_face if k is None else with_face[:k])]
            probes += [i for i in by_person[person] if i not in enrolled[person]]
        identify = make_identify(view, photos, enrolled)
        counts["rounds"] += 1
        for i, photo in enumerate(photos):
            answer = identify(view.vectors[i]) if view.vectors[i] is not None else None
            if photo.person in group and i in probes:
                counts["genuine_probes"] += 1
                key = "missed" if answer is None else "recognised" if answer == photo.person else "wrong_person"
                counts[key] += 1
            elif photo.person not in group:
                counts["stranger_probes"] += 1
                counts["strangers_accepted"] += answer is not None
    genuine = max(counts["genuine_probes"], 1)
    counts["recognised_rate"] = round(counts["recognised"] / genuine, 4) if counts["genuine_probes"] else None
    return counts


def model_files() -> list[Path]:
    return sorted(p for pattern in ("facenet-*.tflite", "mobilefacenet-*.tflite") for p in MODELS.glob(pattern)
                  if p.with_suffix(".tflite.json").is_file())


# Identities fused from several embedders (edge/identity/fusion.py, embedder.fuse_with), measured where every part is built.
FUSIONS = [("facenet-keras-int8full", "mobilefacenet-float32")]


def systems(models: list[Path]) -> list[tuple[Path, ...]]:
    """Each model on its own, then each fusion of FUSIONS whose parts are all among them."""
    by_stem = {m.stem: m for m in models}
    return [(m,) for m in models] + [tuple(by_stem[s] for s in f) for f in FUSIONS if all(s in by_stem for s in f)]


def system_name(parts: tuple[Path, ...]) -> str:
    return "+".join(p.stem for p in parts)


def joined_view(parts: tuple[Path, ...], views: dict[Path, View]) -> View:
    """The fused identity's embeddings from its parts' (a face some part missed is missed)."""
    from edge.identity.fusion import fusion_id, join

    if len(parts) == 1:
        return views[parts[0]]
    each = [views[p] for p in parts]
    vectors = [None if any(v is None for v in row) else join(list(row)) for row in zip(*(v.vectors for v in each))]
    dim = sum(next(len(x) for x in v.vectors if x is not None) for v in each)
    augmented = [join(list(rows)) if all(len(r) for r in rows) else np.zeros((0, dim), np.float32)
                 for rows in zip(*(v.augmented for v in each))]
    return View(fusion_id([v.system for v in each]), vectors, augmented, sum(v.seconds for v in each))


def evaluate_model(parts: tuple[Path, ...], views: dict[Path, View], photos: list[Photo], ks,
                   measure_point: bool) -> dict:
    """One system (a model, or several fused): its parts' embeddings in `views`. measure_point: the population the
    operating point is measured on (its threshold comes from these pairs, as --write-operating-points stores it);
    any other population is judged at the shipped point, as a door would be."""
    from edge.identity.fusion import fusion_id
    from edge.identity.operating import from_distances, operating_point
    from edge.inference.embedder import read_sidecar

    view = joined_view(parts, views)
    metrics = pair_metrics(view, photos)
    dist, same = pair_distances(view, photos)
    model_id = fusion_id([read_sidecar(p, verify_hash=False)["model_id"] for p in parts])
    point = from_distances(model_id, dist[~same], dist[same], SOURCES)
    shipped = operating_point(model_id)
    ceiling = point.threshold if measure_point or shipped is None else shipped.threshold
    door = {f"k={k or 'all'}": door_protocol(view, photos, k, lambda v, p, e: ours_identify(v, p, e, ceiling))
            for k in ks}
    per_face = len(photos) * (2 + (len(view.augmented[0]) if view.augmented else 0))
    return {"model_id": model_id, "pairs": metrics, "operating_point": point.as_dict(), "ceiling": ceiling,
            "door": door, "ms_per_face": round(1000 * view.seconds / max(1, per_face), 2)}


def variants(photos: list[Photo], detections) -> dict:
    """Alignment margin and normalisation variants of the float32 models (for a five-point model: BlazeFace's four
    keypoints instead of FaceMesh's five points): pair metrics only."""
    out = {}
    for model in (p for p in model_files() if "float32" in p.name):
        from edge.inference.embedder import NORMALISATIONS, read_sidecar

        meta = read_sidecar(model, verify_hash=False)
        if meta.get("alignment") == "arcface-5point":
            out[f"{model.stem} BlazeFace four points"] = pair_metrics(embed_ours(model, detections, mesh=False), photos)
            continue
        for margin in (0.0, 0.05, 0.1, 0.2):
            out[f"{model.stem} margin {margin}"] = pair_metrics(embed_ours(model, detections, margin=margin), photos)
        for other in set(NORMALISATIONS) - {meta["normalisation"]}:
            out[f"{model.stem} normalised with {other} (wrong)"] = pair_metrics(
                embed_ours(model, detections, normalisation=other), photos)
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = result["populations"]
    fig, axes = plt.subplots(1, len(groups), figsize=(7 * len(groups), 6), squeeze=False)
    for ax, (population, found) in zip(axes[0], groups.items()):
        curves = {name: r["pairs"] for name, r in found["models"].items()}
        if found.get("face_recognition"):
            curves["face_recognition (dlib)"] = found["face_recognition"]["pairs"]
        for name, metrics in curves.items():
            ax.plot(metrics["roc"]["fpr"], metrics["roc"]["tpr"], label=f"{name} (AUC {metrics['auc']})")
        ax.set_xscale("log")
        ax.set_xlim(1e-4, 1)
        ax.set_xlabel("false accept rate (impostor pairs)")
        ax.set_ylabel("true accept rate (genuine pairs)")
        ax.set_title(f"ROC: {population}")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def table_row(name: str, pairs: dict, door: dict) -> str:
    k1 = door["k=1"]
    return (f"{name:46} {pairs['auc']:6.4f} {100 * pairs['eer']:5.1f}% {100 * pairs['tar_at_far_1pct']:6.1f}% "
            f"{100 * pairs['tar_at_far_0.1pct']:6.1f}%   {k1['recognised']:5}/{k1['genuine_probes']:<5} "
            f"{k1['wrong_person']:5} {k1['strangers_accepted']:5}/{k1['stranger_probes']:<5}")


def door_lines(name: str, door: dict) -> list[str]:
    return [f"  {name} {k}: recognised {d['recognised']}/{d['genuine_probes']} ({100 * (d['recognised_rate'] or 0):.1f} %), "
            f"wrong {d['wrong_person']}, strangers accepted {d['strangers_accepted']}/{d['stranger_probes']}"
            for k, d in door.items() if k != "k=1"]


def populations(shared: Path, smoke: bool = False) -> dict[str, tuple[list[Photo], bool]]:
    """name -> (photos, tight crops to be searched padded); the shared East Asian set where it is present.
    smoke: three photos each of the first four people of each set."""
    from bench.datasets import DatasetMissing, east_asian_photos

    found = {"western (accuracy photos)": (labelled_photos(), False)}
    try:
        found["east asian (faces-east-asian)"] = (east_asian_photos(shared / "faces-east-asian"), True)
    except DatasetMissing as exc:
        print(f"skipping the East Asian population: {exc}")
    if smoke:
        for name, (photos, pad) in found.items():
            people = sorted({p.person for p in photos})[:4]
            found[name] = ([p for person in people for p in [q for q in photos if q.person == person][:3]], pad)
    return found


def evaluate_population(name: str, photos: list[Photo], pad: bool, models: list[Path], ks, args,
                        measure_point: bool) -> dict:
    detections = detect_largest(photos, pad)
    result: dict = {"photos": len(photos), "people": len({p.person for p in photos}),
                    "faces_found": sum(face is not None for _, face in detections), "models": {},
                    "face_recognition": None}
    print(f"\n== {name}: {len(photos)} photos of {result['people']} people; BlazeFace found a face in "
          f"{result['faces_found']}")
    views = {model: embed_ours(model, detections, args.augmentations) for model in models}
    for parts in systems(models):
        result["models"][system_name(parts)] = evaluate_model(parts, views, photos, ks, measure_point)
    try:
        fr = embed_face_recognition(photos, whole_crop=pad)
    except (Exception, SystemExit) as exc:  # face_recognition calls quit() when its models are missing
        if smoke_mode_on():
            raise SystemExit(f"face_recognition cannot run ({exc}): scripts/bootstrap installs it") from None
        print(f"face_recognition not available ({exc}); scripts/bootstrap installs it")
    else:
        strict = strict_tolerance(fr, photos)
        result["face_recognition"] = {
            "pairs": pair_metrics(fr, photos), "tolerance": FACE_RECOGNITION_TOLERANCE,
            "door": {f"k={k or 'all'}": door_protocol(fr, photos, k, face_recognition_identify) for k in ks},
            "strict_tolerance": round(strict, 4),
            "door_strict": {f"k={k or 'all'}": door_protocol(
                fr, photos, k, lambda v, p, e: face_recognition_identify(v, p, e, strict)) for k in ks},
            "ms_per_face": round(1000 * fr.seconds / len(photos), 1)}
    if measure_point and not args.quick:
        result["variants"] = variants(photos, detections)

    print(f"{'system (door protocol: k=1, ' + str(GROUP) + ' people enrolled per round)':46} {'AUC':>6} {'EER':>6} "
          f"{'TAR@1%':>7} {'@0.1%':>7}   recognised   wrong strangers accepted")
    for model_name, r in result["models"].items():
        default = system_name((default_model(), *default_fused()))  # the door's default identity
        print(table_row(model_name + (" (default)" if model_name == default else ""), r["pairs"],
                        r["door"]) + f"   threshold {r['ceiling']} before the roster's bound")
    fr_result = result["face_recognition"]
    if fr_result:
        print(table_row("face_recognition 1.3.0 (dlib, tolerance 0.6)", fr_result["pairs"], fr_result["door"]))
        print(table_row(f"face_recognition, tolerance {fr_result['strict_tolerance']:.3f} (strict)",
                        fr_result["pairs"], fr_result["door_strict"]))
    for model_name, r in result["models"].items():
        print("\n".join(door_lines(model_name, r["door"])))
    if fr_result:
        print("\n".join(door_lines("face_recognition tolerance 0.6", fr_result["door"])))
        print("\n".join(door_lines("face_recognition strict", fr_result["door_strict"])))
    for variant, metrics in result.get("variants", {}).items():
        print(f"  variant {variant:58} AUC {metrics['auc']:.4f} EER {100 * metrics['eer']:4.1f}% "
              f"TAR@0.1% {100 * metrics['tar_at_far_0.1pct']:5.1f}%")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="the default identity (each part alone and fused) and face_recognition only, k=1 and 3")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    parser.add_argument("--ambiguity-margin", type=float, default=DEFAULT_AMBIGUITY_MARGIN,
                        help="the matcher's ambiguity margin (0 = off) for the door protocol")
    parser.add_argument("--no-roster-bound", action="store_true",
                        help="judge at the measured point tightened by calibration only (the threshold before "
                             "the enrolled roster bounded it), to see what the roster's bound does")
    parser.add_argument("--augmentations", type=int, default=20, help="enrolment variants per photo (config default 20)")
    parser.add_argument("--models", help="comma-separated model file stems to measure (default: every built one); "
                        "the fusions of FUSIONS whose parts are all named are measured too")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared data folder")
    parser.add_argument("--write-operating-points", action="store_true",
                        help="store each model's threshold, measured on the Western photos, in "
                             "edge/data/operating_points.json")
    args = parser.parse_args(argv)
    AMBIGUITY[0] = args.ambiguity_margin
    ROSTER_BOUND[0] = not args.no_roster_bound
    from edge.identity.operating import OperatingPoint, load_points, save_points

    started = time.monotonic()
    smoke = smoke_mode(args.smoke)
    if smoke:
        args.augmentations = 2
    ks = (1,) if smoke else (1, 3) if args.quick else (1, 3, 5, None)
    default = default_model()
    models = [default, *default_fused()] if args.quick or smoke else model_files()  # the default identity's parts
    if args.models:
        wanted = set(args.models.split(","))
        models = [m for m in model_files() if m.stem in wanted]
    result: dict = {"machine": machine(), "default_model": default.name, "roster_bound": ROSTER_BOUND[0],
                    "populations": {}}
    for index, (name, (photos, pad)) in enumerate(populations(args.shared, smoke).items()):
        result["populations"][name] = evaluate_population(name, photos, pad, models, ks, args, index == 0)
    if args.write_operating_points and not smoke:
        points = load_points()
        western = next(iter(result["populations"].values()))
        points.update({r["model_id"]: OperatingPoint(**r["operating_point"]) for r in western["models"].values()})
        save_points(points)
        print("wrote the operating points (Western photos) to edge/data/operating_points.json")
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    path = write("accuracy", result)
    plot(result, path.with_suffix(".png"))
    print(f"\nwrote {path} and {path.with_suffix('.png')} in {result['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
