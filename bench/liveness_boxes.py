"""The anti-spoofing models were trained on the boxes of upstream's RetinaFace detector; the door finds faces with
BlazeFace. How do the two boxes differ, on every face set at hand? The answer sets `retina_box` in
edge/inference/liveness.py (the box each model is given).

    python -m bench.liveness_boxes --retinaface DIR [--shared PATH]

DIR is upstream's `resources/detection_model/` folder (Silent-Face-Anti-Spoofing: `deploy.prototxt` and
`Widerface-RetinaFace.caffemodel`, Apache-2.0); it is run here exactly as upstream runs it (OpenCV's DNN module,
the image resized to about 192x192 pixels, mean 104/117/123, the most confident box), for measurement only: the
product never ships or runs it. For each photo where both detectors find one face whose boxes overlap, the
RetinaFace box is expressed in the BlazeFace box's units: width and height ratios, and the centre's offset as a
fraction of the BlazeFace box's width and height. Per set (never pooled): median and quartiles. Writes
bench/results/liveness_boxes.json.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from bench.common import ROOT, SMOKE_HELP, machine, smoke_mode, write


class UpstreamRetinaFace:
    """Upstream's own face detector, as upstream calls it (src/anti_spoof_predict.py's Detection.get_bbox)."""

    def __init__(self, folder: Path):
        self.net = cv2.dnn.readNetFromCaffe(str(folder / "deploy.prototxt"), str(folder / "Widerface-RetinaFace.caffemodel"))

    def box(self, image: np.ndarray) -> tuple[float, float, float, float, float]:
        """(x, y, w, h, confidence) of the most confident face, in the image's pixels."""
        height, width = image.shape[:2]
        small = image
        if width * height >= 192 * 192:
            aspect = width / height
            small = cv2.resize(image, (int(192 * math.sqrt(aspect)), int(192 / math.sqrt(aspect))))
        self.net.setInput(cv2.dnn.blobFromImage(small, 1, mean=(104, 117, 123)), "data")
        out = self.net.forward("detection_out").squeeze()
        best = out[int(np.argmax(out[:, 2]))]
        left, top, right, bottom = best[3] * width, best[4] * height, best[5] * width, best[6] * height
        return float(left), float(top), float(right - left), float(bottom - top), float(best[2])


def relative(blaze: tuple[int, int, int, int], retina: tuple[float, float, float, float]) -> dict:
    bx, by, bw, bh = blaze
    rx, ry, rw, rh = retina
    return {"width": rw / bw, "height": rh / bh,
            "dx": ((rx + rw / 2) - (bx + bw / 2)) / bw, "dy": ((ry + rh / 2) - (by + bh / 2)) / bh}


def photo_sets(shared: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    from bench.liveness import live_sets

    return {name: items for name, items in live_sets(shared).items() if "demo" not in name}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retinaface", type=Path, help="upstream's resources/detection_model folder")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared data folder")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    smoke = smoke_mode(args.smoke)
    if args.retinaface is None or not (args.retinaface / "deploy.prototxt").is_file():
        print("skipping: upstream's RetinaFace detector is not given (--retinaface DIR, the folder "
              "resources/detection_model of the Silent-Face-Anti-Spoofing repository); it is a measurement tool only")
        return 0
    from edge.config import config_from_dict
    from edge.inference.detector import box_iou
    from edge.service.assembly import build_identifier

    identifier = build_identifier(config_from_dict({}, ROOT), with_matcher=False)
    retina = UpstreamRetinaFace(args.retinaface)
    result: dict = {"machine": machine(), "sets": {}}
    print(f"{'set':44} {'faces':>5}  {'width':>17}  {'height':>17}  {'dx':>19}  {'dy':>19}")
    for name, items in photo_sets(args.shared).items():
        rows = []
        for label, image in items[:5] if smoke else items:
            searched, faces, _ = identifier.photo_faces(image)
            if len(faces) != 1:
                continue
            *box, confidence = retina.box(searched)
            face = faces[0]
            if confidence < 0.6 or box_iou(face.box, tuple(int(v) for v in box)) < 0.3:
                continue
            rows.append({"label": label, "face_px": int(max(face.box[2:])), **relative(face.box, tuple(box))})
        if not rows:
            continue
        summary = {key: [round(float(np.percentile([r[key] for r in rows], q)), 3) for q in (25, 50, 75)]
                   for key in ("width", "height", "dx", "dy")}
        result["sets"][name] = {"faces": len(rows), "quartiles": summary, "rows": rows}
        print(f"{name:44} {len(rows):5}  " + "  ".join(f"{s[1]:5.2f} [{s[0]:5.2f},{s[2]:5.2f}]" for s in summary.values()))
    path = write("liveness_boxes", result)
    print(f"(median [quartiles] of RetinaFace's box in BlazeFace box units; dx, dy: centre offset, + is right/down)\n"
          f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
