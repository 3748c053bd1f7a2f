"""Real photographs shipped with the package for the demo, the converter's parity check and tests.

Downscaled copies of public test images from PyPI packages (see data/samples/ATTRIBUTION.md).
"""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).parent / "data" / "samples"


def sample(name: str) -> Path:
    path = SAMPLES_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sample photo missing from the package")
    return path


def sample_photos() -> list[Path]:
    return sorted(SAMPLES_DIR.glob("*.jpg"))
