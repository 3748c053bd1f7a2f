"""Nearest enrolled embeddings for 1:N matching: exact float32 for small rosters, compact int8 for big ones.

A roster of 100k people at 128-d is 51 MB of float32, and searching it is one matrix product that is
memory-bound. From COMPACT_FROM embeddings the search runs over 8-bit codes (faiss's scalar quantiser,
one byte per dimension: a quarter of the memory), and the top CANDIDATES found there are re-scored
exactly against the float32 embeddings, so the distance the open-set rule sees is always exact.
Recall against exact search, memory and build time are measured by `python -m bench.search`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

COMPACT_FROM = 20_000  # embeddings; below this the float32 product takes well under a millisecond
CANDIDATES = 16  # re-scored exactly; also how far the runner-up for the ambiguity rule is looked for


class Search(Protocol):
    kind: str

    def top(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(row indices, exact cosine similarities), best first, at most k of them."""
        ...

    def nbytes(self) -> int:
        """Memory the search holds beyond the gallery's own embeddings."""
        ...


class ExactSearch:
    kind = "exact float32"

    def __init__(self, embeddings: np.ndarray):
        self._matrix = embeddings

    def top(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims = self._matrix @ query
        k = min(k, len(sims))
        rows = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        rows = rows[np.argsort(-sims[rows], kind="stable")]
        return rows, sims[rows]

    def nbytes(self) -> int:
        return self._matrix.nbytes


class CompactSearch:
    """faiss IndexScalarQuantizer (8 bits per dimension, inner product), re-scored in float32 against the
    gallery's own embeddings, which it reads in place (no float32 copy is kept)."""

    kind = "int8 codes, top candidates re-scored exactly"

    def __init__(self, embeddings: np.ndarray, rows: np.ndarray):
        import faiss

        # One query at a time from the single inference loop: OpenMP threads only add start-up cost.
        faiss.omp_set_num_threads(1)
        self._embeddings, self._rows = embeddings, rows
        searched = np.ascontiguousarray(embeddings[rows], dtype=np.float32)  # only while building
        self._index = faiss.IndexScalarQuantizer(embeddings.shape[1], faiss.ScalarQuantizer.QT_8bit,
                                                 faiss.METRIC_INNER_PRODUCT)
        self._index.train(searched)
        self._index.add(searched)

    def top(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        _, found = self._index.search(query[None], max(k, CANDIDATES))
        found = found[0][found[0] >= 0]
        sims = self._embeddings[self._rows[found]] @ query
        order = np.argsort(-sims, kind="stable")[:k]
        return found[order], sims[order]

    def nbytes(self) -> int:
        return int(self._index.sa_code_size()) * int(self._index.ntotal) + self._rows.nbytes


def build_search(embeddings: np.ndarray, rows: np.ndarray, compact_from: int = COMPACT_FROM) -> Search:
    """A search over embeddings[rows] (N x dim float32, L2-normalised); results index into rows."""
    if len(rows) >= compact_from:
        return CompactSearch(embeddings, rows)
    return ExactSearch(np.ascontiguousarray(embeddings[rows], dtype=np.float32))
