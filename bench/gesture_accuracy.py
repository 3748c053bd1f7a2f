"""Gestures read from real bodies: per classifier, the confusion on labelled real photos, and per visit.

    python -m bench.gesture_accuracy [--shared PATH] [--visits N] [LABEL=FOLDER ...]

Default data: the gesture photo set in the shared data folder beside the project (skipped with a message
where it is absent): 658 frames of 3 people in 14 classes and 22 photos of the O. Each class maps to the
door's gesture (docs/gestures.md): follow -> reject (X), take_off -> capture, o-yoga -> confirm (O), every
other class -> none (near misses). Each photo is read whole and in the two closer views the packaged data
was derived with (waist-up, chest-up), as a door camera sees people nearer.

The learned classifier was trained on three photos in four (and their views): its figures are given for
the held-out photos, the ones it never saw, and apart from those for the photos it trained on. The rules
were trained on nothing. Or give LABEL=FOLDER pairs of your own (every photo counts as new).

Per classifier: per gesture the confusion row, bodies found and recall where a body was found; wrong
triggers (near misses read as O, X or capture). Per visit: the real frames' per-frame reads (misses
included) drawn into 1 s holds at 10, 15 and 30 fps through the confirmation state machine in force
(confirmation.hold_frames of hold_window): share confirmed within 2 s, and false confirmations per
near-miss visit of confirmation.timeout_s. Pose ms per frame here, and the pose models' op counts for a
board estimate. Only the full BlazePose landmark model ships in the pinned mediapipe wheel (no lite, no
heavy), so only it is measured. Writes bench/results/gesture_accuracy.json and .png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, SMOKE_HELP, machine, smoke_mode, write

ACTIONS = ("confirm", "reject", "capture")
FPS = (10, 15, 30)


def shared_sets(shared: Path) -> list[tuple[str, str, Path, str]]:
    """(door gesture, class, photo, split) for the shared gesture set; [] where it is absent."""
    from converters.gestures import labelled_photos, split_of

    root = shared / "gestures"
    if not (root / "ecg").is_dir():
        return []
    return [(gesture, name, photo, split_of(str(photo.relative_to(root))))
            for gesture, name, photo in labelled_photos(root)]


def own_sets(labelled: list[str]) -> list[tuple[str, str, Path, str]]:
    from converters.gestures import photos_in
    from edge.inference.gestures import GESTURES

    out = []
    for item in labelled:
        label, _, folder = item.partition("=")
        if label not in GESTURES or not Path(folder).is_dir():
            raise SystemExit(f"bench.gesture_accuracy: {item!r} is not LABEL=FOLDER with LABEL one of {GESTURES}")
        out += [("none" if label == "standby" else label, Path(folder).name, photo, "heldout")
                for photo in photos_in(Path(folder))]
    return out


def read_all(pose_model, photos) -> tuple[list[dict], list[float]]:
    """Every photo's body (whole and in its closer views): one record per image read."""
    from converters.gestures import views_of
    from edge.images import read_image

    records, times = [], []
    for gesture, name, photo, split in photos:
        image = read_image(photo)
        started = time.perf_counter()
        found = pose_model.poses(image)
        times.append(time.perf_counter() - started)
        records.append({"gesture": gesture, "class": name, "view": "whole", "split": split,
                        "pose": found[0] if found else None})
        if not found:
            continue
        for view, cut in views_of(image, found[0].landmarks, gesture).items():
            again = pose_model.poses(cut)
            records.append({"gesture": gesture, "class": name, "view": view, "split": split,
                            "pose": again[0] if again else None})
    return records, times


