"""Does a track's face move as a plane? Real people moving against rendered hand-held prints and screens, measured
on FaceMesh's landmarks (bench/planarity.py).

    python -m bench.liveness_motion [--shared PATH]

Real: pairs of frames of one person standing in one place in the lab videos of ../shared/gestures (same class
folder, face within a box width of the other and of a like size; the frames are every 15th of a video, so a
pair is half a second or more apart). Replays: each of those people, cut from a frame and shown as a print and
as a screen in another lab scene (testkit/replays.py, rendered, not real attacks), REPLAY_FRAMES frames each,
every pair of frames; and, for faces larger than the lab's, replays of East Asian face crops at three sizes.

For each pair: how much the face changed shape (the residual after the best similarity, in face sizes) and the
ratio of what the best homography leaves to that (near 0: moved as a plane). Only pairs whose face changed
shape by at least MIN_CHANGE say anything. Writes bench/results/liveness_motion.json.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import cv2
import numpy as np

from bench.common import ROOT, SMOKE_HELP, machine, smoke_mode, write
from bench.planarity import fit_pair

MIN_CHANGE = 0.02
REPLAY_FRAMES = 6


def summary(rows: list[tuple[float, float, int]]) -> dict:
    informative = np.array([r for r in rows if r[0] >= MIN_CHANGE]) if rows else np.zeros((0, 3))
    out = {"pairs": len(rows), "informative": len(informative),
           "face_px_median": float(np.median([r[2] for r in rows])) if rows else None}
    if len(informative):
        out["ratio_p5_p50_p95"] = [round(float(v), 3) for v in np.percentile(informative[:, 1], [5, 50, 95])]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared data folder")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    smoke = smoke_mode(args.smoke)
    classes = sorted((args.shared / "gestures" / "ecg").glob("*"))
    if not classes:
        print(f"skipping: {args.shared / 'gestures'} is absent (the shared data folder beside the project)")
        return 0
    from edge.config import config_from_dict
    from edge.inference.face_landmarks import FaceMesh
    from edge.service.assembly import build_identifier
    from testkit.replays import KINDS, replay

    config = config_from_dict({}, ROOT)
    identifier = build_identifier(config, with_matcher=False)
    mesh = FaceMesh(config.models.dir)

    def largest(image):
        faces = identifier.faces(image)
        return max(faces, key=lambda f: f.box[2] * f.box[3]) if faces else None

    def pairs(frames) -> list[tuple[float, float, int]]:
        marked = [(face, mesh.landmarks(frame, face)) for frame in frames if (face := largest(frame))]
        return [(fit.similarity, fit.ratio, int(max(a.box[2:])))
                for (a, la), (_b, lb) in itertools.combinations(marked, 2)
                if (fit := fit_pair(la.points, lb.points))]

    real, people = [], []
    for folder in classes[:2] if smoke else classes:
        frames = []
        for path in sorted(folder.glob("*.jpg")):
            image = cv2.imread(str(path))
            face = largest(image)
            if face is not None and max(face.box[2:]) >= 40:
                frames.append((image, face))
        for (ia, a), (ib, b) in itertools.combinations(frames, 2):
            centre_a, centre_b = (np.array(f.box[:2]) + np.array(f.box[2:]) / 2 for f in (a, b))
            if np.linalg.norm(centre_a - centre_b) < a.box[2] and 0.8 < b.box[2] / a.box[2] < 1.25:
                real += pairs([ia, ib])
        people += frames[::3]
    scenes = [cv2.resize(cv2.imread(str(f)), (640, 480)) for f in sorted(classes[0].glob("*.jpg"))[:5]]
    rng = np.random.default_rng(7)
    result: dict = {"machine": machine(), "min_change": MIN_CHANGE, "real people (lab video pairs)": summary(real)}
    for kind in KINDS:
        rows = []
        for index, (image, face) in enumerate(people[:2] if smoke else people):
            x, y, w, h = face.box
            cut = image[max(0, y - 2 * h):y + 3 * h, max(0, x - 2 * w):x + 3 * w]
            cut = cv2.resize(cut, None, fx=3, fy=3)
            # the replay's face about as large as the real one: the cut is 5 face widths wide
            frames = replay(cut, scenes[index % len(scenes)], kind, REPLAY_FRAMES, rng, width_fraction=5 * w / 640)
            rows += pairs(frames)
        result[f"{kind} replays of the lab people (rendered)"] = summary(rows)
    crops = sorted((args.shared / "faces-east-asian").glob("*/*.jpg"))[::40]
    for width_fraction in (0.15, 0.3, 0.5):
        rows = []
        for index, path in enumerate(crops[:2] if smoke else crops):
            photo = cv2.resize(cv2.imread(str(path)), (480, 480))
            rows += pairs(replay(photo, scenes[index % len(scenes)], "print", REPLAY_FRAMES, rng,
                                 width_fraction=width_fraction))
        result[f"print replays of East Asian crops, {width_fraction:.0%} of the frame (rendered)"] = summary(rows)

    print(f"pairs whose face changed shape by >= {MIN_CHANGE} face sizes; ratio = what a homography leaves of it "
          "(0: a plane)\n")
    print(f"{'set':66} {'pairs':>5} {'inform.':>7} {'face px':>7}  ratio p5 / p50 / p95")
    for name, entry in result.items():
        if isinstance(entry, dict) and "pairs" in entry:
            ratios = " / ".join(f"{v:.3f}" for v in entry.get("ratio_p5_p50_p95", []))
            print(f"{name:66} {entry['pairs']:5} {entry['informative']:7} {entry['face_px_median'] or 0:7.0f}  {ratios}")
    print(f"wrote {write('liveness_motion', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
