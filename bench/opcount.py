"""Multiply-accumulate counts of the .tflite models, for estimating other boards' speed.

    .venv/bin/python -m bench.opcount

Counts CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED MACs from the models' tensor shapes (the
operations that dominate these networks); other ops are listed by count only.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from bench.common import ROOT, SMOKE_HELP, smoke_mode, write

MODELS = {
    "facenet keras (any precision)": ROOT / "models" / "facenet-keras-float32.tflite",
    "facenet sandberg2018 (any precision)": ROOT / "models" / "facenet-sandberg2018-float32.tflite",
    "blazeface short-range": ROOT / "models" / "face_detection_short_range.tflite",
    "blazeface full-range": ROOT / "models" / "face_detection_full_range_sparse.tflite",
    "blazepose detector": ROOT / "models" / "pose_detection.tflite",
    "blazepose landmarks (full)": ROOT / "models" / "pose_landmark_full.tflite",
    "minifasnet v2 (liveness, default)": ROOT / "models" / "minifasnet_v2_2.7.tflite",
    "minifasnet v1se (liveness)": ROOT / "models" / "minifasnet_v1se_4.0.tflite",
    "mobilefacenet (second embedder)": ROOT / "models" / "mobilefacenet-float32.tflite",
    "facemesh (five-point alignment)": ROOT / "models" / "face_landmark.tflite",
}


def count_macs(path: Path) -> tuple[int, Counter]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    shapes = {t["index"]: tuple(int(v) for v in t["shape"]) for t in interpreter.get_tensor_details()}
    macs, kinds = 0, Counter()
    for op in interpreter._get_ops_details():
        name = op["op_name"]
        kinds[name] += 1
        inputs = [i for i in op["inputs"] if i >= 0]
        out = shapes.get(int(op["outputs"][0]), ())
        if name == "CONV_2D" and len(out) == 4:
            weights = shapes[int(inputs[1])]  # out_c, kh, kw, in_c
            macs += int(np.prod(out)) * weights[1] * weights[2] * weights[3]
        elif name == "DEPTHWISE_CONV_2D" and len(out) == 4:
            weights = shapes[int(inputs[1])]  # 1, kh, kw, out_c
            macs += int(np.prod(out)) * weights[1] * weights[2]
        elif name == "FULLY_CONNECTED":
            weights = shapes[int(inputs[1])]  # out, in
            macs += int(np.prod(out[:-1] or (1,))) * weights[0] * weights[1]
    return macs, kinds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP + "; counting is quick, so all of it runs")
    smoke_mode(parser.parse_args(argv).smoke)
    result = {}
    for label, ref in MODELS.items():
        path = ref
        if not path.is_file():
            print(f"skipping {label}: {path} missing", file=sys.stderr)
            continue
        macs, kinds = count_macs(path)
        result[label] = {"gmac": round(macs / 1e9, 4), "ops": dict(kinds.most_common(6))}
        print(f"{label:30} {macs / 1e6:10.1f} MMAC")
    print(f"wrote {write('opcount', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
