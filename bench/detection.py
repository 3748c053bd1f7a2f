"""Face detector recall by face size and on real group photos, beside face_recognition's HOG detector.

    .venv/bin/python -m bench.detection

Real photos only: (1) the shipped sample photos (edge/data/samples) with each face scaled to 40-160 px and
placed at random in a 640x480 and a 1280x720 frame (3 placements each; a stated transform of real photos),
and (2) the two group photos of the ultralytics wheel (bus.jpg, zidane.jpg; scripts/bootstrap fetches them),
where there is no labelled truth and the count of faces each detector returns is reported.
Prints a table; writes bench/results/detection.json.
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np

from bench.common import ROOT, SMOKE_HELP, machine, smoke_mode, write
from edge.inference.detector import BlazeFaceDetector
from edge.samples import sample

PHOTOS = ["obama-1.jpg", "obama-2.jpg", "obama-3.jpg", "biden-1.jpg", "collins-1.jpg", "cameraman.jpg",
          "obama-partial.jpg"]
SIZES = (40, 48, 56, 80, 112, 160)
FRAMES = ((640, 480), (1280, 720))
GROUPS = [ROOT / "tests" / "data" / "registry" / name for name in ("bus.jpg", "zidane.jpg")]


def detectors() -> dict:
    found = {name: BlazeFaceDetector(model) for name, model in (("short", "short_range"), ("full", "full_range"))}
    tiled = {f"{name}+tiles": BlazeFaceDetector(model, tiles=True)
             for name, model in (("short", "short_range"), ("full", "full_range"))}
    found.update(tiled)
    try:
        import face_recognition

        found["hog (face_recognition)"] = _Hog(face_recognition)
    except Exception:
        pass
    return found


class _Hog:
    def __init__(self, module):
        self.module = module

    def detect(self, image):
        boxes = self.module.face_locations(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        return [type("Face", (), {"box": (left, top, right - left, bottom - top)})() for top, right, bottom, left in boxes]


def placements(size: int, width: int, height: int, rng) -> list[tuple[np.ndarray, tuple[float, float]]]:
    reference = BlazeFaceDetector("full_range", min_face_px=20)
    out = []
    for photo in PHOTOS:
        image = cv2.imread(str(sample(photo)))
        x, y, w, h = reference.detect(image)[0].box
        scale = size / w
        scaled = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        cx, cy, r = int((x + w / 2) * scale), int((y + h / 2) * scale), int(1.6 * size)
        crop = scaled[max(0, cy - r):cy + r, max(0, cx - r):cx + r][:height, :width]
        ch, cw = crop.shape[:2]
        centre_in_crop = (min(cx, r), min(cy, r))
        for _ in range(3):
            frame = np.full((height, width, 3), 180, np.uint8)
            ox, oy = int(rng.integers(0, width - cw + 1)), int(rng.integers(0, height - ch + 1))
            frame[oy:oy + ch, ox:ox + cw] = crop
            out.append((frame, (ox + centre_in_crop[0], oy + centre_in_crop[1])))
    return out


def hit(faces, centre, size) -> bool:
    return any(abs(f.box[0] + f.box[2] / 2 - centre[0]) < size / 2 and abs(f.box[1] + f.box[3] / 2 - centre[1]) < size / 2
               for f in faces)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    smoke = smoke_mode(parser.parse_args(argv).smoke)
    found = detectors()
    rng = np.random.default_rng(0)
    result: dict = {"machine": machine(), "recall": {}, "groups": {}, "ms": {}}
    for width, height in FRAMES[:1] if smoke else FRAMES:
        for size in SIZES[-1:] if smoke else SIZES:
            cases = placements(size, width, height, rng)[:2] if smoke else placements(size, width, height, rng)
            row = {}
            for name, detector in found.items():
                times, hits = [], 0
                for frame, centre in cases:
                    start = time.perf_counter()
                    faces = detector.detect(frame)
                    times.append((time.perf_counter() - start) * 1000)
                    hits += hit(faces, centre, size)
                row[name] = f"{hits}/{len(cases)}"
                result["ms"].setdefault(f"{width}x{height}", {}).setdefault(name, []).extend(times)
            result["recall"][f"{width}x{height} face {size}px"] = row
            print(f"{width}x{height} face {size:3d} px  " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    result["ms"] = {frame: {k: round(float(np.median(v)), 2) for k, v in per.items()} for frame, per in result["ms"].items()}
    for frame, per in result["ms"].items():
        print(f"median ms per {frame} frame: " + "  ".join(f"{k} {v}" for k, v in per.items()))
    for path in GROUPS:
        if not path.is_file():
            print(f"{path.name}: missing (scripts/bootstrap fetches it)")
            continue
        image = cv2.imread(str(path))
        result["groups"][path.name] = {name: len(d.detect(image)) for name, d in found.items()}
        print(f"{path.name} {image.shape[1]}x{image.shape[0]} faces found: "
              + "  ".join(f"{k} {v}" for k, v in result["groups"][path.name].items()))
    print(f"wrote {write('detection', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
