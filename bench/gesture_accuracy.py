"""Gestures read from real bodies: the confusion of the classifier in force on labelled real photos.

    python -m bench.gesture_accuracy [--shared PATH] [LABEL=FOLDER ...]

Default data: the gesture photo set in the shared data folder beside the project (skipped with a message
where it is absent): 658 frames of 3 people in 14 classes and 22 photos of the O. Each class maps to the
door's gesture (docs/gestures.md): follow -> reject (X), take_off -> capture, o-yoga -> confirm (O), every
other class -> none (near misses: hands on the head, goal posts, wrists crossed low, arms out, ...). Or give
LABEL=FOLDER pairs of your own. Per class: the confusion row, bodies found, recall where a body was found;
wrong triggers (near misses read as O, X or capture); pose ms per frame. Only the classifiers that can run
here are measured: the rules always, the trained one where `gestures.trained_model` exists. Only the full
BlazePose landmark model is in the bundle. Writes bench/results/gesture_accuracy.json and .png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import RESULTS, ROOT, machine, write

DOOR_GESTURE = {"follow": "reject", "take_off": "capture", "o-yoga": "confirm"}


def shared_sets(shared: Path) -> dict[str, tuple[str, list[Path]]]:
    """class -> (door gesture, photos) from the shared gesture set."""
    root = shared / "gestures"
    folders = sorted((root / "ecg").glob("*/")) + [root / "o-yoga"]
    return {folder.name: (DOOR_GESTURE.get(folder.name, "none"), photos_in(folder))
            for folder in folders if folder.is_dir()}


def photos_in(folder: Path) -> list[Path]:
    from edge.camera.replay import IMAGE_SUFFIXES

    return sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared data folder")
    parser.add_argument("labelled", nargs="*", metavar="LABEL=FOLDER", help="your own labelled folders instead")
    args = parser.parse_args(argv)
    from edge.config import config_from_dict
    from edge.images import read_image
    from edge.inference.gestures import NO_BODY, Confusion, build_classifier
    from edge.inference.pose import BlazePose

    if args.labelled:
        sets = {item.partition("=")[2]: (item.partition("=")[0], photos_in(Path(item.partition("=")[2])))
                for item in args.labelled}
    else:
        sets = shared_sets(args.shared)
        if not sets:
            print(f"skipping: no gesture photos in {args.shared / 'gestures'} (the shared data folder beside the "
                  "project); pass LABEL=FOLDER pairs of your own")
            return 0
    config = config_from_dict({}, ROOT)
    g = config.gestures
    pose_model = BlazePose.from_config(config)
    classifiers = {"rules": build_classifier("rules", g.trained_model, g.min_visibility)}
    if g.trained_model.is_file():
        classifiers["trained"] = build_classifier("trained", g.trained_model, g.min_visibility)
    else:
        print(f"the trained classifier is not measured: {g.trained_model} does not exist")
    result: dict = {"machine": machine(), "landmark_model": "pose_landmark_full", "classifiers": {}, "classes": {}}
    poses, times = [], []
    for name, (gesture, photos) in sets.items():
        for photo in photos:
            image = read_image(photo)
            started = time.perf_counter()
            poses.append((name, gesture, pose_model.poses(image)))
            times.append(time.perf_counter() - started)
    result["pose_ms_per_frame"] = {"p50": round(1000 * float(np.median(times)), 1),
                                   "p95": round(1000 * float(np.percentile(times, 95)), 1)}
    for label, classifier in classifiers.items():
        by_gesture, by_class = Confusion(), Confusion()
        for name, gesture, found in poses:
            read = classifier.classify(found[0]) if found else NO_BODY
            by_gesture.add(gesture, read)
            by_class.add(name, read)
        result["classifiers"][label] = {"by_gesture": by_gesture.as_dict(), "by_class": by_class.rows}
        print(f"\n== classifier {label} ({len(poses)} photos; pose p50 {result['pose_ms_per_frame']['p50']} ms)")
        print(by_gesture.table())
        print(f"{'class':14} {'door':8} {'photos':>6} {'bodies':>6}  read as")
        for name, (gesture, photos) in sets.items():
            row = by_class.rows.get(name, {})
            bodies = sum(n for read, n in row.items() if read != NO_BODY)
            reads = ", ".join(f"{read} {n}" for read, n in sorted(row.items(), key=lambda kv: -kv[1]) if read != NO_BODY)
            print(f"{name:14} {gesture:8} {len(photos):6} {bodies:6}  {reads}")
    result["classes"] = {name: {"door_gesture": gesture, "photos": len(photos)} for name, (gesture, photos) in sets.items()}
    path = write("gesture_accuracy", result)
    plot(result, RESULTS / "gesture_accuracy.png")
    print(f"\nwrote {path} and {RESULTS / 'gesture_accuracy.png'}")
    return 0


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge.inference.gestures import GESTURES, NO_BODY

    columns = [*GESTURES, NO_BODY]
    fig, axes = plt.subplots(1, len(result["classifiers"]), figsize=(7 * len(result["classifiers"]), 5), squeeze=False)
    for ax, (label, found) in zip(axes[0], result["classifiers"].items()):
        rows = [t for t in GESTURES if t in found["by_gesture"]["rows"]]
        matrix = np.array([[found["by_gesture"]["rows"][t].get(c, 0) for c in columns] for t in rows])
        ax.imshow(matrix / np.maximum(matrix.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        for i in range(len(rows)):
            for j in range(len(columns)):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=9)
        ax.set_xticks(range(len(columns)), columns, rotation=30)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("read as")
        ax.set_ylabel("true gesture")
        ax.set_title(f"classifier {label}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
