"""The frame-source interface every camera kind implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge.errors import BadInputError


class SourceUnavailable(Exception):
    """The device or stream cannot deliver frames now; the capture thread retries with back-off."""


class SourceError(BadInputError):
    """A configuration problem retrying cannot fix (bad path, missing backend)."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR, HxWx3 uint8
    ts: float  # seconds; replayed sources use a synthetic clock (index / fps) so runs are repeatable
    index: int
    source: str


class FrameSource(Protocol):
    name: str
    realtime: bool  # False: every frame must be handed over (replay for tests); True: newest wins

    def open(self) -> None:
        """Raise SourceUnavailable (retry) or SourceError (give up)."""

    def read(self) -> tuple[np.ndarray, float | None] | None:
        """Next BGR image and its own timestamp (None = use the capture clock); None at end of stream."""

    def close(self) -> None: ...
