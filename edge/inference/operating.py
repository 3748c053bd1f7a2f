"""Each FaceNet model's measured operating point: the distance threshold chosen from real impostor pairs.

`python -m bench.accuracy --write-operating-points` measures every built model on real labelled photos
and writes edge/data/operating_points.json; the matcher uses the entry of the model it runs as its
default threshold, and doctor and the health payload report it. The rule: the largest distance at which
no impostor pair of the benchmark is accepted, less SAFETY. SAFETY covers how far the same model's
distances move between hosts and their kernels: the int8 model on (emulated) arm64 moved them by at most
0.0014 against x86_64 (scripts/check-arm64), so 0.02 leaves more than ten times that. Each precision has
its own point (int8 moves distances by up to 0.016 against float32). SAFETY was 0.05 while the robust
alignment fit jumped between keypoint pairs and moved distances across hosts by up to 0.045. With none
of N impostor pairs accepted, the per-comparison false-accept rate is below 3/N at 95 % confidence
(the rule of three); a stranger meets every enrolled photo, so for a roster of P photos the bound is
1 - (1 - 3/N)^P.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

POINTS_FILE = Path(__file__).resolve().parents[1] / "data" / "operating_points.json"
SAFETY = 0.02


@dataclass(frozen=True)
class OperatingPoint:
    model_id: str
    threshold: float
    impostor_pairs: int
    genuine_pairs: int
    far: float  # measured false accepts per impostor comparison at the threshold
    far_bound_95: float  # upper 95 % bound on it
    tar: float  # measured true accepts per genuine comparison at the threshold
    dataset: str

    def stranger_far_bound(self, photos: int) -> float:
        """Upper bound on a stranger being accepted by a roster of `photos` enrolled photos."""
        return 1.0 - (1.0 - self.far_bound_95) ** max(photos, 1)

    def as_dict(self) -> dict:
        return {key: (round(value, 6) if isinstance(value, float) else value) for key, value in asdict(self).items()}


def from_distances(model_id: str, impostor, genuine, dataset: str) -> OperatingPoint:
    """The operating point that the rule above picks from measured pair distances."""
    import numpy as np

    impostor, genuine = np.asarray(impostor), np.asarray(genuine)
    threshold = float(np.floor((impostor.min() - SAFETY) * 1000) / 1000)
    return OperatingPoint(model_id, threshold, int(impostor.size), int(genuine.size),
                          float((impostor <= threshold).mean()), min(1.0, 3.0 / impostor.size),
                          float((genuine <= threshold).mean()), dataset)


def summary(threshold: float, origin: str, point: OperatingPoint | None, photos: int) -> dict:
    """What the health payload and doctor say about the threshold in force and what it buys."""
    measured = None
    if point is not None:
        measured = {"model_id": point.model_id, "threshold": point.threshold, "far_bound_95": point.far_bound_95,
                    "tar": round(point.tar, 4), "impostor_pairs": point.impostor_pairs,
                    "stranger_far_bound": round(point.stranger_far_bound(photos), 4), "roster_photos": photos}
    return {"threshold": round(threshold, 4), "threshold_origin": origin, "operating_point": measured}


def load_points(path: Path = POINTS_FILE) -> dict[str, OperatingPoint]:
    if not path.is_file():
        return {}
    return {key: OperatingPoint(**value) for key, value in json.loads(path.read_text()).items()}


def operating_point(model_id: str) -> OperatingPoint | None:
    return load_points().get(model_id)


def save_points(points: dict[str, OperatingPoint], path: Path = POINTS_FILE) -> None:
    from edge.atomic import atomic_write

    text = json.dumps({key: points[key].as_dict() for key in sorted(points)}, indent=2) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))