def visits(reads: dict[str, list[str | None]], near_misses: dict[str, list[str | None]], config, count: int,
           seed: int = 0) -> dict:
    """Per fps: share of 1 s holds confirmed within 2 s, and false confirmations in near-miss visits.

    A visit is the face recognised (recognise_frames), then frames at the fps: for a gesture, 1 s of frames
    drawn from that gesture's real per-frame reads, then arms down; for a near miss, timeout_s of frames
    drawn from one near-miss class's reads. Draws are independent: a real person badly seen in one frame
    is often badly seen in the next, which this does not model."""
    from edge.recognition.decision import GESTURE_EVENTS, Confirmation, Observation

    rng = np.random.default_rng(seed)
    cfg = config.confirmation

    out = {}
    for fps in FPS:
        row = {}
        for gesture, pool in reads.items():
            if not pool:
                continue
            confirmed = 0
            for _ in range(count):
                hold = [pool[k] for k in rng.integers(len(pool), size=fps)]
                machine = Confirmation(cfg)
                frames = [None] * cfg.recognise_frames + hold + ["none"] * fps
                for i, seen in enumerate(frames):
                    t = i / fps
                    got = machine.update(t, [Observation(1, True, "p-1", "Visitor", 0.9, seen)])
                    if got:
                        confirmed += got[0].type == GESTURE_EVENTS[gesture] and (i - cfg.recognise_frames) / fps <= 2.0
                        break
            row[gesture] = round(confirmed / count, 4)
        false = total = 0
        for pool in near_misses.values():
            if not pool:
                continue
            length = int(cfg.timeout_s * fps)
            for _ in range(max(1, count // len(near_misses))):
                machine = Confirmation(cfg)
                frames = [None] * cfg.recognise_frames + [pool[k] for k in rng.integers(len(pool), size=length)]
                total += 1
                false += any(machine.update(i / fps, [Observation(1, True, "p-1", "Visitor", 0.9, seen)])
                             for i, seen in enumerate(frames))
        row["near_miss_visits"], row["false_confirmations"] = total, false
        out[str(fps)] = row
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared data folder")
    parser.add_argument("--visits", type=int, default=1000, help="simulated visits per gesture and fps")
    parser.add_argument("labelled", nargs="*", metavar="LABEL=FOLDER", help="your own labelled folders instead")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    smoke = smoke_mode(args.smoke)
    if smoke:
        args.visits = 20
    from bench.opcount import count_macs
    from edge.config import config_from_dict
    from edge.inference.gestures import NO_BODY, Confusion, build_classifier
    from edge.service.assembly import build_pose

    photos = own_sets(args.labelled) if args.labelled else shared_sets(args.shared)
    if smoke:  # two photos of each gesture and class, both splits where there are
        photos = [p for i, p in enumerate(photos) if sum(q[:2] == p[:2] for q in photos[:i]) < 2]
    if not photos:
        print(f"skipping: no gesture photos in {args.shared / 'gestures'} (the shared data folder beside the "
              "project); pass LABEL=FOLDER pairs of your own")
        return 0
    config = config_from_dict({}, ROOT)
    g = config.gestures
    pose_model = build_pose(config)
    classifiers = {kind: build_classifier(kind, g.trained_model, g.min_visibility) for kind in ("rules", "learned")}
    if g.trained_model.is_file():
        classifiers["trained"] = build_classifier("trained", g.trained_model, g.min_visibility)
    records, times = read_all(pose_model, photos)
    result: dict = {"machine": machine(), "landmark_model": "pose_landmark_full (the only one the wheel ships)",
                    "photos": len(photos), "images_read": len(records),
                    "pose_ms_per_photo": {"p50": round(1000 * float(np.median(times)), 1),
                                          "p95": round(1000 * float(np.percentile(times, 95)), 1)},
                    "pose_gmac": {name: round(count_macs(pose_model_file)[0] / 1e9, 3) for name, pose_model_file in
                                  (("detector", pose_model.detector.path), ("landmarks", pose_model.landmarker.path))},
                    "classifiers": {}}
    print(f"{len(photos)} photos, {len(records)} images with the closer views; pose p50 "
          f"{result['pose_ms_per_photo']['p50']} ms per photo ({result['machine']['simd']})")
    for label, classifier in classifiers.items():
        for record in records:
            record[label] = classifier.classify(record["pose"]) if record["pose"] is not None else NO_BODY
        groups = {"held-out photos": lambda r: r["split"] == "heldout"}
        if label == "rules" or args.labelled:
            groups = {"all photos": lambda r: True}
        elif not args.labelled:
            groups["photos it trained on"] = lambda r: r["split"] == "train"
        found: dict = {}
        for group, chosen in groups.items():
            for view in ("whole", "closer views"):
                confusion, by_class = Confusion(), Confusion()
                for r in records:
                    if chosen(r) and (r["view"] == "whole") == (view == "whole"):
                        confusion.add(r["gesture"], r[label])
                        by_class.add(r["class"], r[label])
                key = f"{group}, {view}"
                found[key] = {**confusion.as_dict(), "by_class": by_class.rows}
                print(f"\n== classifier {label}: {key}")
                print(confusion.table())
                print("per class: " + "; ".join(
                    f"{name} {sum(n for k, n in row.items() if k != NO_BODY)}/{sum(row.values())} bodies"
                    + "".join(f", {k} {n}" for k, n in row.items() if k not in (NO_BODY, "none"))
                    for name, row in by_class.rows.items()))
        out_of_sample = [r for r in records if r["split"] == "heldout" or label == "rules" or args.labelled]
        reads = {gesture: [None if r[label] == NO_BODY else r[label] for r in out_of_sample if r["gesture"] == gesture]
                 for gesture in ACTIONS}
        near = {}
        for r in out_of_sample:
            if r["gesture"] == "none":
                near.setdefault(r["class"], []).append(None if r[label] == NO_BODY else r[label])
        c = config.confirmation
        in_a_row = config.model_copy(update={"confirmation": c.model_copy(update={"hold_window": c.hold_frames})})
        for key, setting in (("visits", config), ("visits_in_a_row", in_a_row)):
            found[key] = visits(reads, near, setting, args.visits)
            print(f"per visit ({args.visits} per gesture and fps; 1 s hold, confirmed within 2 s; hold_frames "
                  f"{c.hold_frames} of the last {setting.confirmation.hold_window} frames):")
            for fps, row in found[key].items():
                print(f"  {fps} fps: " + ", ".join(f"{g} {100 * row[g]:.1f}%" for g in ACTIONS if g in row)
                      + f"; false confirmations {row['false_confirmations']} in {row['near_miss_visits']} "
                        "near-miss visits")
        result["classifiers"][label] = found
    path = write("gesture_accuracy", result)
    plot(result, path.with_suffix(".png"))
    print(f"\nwrote {path} and {path.with_suffix('.png')}")
    return 0


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge.inference.gestures import GESTURES, NO_BODY

    columns = [*[g for g in GESTURES if g != "standby"], "standby", NO_BODY]
    panels = [(label, key, found[key]) for label, found in result["classifiers"].items()
              for key in found if not key.startswith("visits") and not key.startswith("photos it trained")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    for ax, (label, key, found) in zip(axes[0], panels):
        rows = [t for t in GESTURES if t in found["rows"]]
        matrix = np.array([[found["rows"][t].get(c, 0) for c in columns] for t in rows])
        ax.imshow(matrix / np.maximum(matrix.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        for i in range(len(rows)):
            for j in range(len(columns)):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(columns)), columns, rotation=30)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("read as")
        ax.set_ylabel("true gesture")
        ax.set_title(f"{label}: {key}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    sys.exit(main())
