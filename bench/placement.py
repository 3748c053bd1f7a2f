"""Camera placement from geometry: for each lens and resolution, the distances at which a visitor's face is
at least detector.min_face_px wide and the gesture span (a short visitor's X to a tall one's raised hands)
fits the frame, at three mounting heights. A calculation (edge/cli/placement.py states its assumptions), not a
measurement; `facecheck doctor` and `snapshot` check a real door's frames.

    python -m bench.placement [--min-face-px N]
"""

from __future__ import annotations

import argparse
import sys

from bench.common import ROOT, SMOKE_HELP, smoke_mode, write

LENSES = (60, 75, 90)
RESOLUTIONS = ((640, 480), (1280, 720))
MOUNTS = (1.5, 1.675, 2.0)


def main(argv=None) -> int:
    from edge.cli.placement import FACE_WIDTH_M, GESTURE_HIGH_M, GESTURE_LOW_M, coverage
    from edge.config import config_from_dict

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-face-px", type=int, default=config_from_dict({}, ROOT).detector.min_face_px)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP + "; the geometry is quick, so all of it runs")
    args = parser.parse_args(argv)
    smoke_mode(args.smoke)
    print(f"face {FACE_WIDTH_M * 100:.0f} cm wide must be >= {args.min_face_px} px; gesture span "
          f"{GESTURE_LOW_M:.2f}-{GESTURE_HIGH_M:.2f} m above the floor; level camera\n")
    print("| lens (across) | resolution | vertical | face >= min up to | nearest at "
          + " | nearest at ".join(f"{m:.2f} m" for m in MOUNTS) + " |")
    print("|---|---|---|---|" + "---|" * len(MOUNTS))
    rows = []
    for lens in LENSES:
        for width, height in RESOLUTIONS:
            cells = [coverage(lens, width, height, args.min_face_px, m) for m in MOUNTS]
            rows.append({"lens_deg": lens, "width": width, "height": height, "vfov_deg": round(cells[0].vfov_deg, 1),
                         "farthest_m": round(cells[0].farthest_m, 2),
                         "nearest_m": {f"{m:.3f}": round(c.nearest_m, 2) for m, c in zip(MOUNTS, cells)}})
            print(f"| {lens}° | {width}×{height} | {cells[0].vfov_deg:.0f}° | {cells[0].farthest_m:.2f} m | "
                  + " | ".join(f"{c.nearest_m:.2f} m" + ("" if c.usable else " (no band)") for c in cells) + " |")
    print(f"\nwrote {write('placement', {'min_face_px': args.min_face_px, 'rows': rows})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
