"""Where to put the camera: the geometry of a door camera that must see a face large enough to identify
and the raised hands of a gesture, and a check of real frames that the hands stay inside the picture.

The geometry assumes a level camera (optical axis horizontal) at mounting height `mount_m`, a face
FACE_WIDTH_M wide (BlazeFace's box is about the face's width), and the span a gesture needs: from
GESTURE_LOW_M (a short visitor's X in front of the chest) to GESTURE_HIGH_M (a tall visitor's hands raised
for capture). The band of usable distances is from where that span first fits the vertical field of view
to where the face shrinks below detector.min_face_px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge.inference.pose import LEFT_ELBOW, LEFT_WRIST, RIGHT_ELBOW, RIGHT_WRIST

FACE_WIDTH_M = 0.15
GESTURE_LOW_M = 1.00  # the crossed forearms of a 1.50 m visitor
GESTURE_HIGH_M = 2.35  # the raised hands of a 1.90 m visitor
EDGE_SHARE = 0.02  # a hand this close to the frame's edge (share of the frame) counts as leaving it


@dataclass(frozen=True)
class Coverage:
    hfov_deg: float
    width: int
    height: int
    vfov_deg: float
    nearest_m: float  # closer than this, the gesture span does not fit the frame at this mounting height
    farthest_m: float  # further than this, the face is below min_face_px

    @property
    def usable(self) -> bool:
        return self.nearest_m <= self.farthest_m


def coverage(hfov_deg: float, width: int, height: int, min_face_px: int, mount_m: float) -> Coverage:
    half_h = math.radians(hfov_deg) / 2
    focal_px = (width / 2) / math.tan(half_h)  # square pixels
    half_v = math.atan((height / 2) / focal_px)
    reach = max(GESTURE_HIGH_M - mount_m, mount_m - GESTURE_LOW_M)
    return Coverage(hfov_deg, width, height, math.degrees(2 * half_v), reach / math.tan(half_v),
                    focal_px * FACE_WIDTH_M / min_face_px)


def best_mount_m() -> float:
    """The height that centres the gesture span, where the nearest usable distance is smallest."""
    return (GESTURE_LOW_M + GESTURE_HIGH_M) / 2


HANDS = {LEFT_WRIST: "left wrist", RIGHT_WRIST: "right wrist", LEFT_ELBOW: "left elbow", RIGHT_ELBOW: "right elbow"}


def framing_problems(poses: list, width: int, height: int) -> list[str]:
    """What of each body's arms lies above or beside the frame (or at its edge): a raised hand that leaves the
    picture cannot be read. BlazePose places landmarks it cannot see beyond the frame, so their positions tell.
    Hands below the bottom are not reported: hanging arms leave a close frame there and make no gesture."""
    problems = []
    edge_x, edge_y = EDGE_SHARE * width, EDGE_SHARE * height
    for number, pose in enumerate(poses, 1):
        sides = []
        for index, name in HANDS.items():
            x, y = (float(v) for v in pose.landmarks[index])
            where = ("above the top" if y < edge_y else None if y > height - edge_y  # hands down: not a gesture
                     else "left of the frame" if x < edge_x else "right of the frame" if x > width - edge_x else None)
            if where:
                sides.append(f"{name} {where}")
        if sides:
            problems.append(f"body {number}: {', '.join(sides)}")
    return problems


FRAMING_ADVICE = ("raised hands leave the frame, so O and capture cannot be read there: mount the camera nearer "
                  f"{best_mount_m():.2f} m, have visitors stand further back, or use a wider lens "
                  "(docs/gestures.md, camera placement)")

