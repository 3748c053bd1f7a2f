"""1:N search at 10k / 100k / 1M identities: exact float32 against the compact int8 search the matcher uses.

    .venv/bin/python -m bench.search [--sizes 10000,100000,1000000] [--repeat 200]

The rosters are SYNTHETIC clustered embeddings, not faces: one random unit centre per person, the enrolled
photo and each probe a noisy copy of it (noise set so that a probe lies ~0.74 from its enrolled photo,
the median genuine distance of the default model on the real benchmark photos), plus strangers (new
centres). For each size: build time, memory of the search structure, match latency p50/p95 of the real
NearestMatcher (search + exact re-scoring + ambiguity rule), recall@1 (how often the compact search's
nearest embedding is exact float32 search's) and how often the matcher's decision at threshold 1.0 is the same.
Writes bench/results/search.json.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from bench.common import SMOKE_HELP, machine, measure, smoke_mode, write
from bench.identity import DIM
from edge.identity.gallery import Gallery
from edge.identity.matcher import NearestMatcher

NOISE = 0.055  # per dimension, before re-normalising: genuine distance ~0.74 at 128-d
PROBES, STRANGERS = 400, 100


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def roster(people: int, seed: int = 0) -> tuple[Gallery, np.ndarray]:
    """(gallery with one enrolled photo per person, probes: PROBES genuine then STRANGERS strangers)."""
    rng = np.random.default_rng(seed)
    centres = np.empty((people, DIM), np.float32)
    for start in range(0, people, 100_000):  # bounded temporaries at 1M
        stop = min(people, start + 100_000)
        centres[start:stop] = unit(rng.standard_normal((stop - start, DIM)))
    enrolled = np.empty_like(centres)
    for start in range(0, people, 100_000):
        stop = min(people, start + 100_000)
        enrolled[start:stop] = unit(centres[start:stop] + NOISE * rng.standard_normal((stop - start, DIM)))
    who = rng.choice(people, PROBES, replace=False)
    probes = np.vstack([unit(centres[who] + NOISE * rng.standard_normal((PROBES, DIM))),
                        unit(rng.standard_normal((STRANGERS, DIM)))])
    del centres
    gallery = Gallery("bench", DIM, enrolled, np.arange(people, dtype=np.int32), np.ones(people, bool),
                      [f"p{i}" for i in range(people)], [f"person {i}" for i in range(people)])
    return gallery, probes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args(argv)
    if smoke_mode(args.smoke):
        args.sizes, args.repeat = "1000,5000", 5
    result: dict = {"machine": machine(), "dim": DIM, "data": "synthetic clustered unit vectors (see docstring)",
                    "sizes": {}}
    print(f"{'identities':>10} {'search':>8} {'build s':>8} {'MB':>7} {'match p50':>10} {'p95 ms':>8} {'recall@1':>9}")
    for people in (int(s) for s in args.sizes.split(",")):
        gallery, probes = roster(people)
        row: dict = {"float32_gallery_mb": round(gallery.embeddings.nbytes / 1e6, 1)}
        answers, nearest = {}, {}
        for name, compact_from in (("exact", 10 ** 12), ("compact", 0)):
            started = time.perf_counter()
            matcher = NearestMatcher(gallery, threshold=1.0, compact_from=compact_from)
            build = time.perf_counter() - started
            answers[name] = np.array([matcher.match(q).person_id or "" for q in probes])
            nearest[name] = np.array([matcher.search.top(q, 1)[0][0] for q in probes])
            probe = iter(range(10 ** 9))
            timing = measure(lambda m=matcher, p=probes: m.match(p[next(probe) % len(p)]), args.repeat)
            memory = matcher.search.nbytes()
            recall = float((nearest[name] == nearest["exact"]).mean())
            row[name] = {"search": matcher.search.kind, "build_s": round(build, 2), "memory_mb": round(memory / 1e6, 1),
                         **timing, "recall_at_1": round(recall, 4),
                         "same_decision_as_exact": round(float((answers[name] == answers["exact"]).mean()), 4)}
            print(f"{people:>10} {name:>8} {build:8.2f} {memory / 1e6:7.1f} {timing['p50_ms']:10.3f} "
                  f"{timing['p95_ms']:8.3f} {recall:9.4f}", flush=True)
            del matcher
        row["genuine_probes_named"] = {name: int((a[:PROBES] != "").sum()) for name, a in answers.items()}
        row["strangers_named"] = {name: int((a[PROBES:] != "").sum()) for name, a in answers.items()}
        result["sizes"][str(people)] = row
        del gallery
    print(f"wrote {write('search', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
