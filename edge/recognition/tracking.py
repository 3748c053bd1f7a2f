"""Follows faces across frames by box overlap, so each person gets one track id while in view."""

from __future__ import annotations

from dataclasses import dataclass

from edge.inference.detector import box_iou


@dataclass
class _Track:
    track_id: int
    box: tuple[int, int, int, int]
    last_seen: float


class IouTracker:
    def __init__(self, min_iou: float = 0.3, max_age_s: float = 0.5):
        self.min_iou = min_iou
        self.max_age_s = max_age_s
        self._tracks: list[_Track] = []
        self._next_id = 1

    def assign(self, boxes: list[tuple[int, int, int, int]], ts: float) -> list[int]:
        """A track id per box: greedy best-overlap matching against live tracks, new ids for the rest."""
        self._tracks = [t for t in self._tracks if ts - t.last_seen <= self.max_age_s]
        pairs = sorted(((box_iou(b, t.box), i, j) for i, b in enumerate(boxes) for j, t in enumerate(self._tracks)),
                       reverse=True)
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for overlap, i, j in pairs:
            if overlap < self.min_iou:
                break
            if ids[i] is None and j not in used:
                ids[i] = self._tracks[j].track_id
                used.add(j)
                self._tracks[j].box, self._tracks[j].last_seen = boxes[i], ts
        for i, box in enumerate(boxes):
            if ids[i] is None:
                ids[i] = self._next_id
                self._tracks.append(_Track(self._next_id, box, ts))
                self._next_id += 1
        return [int(t) for t in ids]  # type: ignore[arg-type]

    def split(self, track_id: int) -> int:
        """End track_id and give its box a new id (the face in it turned out to be someone else)."""
        for track in self._tracks:
            if track.track_id == track_id:
                track.track_id = self._next_id
                self._next_id += 1
                return track.track_id
        raise KeyError(track_id)

    def live_ids(self) -> set[int]:
        return {t.track_id for t in self._tracks}
