"""What `pip install facecheck-edge` puts on a door: the files the runtime needs, and a lean dependency list."""

import shutil
import subprocess
import sys
import zipfile

from tests.conftest import ROOT


def test_the_wheel_carries_the_sample_photos_schemas_and_operating_points_and_no_model_toolchain(tmp_path):
    # from the tracked files alone: an in-tree build/ folder would hand setuptools stale copies
    source = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for name in tracked.splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("facecheck_edge-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for photo in ("obama-1.jpg", "obama-2.jpg", "biden-1.jpg", "collins-1.jpg", "cameraman.jpg"):
        assert f"edge/data/samples/{photo}" in names, f"facecheck demo needs {photo}"
    assert "edge/data/operating_points.json" in names and "edge/schemas/event.schema.json" in names
    runtime = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
               if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert runtime and not [r for r in runtime if r.startswith(("mediapipe", "tensorflow", "opencv-contrib"))]
    assert any(r.startswith("ai-edge-litert") and "3.12" in r for r in runtime), "LiteRT 2.3 from Python 3.12 on"
    assert "Requires-Python: <3.14,>=3.10" in metadata or "Requires-Python: >=3.10,<3.14" in metadata
