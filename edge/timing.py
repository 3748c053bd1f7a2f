"""Per-stage latency bookkeeping for logs, health and benchmarks."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from contextlib import contextmanager

import numpy as np


class StageTimer:
    def __init__(self, window: int = 300):
        self._samples: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self._frames: deque[float] = deque(maxlen=window)

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self._samples[name].append((time.perf_counter() - start) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        self._samples[name].append(ms)

    def frame_done(self) -> None:
        self._frames.append(time.monotonic())

    def fps(self) -> float:
        if len(self._frames) < 2:
            return 0.0
        span = self._frames[-1] - self._frames[0]
        return (len(self._frames) - 1) / span if span > 0 else 0.0

    def summary(self) -> dict[str, dict[str, float]]:
        """stage -> {p50, p95, n} in milliseconds over the recent window."""
        return {
            name: {"p50": round(float(np.percentile(s, 50)), 2), "p95": round(float(np.percentile(s, 95)), 2),
                   "n": len(s)}
            for name, s in self._samples.items() if s
        }

    def line(self) -> str:
        parts = [f"{name} {v['p50']:.1f}/{v['p95']:.1f}ms" for name, v in self.summary().items()]
        return f"fps {self.fps():.1f}; p50/p95 " + ", ".join(parts)
