"""Passive anti-spoofing on real photos: how many live faces each model choice turns away, whether the attacks
at hand are refused, and what it costs per decided face.

    python -m bench.liveness [--shared PATH]

Live faces, each set on its own (never pooled): the accuracy benchmark's photos (bench/datasets.py), the
demo clip's frames (edge/cli/demo.py), the upstream live sample, and where ../shared is beside the project the
faces of ../shared/gestures (40 px and up) and the tight crops of ../shared/faces-east-asian (little
context around the face: the models look at 2.7-4 times the face box). Attacks: upstream's printed photo
(F1) and tablet replay (F2). Each photo's largest BlazeFace face (a photo the detector finds nothing in is
searched again padded, as identify does) is scored by each MiniFASNet model; the verdicts follow the
config's thresholds. Writes bench/results/liveness.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import ROOT, SMOKE_HELP, machine, smoke_mode, write

COMBINATIONS = {"v2 (default)": ("v2",), "v1se": ("v1se",), "v2 + v1se (upstream's mean)": ("v2", "v1se")}


def live_sets(shared: Path) -> dict[str, list]:
    """name -> list of (label, BGR image); sets whose data is absent are left out with a message."""
    from bench.datasets import DatasetMissing, labelled_photos
    from edge.cli.demo import clip_frames

    sets: dict[str, list] = {}
    try:
        sets["accuracy photos (bench.datasets)"] = [(p.path.name, cv2.imread(str(p.path))) for p in labelled_photos()]
    except DatasetMissing as exc:
        print(f"skipping the accuracy photos: {exc}")
    sets["demo clip frames (edge/cli/demo.py)"] = [(f"frame {n}", f) for n, f in enumerate(clip_frames())]
    samples = shared / "antispoof" / "samples"
    sets["upstream live sample T1"] = [("image_T1.jpg", cv2.imread(str(samples / "image_T1.jpg")))]
    for name, folder, pattern in (("../shared/gestures (faces >= 40 px)", shared / "gestures", "*/*/*.jpg"),
                                  ("../shared/gestures o-yoga", shared / "gestures" / "o-yoga", "*.jpg"),
                                  ("../shared/faces-east-asian (tight crops)", shared / "faces-east-asian", "*/*.jpg")):
        files = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if not files:
            print(f"skipping {name}: {folder} is absent (it lies in ../shared beside the project)")
            continue
        sets[name] = [(f"{f.parent.name}/{f.name}", cv2.imread(str(f))) for f in files]
    return sets


def attack_sets(shared: Path) -> dict[str, list]:
    samples = shared / "antispoof" / "samples"
    return {"printed photo (upstream F1)": [("image_F1.jpg", cv2.imread(str(samples / "image_F1.jpg")))],
            "tablet replay (upstream F2)": [("image_F2.jpg", cv2.imread(str(samples / "image_F2.jpg")))]}


def assess_set(identifier, model, items, min_px: int = 0) -> list[dict]:
    rows = []
    for label, image in items:
        searched, faces, _ = identifier.photo_faces(image)
        if not faces:
            continue
        face = max(faces, key=lambda f: f.box[2] * f.box[3])
        if max(face.box[2:]) < min_px:
            continue
        assessment = model.assess(searched, face)
        rows.append({"label": label, "face_px": int(max(face.box[2:])), "monochrome": assessment.monochrome,
                     "live": {name: p[1] for name, p in assessment.probabilities.items()}})
    return rows


def summarise(rows: list[dict], names: tuple[str, ...], rule) -> dict:
    scores = [None if r["monochrome"] else float(np.mean([r["live"][n] for n in names])) for r in rows]
    verdicts = [rule.verdict(s) for s in scores]
    judged = np.array([s for s in scores if s is not None])
    return {"faces": len(rows), "spoof": verdicts.count("spoof"), "uncertain": verdicts.count("uncertain"),
            "live": verdicts.count("live"), "monochrome": sum(r["monochrome"] for r in rows),
            "score_p5": round(float(np.percentile(judged, 5)), 4) if judged.size else None,
            "score_p50": round(float(np.median(judged)), 4) if judged.size else None,
            "refused": [f"{r['label']} ({s:.4f})" for r, s, v in zip(rows, scores, verdicts) if v == "spoof"]}


def cost(model_dir: Path, image: np.ndarray, face, embedder, repeats: int = 200) -> dict:
    """Median ms per face for each model choice, beside FaceNet on the same face (one thread each)."""
    from edge.inference.align import align_face
    from edge.inference.liveness import MiniFasNet

    out = {}
    for label, names in COMBINATIONS.items():
        model = MiniFasNet(model_dir, names, threads=1)
        model.score(image, face)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            model.score(image, face)
            times.append(time.perf_counter() - started)
        out[label] = round(1000 * float(np.median(times)), 2)
    aligned = align_face(image, face, embedder.input_size, embedder.align_margin)
    embedder.embed(aligned)
    times = []
    for _ in range(30):
        started = time.perf_counter()
        embedder.embed(aligned)
        times.append(time.perf_counter() - started)
    out["facenet embed (1 thread, for scale)"] = round(1000 * float(np.median(times)), 2)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared data folder")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    smoke = smoke_mode(args.smoke)
    from edge.config import config_from_dict
    from edge.inference.embedder import FaceNetEmbedder
    from edge.inference.liveness import LivenessRule, MiniFasNet
    from edge.service.assembly import build_identifier

    config = config_from_dict({}, ROOT)
    from edge.service.assembly import liveness_status

    if liveness_status(config) == "not installed" or not (args.shared / "antispoof" / "samples").is_dir():
        print("skipping: the anti-spoofing models are not installed, or upstream's sample photos are absent "
              f"({args.shared / 'antispoof'}, the shared data folder beside the project); docs/liveness.md says how "
              "to install the models")
        return 0
    identifier = build_identifier(config, with_matcher=False)
    model = MiniFasNet(config.models.dir, ("v2", "v1se"), threads=1)
    rule = LivenessRule(config.liveness.spoof_below, config.liveness.live_from)
    result: dict = {"machine": machine(), "thresholds": {"spoof_below": rule.spoof_below, "live_from": rule.live_from},
                    "live": {}, "attacks": {}}
    for group, sets in (("live", live_sets(args.shared)), ("attacks", attack_sets(args.shared))):
        for name, items in sets.items():
            rows = assess_set(identifier, model, items[:3] if smoke else items, 40 if "faces >= 40" in name else 0)
            result[group][name] = {label: summarise(rows, names, rule) for label, names in COMBINATIONS.items()}
    sample = cv2.imread(str(args.shared / "antispoof" / "samples" / "image_T1.jpg"))
    face = identifier.faces(sample)[0]
    result["ms_per_face"] = cost(config.models.dir, sample, face, FaceNetEmbedder(config.embedder.model, 1),
                                 5 if smoke else 200)

    print(f"thresholds: spoof below {rule.spoof_below}, live from {rule.live_from} (config.yaml liveness)\n")
    print(f"{'set':44} {'model':28} {'faces':>5} {'spoof':>6} {'uncert.':>7} {'mono':>5}  "
          "p5 score  refused (live sets: turned away)")
    for group in ("live", "attacks"):
        for name, by_model in result[group].items():
            for label, s in by_model.items():
                refused = ", ".join(s["refused"][:4]) + (" ..." if len(s["refused"]) > 4 else "")
                p5 = "-" if s["score_p5"] is None else f"{s['score_p5']:.4f}"
                print(f"{name:44} {label:28} {s['faces']:5} {s['spoof']:6} {s['uncertain']:7} {s['monochrome']:5}  "
                      f"{p5:>8}  {refused}")
        print()
    cpu = ",".join(result["machine"]["simd"]) or "no SIMD flags read"
    print(f"ms per face, one thread ({result['machine']['processor']}, {cpu}): "
          + ", ".join(f"{k} {v}" for k, v in result["ms_per_face"].items()))
    path = write("liveness", result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
