"""Per-face latency of detect, align, embed (each precision), a frame's whole identity (FaceNet alone, and fused with
MobileFaceNet: embedder.fuse_with) and match time vs gallery size.

    .venv/bin/python -m bench.identity [--repeat 50]

Prints a table and writes bench/results/identity.json. Gallery sizes use random unit vectors: the
match cost depends on the size, not on whose faces they are.
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np

from bench.common import ROOT, SMOKE_HELP, machine, measure, smoke_mode, write
from edge.config import config_from_dict
from edge.identity.gallery import Gallery
from edge.identity.matcher import NearestMatcher, SvcMatcher
from edge.inference.align import align_face
from edge.inference.detector import BlazeFaceDetector
from edge.inference.embedder import FaceNetEmbedder
from edge.inference.tflite import INTERPRETER, resolve_threads
from edge.samples import sample
from edge.service.assembly import build_identity

GALLERY_SIZES = (100, 1_000, 10_000, 100_000)
MODEL_VARIANTS = [f"{source}-{precision}" for source in ("keras", "sandberg2018")
                  for precision in ("float32", "float16", "int8")] + ["keras-int8full"]


# The default model (the Keras FaceNet) embeds in 128 dimensions; sandberg2018 in 512.
DIM = 128


def random_gallery(people: int, per_person: int, dim: int = DIM, seed: int = 0) -> Gallery:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((people * per_person, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.repeat(np.arange(people, dtype=np.int32), per_person)
    original = np.zeros(len(emb), bool)
    original[::per_person] = True
    return Gallery("bench", dim, emb, labels, original, [f"p{i}" for i in range(people)],
                   [f"person {i}" for i in range(people)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    sizes = GALLERY_SIZES[:2] if smoke_mode(args.smoke) else GALLERY_SIZES
    if args.smoke:
        args.repeat = 2
    threads = resolve_threads(args.threads)
    image = cv2.imread(str(sample("obama-1.jpg")))
    frame = image
    result = {"machine": machine(), "interpreter": INTERPRETER, "threads": threads, "image": "obama-1.jpg",
              "image_size": list(image.shape[:2]), "stages": {}, "match": {}}
    detector = BlazeFaceDetector(threads=threads)
    face = detector.detect(frame)[0]
    result["stages"]["detect (BlazeFace short-range)"] = measure(lambda: detector.detect(frame), args.repeat)
    margin = 0.0  # the default (Keras) model's alignment margin; the 2018 model's 0.1 costs the same
    result["stages"]["align"] = measure(lambda: align_face(frame, face, 160, margin), args.repeat)
    aligned = align_face(frame, face, 160, margin)
    for variant in MODEL_VARIANTS:
        path = ROOT / "models" / f"facenet-{variant}.tflite"
        if not path.is_file():
            print(f"skipping {variant}: {path} not built (scripts/bootstrap)", file=sys.stderr)
            continue
        embedder = FaceNetEmbedder(path, threads)
        result["stages"][f"embed {variant}"] = measure(lambda: embedder.embed(aligned), args.repeat)
    for path in sorted((ROOT / "models").glob("mobilefacenet-*.tflite")):  # the second embedder and its variants
        embedder = FaceNetEmbedder(path, threads)
        crop = align_face(frame, face, embedder.input_size, 0.0, embedder.alignment)
        result["stages"][f"embed {path.stem}"] = measure(lambda e=embedder, c=crop: e.embed(c), args.repeat)
    mobilefacenet = ROOT / "models" / "mobilefacenet-float32.tflite"
    for name, fuse_with in (("FaceNet", []), ("FaceNet + MobileFaceNet fused", [str(mobilefacenet)])):
        if fuse_with and not mobilefacenet.is_file():
            print(f"skipping {name}: {mobilefacenet} not built (scripts/bootstrap builds it unless "
                  "--no-mobilefacenet)", file=sys.stderr)
            continue
        identity = build_identity(config_from_dict({"embedder": {"fuse_with": fuse_with, "threads": threads}}, ROOT))
        result["stages"][f"a frame's identity: {name}"] = measure(  # align (FaceMesh for MobileFaceNet), embed, join
            lambda i=identity: i.embed_with_quality(frame, face, "plain"), args.repeat)
    query = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
    query /= np.linalg.norm(query)
    for people in sizes:
        matcher = NearestMatcher(random_gallery(people, 2))
        result["match"][f"nearest {people}"] = measure(lambda: matcher.match(query), args.repeat)
    for people in (150,) if args.smoke else (150, 300):
        gallery = random_gallery(people, 21)
        started = time.perf_counter()
        svc = SvcMatcher(gallery)  # trained in a child process, as the door trains it
        result["svc_train_s"] = {**result.get("svc_train_s", {}), str(people): round(time.perf_counter() - started, 2)}
        result["match"][f"svc {people} (21 embeddings each)"] = measure(lambda m=svc: m.match(query), args.repeat)
    print("SVC training in a child process (s):", result["svc_train_s"])
    print(f"{'stage':52} {'p50 ms':>9} {'p95 ms':>9}")
    for group in ("stages", "match"):
        for name, stats in result[group].items():
            print(f"{name:52} {stats['p50_ms']:9.2f} {stats['p95_ms']:9.2f}")
    print(f"wrote {write('identity', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
