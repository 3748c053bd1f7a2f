"""The picture of the door's gestures in docs/gestures.md, drawn from the packaged landmarks (numbers derived from
real photos of real people; no photo is in the project).

    python -m bench.gesture_figures        # writes docs/img/gestures.png

For each gesture and two near misses, every whole-photo training row of that class in
edge/data/gestures/landmarks.npz is put in the body frame the classifier reads (origin between the shoulders,
one unit = the shoulder width, y up) and drawn faintly; the median pose is drawn on top. The person faces the
reader, so their left arm is on the picture's right.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from bench.common import ROOT, SMOKE_HELP, smoke_mode

PANELS = (("O: confirm", "confirm", None), ("X: reject", "reject", None), ("both arms up: capture", "capture", None),
          ("hands on the head: none", "none", "emergency"), ("goal posts: none", "none", "video"))
BONES = ((11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (15, 19), (16, 20), (11, 23), (12, 24), (23, 24))
SIZE, SCALE = 300, 52  # panel pixels; pixels per shoulder width
OUT = ROOT / "docs" / "img" / "gestures.png"


def to_pixels(points: np.ndarray) -> np.ndarray:
    """Body frame (x towards the person's left, y up) to panel pixels (the person facing the reader)."""
    return np.stack([SIZE / 2 + SCALE * points[:, 0], SIZE * 0.42 - SCALE * points[:, 1]], axis=1)


def draw(panel: np.ndarray, points: np.ndarray, colour: tuple[int, int, int], width: int) -> None:
    pixels = to_pixels(points).astype(int)
    for a, b in BONES:
        cv2.line(panel, (int(pixels[a, 0]), int(pixels[a, 1])), (int(pixels[b, 0]), int(pixels[b, 1])), colour, width,
                 cv2.LINE_AA)
    cv2.circle(panel, (int(pixels[0, 0]), int(pixels[0, 1])), int(SCALE * 0.28), colour, width, cv2.LINE_AA)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    smoke = smoke_mode(parser.parse_args(argv).smoke)
    from edge.inference.gesture_model import DEFAULT_LANDMARKS
    from edge.inference.pose import body_coordinates

    data = np.load(DEFAULT_LANDMARKS, allow_pickle=False)
    whole = np.array(["#" not in str(s) for s in data["source"]])
    train = data["split"] == "train"
    panels = []
    for title, gesture, source_class in PANELS:
        rows = np.nonzero(whole & train & (data["gesture"] == gesture)
                          & ((data["source_class"] == source_class) if source_class else True))[0]
        drawn = sorted({i for bone in BONES for i in bone} | {0})
        poses = [p for p in (body_coordinates(data["landmarks"][i]) for i in rows)  # NaN: no body found
                 if p is not None and np.isfinite(p[drawn]).all() and np.abs(p[drawn]).max() < 4]
        panel = np.full((SIZE, SIZE, 3), 255, np.uint8)
        overlay = panel.copy()
        for pose in poses:
            draw(overlay, pose, (200, 170, 140), 1)
        panel = cv2.addWeighted(overlay, 0.5, panel, 0.5, 0)
        draw(panel, np.median(np.stack(poses), axis=0), (40, 40, 40), 3)
        cv2.putText(panel, title, (8, SIZE - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(panel, f"{len(poses)} real poses", (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (90, 90, 90), 1,
                    cv2.LINE_AA)
        panels.append(panel)
    figure = np.hstack(panels)
    out = ROOT / "bench" / "results" / "smoke" / "gestures.png" if smoke else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), figure)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
