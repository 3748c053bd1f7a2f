"""Shared helpers for the benchmarks: timing statistics, the host's description, where results go, and the smoke
mode every benchmark has (`--smoke`: each code path on tiny inputs, results under bench/results/smoke/; CI runs
it so a missing install step shows, and its numbers mean nothing)."""

from __future__ import annotations

import json
import platform
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def default_model() -> Path:
    """The FaceNet file the shipped config runs (embedder.model's default), in this checkout's models/."""
    from edge.config import config_from_dict

    return config_from_dict({}, ROOT).embedder.model


def default_fused() -> tuple[Path, ...]:
    """The embedders the shipped config fuses with default_model() (embedder.fuse_with's default: MobileFaceNet)."""
    from edge.config import config_from_dict

    return tuple(config_from_dict({}, ROOT).embedder.fuse_with)


def default_embedder() -> dict:
    """The shipped config's embedder settings (the door's default identity), with this checkout's model paths."""
    return {"model": str(default_model()), "fuse_with": [str(path) for path in default_fused()]}


def measure(fn, repeat: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    arr = np.array(samples)
    return {"p50_ms": round(float(np.percentile(arr, 50)), 3), "p95_ms": round(float(np.percentile(arr, 95)), 3),
            "mean_ms": round(float(arr.mean()), 3), "n": repeat}


# The instructions that decide how fast int8 and float32 inference can be: x86 AVX2/FMA, AVX-512 and the
# integer dot products (VNNI); ARM NEON (asimd), its dot product (asimddp), int8 matrix multiply (i8mm).
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm")


def simd() -> list[str]:
    """Which of SIMD_FLAGS this CPU has (/proc/cpuinfo), as the speed of the same model differs fourfold
    between hosts of one cloud kind with and without VNNI."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    have = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            have.update(value.split())
    return [flag for flag in SIMD_FLAGS if flag in have]


def machine() -> dict:
    import os

    return {"machine": platform.machine(), "python": platform.python_version(), "cores": os.cpu_count(),
            "processor": platform.processor() or platform.machine(), "simd": simd()}


SMOKE_HELP = "every code path on tiny inputs, results under bench/results/smoke/ (a check that it runs: no figures)"
_smoke = [False]


def smoke_mode(enabled: bool) -> bool:
    """Switch the smoke mode on for this process (results then go under bench/results/smoke/); the flag."""
    _smoke[0] = bool(enabled)
    return _smoke[0]


def smoke_mode_on() -> bool:
    """In smoke mode a comparison that cannot run (face_recognition missing) is a failure, not a note: the smoke
    pass exists to show a missing install step."""
    return _smoke[0]


def results_dir() -> Path:
    return RESULTS / "smoke" if _smoke[0] else RESULTS


def write(name: str, data: dict) -> Path:
    """bench/results/<name>.json (smoke: bench/results/smoke/<name>.json); a plot goes beside it as .png."""
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({**data, "smoke": _smoke[0]}, indent=2) + "\n")
    return path


class PeakRss:
    """A child process's own peak RSS (VmHWM), sampled while it lives. (getrusage(RUSAGE_CHILDREN) is no
    use here: Linux carries ru_maxrss over fork + exec, so it reports the benchmark's own peak.)"""

    def __init__(self, pid: int, every_s: float = 0.05):
        self.peak_kb = 0
        self._status = Path(f"/proc/{pid}/status")
        self._every_s = every_s
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while True:
            try:
                line = next(x for x in self._status.read_text().splitlines() if x.startswith("VmHWM:"))
                self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except (OSError, StopIteration, ValueError):
                return  # gone, or a zombie without memory figures
            time.sleep(self._every_s)

    @property
    def peak_mb(self) -> float:
        return round(self.peak_kb / 1024, 1)
