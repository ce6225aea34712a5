"""Sparse rows as three numpy arrays, for the relevance features' batch path.

scipy's sparse matrices check their format, choose index dtypes and validate indices on every
construction and every row selection: for one comment (what `/v1/score` scores) that bookkeeping
cost more than the arithmetic. `Rows` holds CSR arrays (int64 indptr and indices, float64 data,
indices sorted within each row) and does only the few operations the features need, each a handful
of numpy calls whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_NO_INDEX = np.zeros(0, dtype=np.int64)


def spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions starts[i], starts[i]+1, …, starts[i]+lengths[i]-1 for every i, concatenated."""
    total = int(lengths.sum())
    if total == 0:
        return _NO_INDEX
    offsets = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) + np.repeat(starts - offsets, lengths)


@dataclass(frozen=True, slots=True)
class Rows:
    """A batch of sparse rows: row i holds data[indptr[i]:indptr[i+1]] at those indices (sorted)."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    width: int

    @classmethod
    def empty(cls, n: int, width: int) -> Rows:
        return cls(np.zeros(n + 1, dtype=np.int64), _NO_INDEX, np.zeros(0), width)

    @classmethod
    def stack(cls, vectors: Sequence[tuple[np.ndarray, np.ndarray]], width: int) -> Rows:
        """Rows from (sorted columns, values) vectors, one row each."""
        indptr = np.zeros(len(vectors) + 1, dtype=np.int64)
        if not vectors:
            return cls(indptr, _NO_INDEX, np.zeros(0), width)
        np.cumsum([len(c) for c, _ in vectors], out=indptr[1:])
        indices = np.concatenate([c for c, _ in vectors]).astype(np.int64, copy=False)
        data = np.concatenate([v for _, v in vectors]).astype(np.float64, copy=False)
        return cls(indptr, indices, data, width)

    @classmethod
    def tfidf(cls, ids: np.ndarray, lengths: np.ndarray, idf: np.ndarray, sublinear: bool = True) -> Rows:
        """Unit TF-IDF rows from term ids: text i holds the next lengths[i] of `ids` (repeats count);
        tf is 1 + log(count) when `sublinear`, the raw count otherwise."""
        width = len(idf)
        if not len(ids):
            return cls.empty(len(lengths), width)
        owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        keys, counts = np.unique(owner * width + ids, return_counts=True)
        row_of, cols = np.divmod(keys, width)
        tf = 1.0 + np.log(counts) if sublinear else counts.astype(np.float64)
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_of, minlength=len(lengths)), out=indptr[1:])
        return cls(indptr, cols, tf * idf[cols], width).normalized()

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def to_csr(self) -> Any:
        """These rows as a scipy CSR matrix (for code that needs one: training, other classifiers)."""
        import scipy.sparse as sp

        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=(len(self), self.width))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def owner(self) -> np.ndarray:
        """The row of every stored value."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Row i as (columns, values)."""
        a, b = int(self.indptr[i]), int(self.indptr[i + 1])
        return self.indices[a:b], self.data[a:b]

    def take(self, rows: np.ndarray) -> Rows:
        """The given rows, in that order (repeats allowed)."""
        lengths = self.lengths[rows]
        positions = spans(self.indptr[rows], lengths)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        return Rows(indptr, self.indices[positions], self.data[positions], self.width)

    def spread(self, rows: np.ndarray, n: int) -> Rows:
        """These rows placed at positions `rows` (ascending) of n rows; the others empty."""
        lengths = np.zeros(n, dtype=np.int64)
        lengths[rows] = self.lengths
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        return Rows(indptr, self.indices, self.data, self.width)

    def dot_vector(self, vector: np.ndarray) -> np.ndarray:
        """Each row · vector (a dense vector of `width`)."""
        return np.bincount(self.owner(), weights=self.data * vector[self.indices], minlength=len(self))

    def dot_dense(self, matrix: np.ndarray) -> np.ndarray:
        """Rows @ matrix (width × k), in the matrix's dtype: the sum of each row's weighted matrix rows."""
        out = np.zeros((len(self), matrix.shape[1]), dtype=matrix.dtype)
        if not len(self.data):
            return out
        weighted = matrix[self.indices] * self.data.astype(matrix.dtype)[:, None]
        filled = self.lengths > 0
        # reduceat over the non-empty rows only: their segments tile `weighted` exactly
        out[filled] = np.add.reduceat(weighted, self.indptr[:-1][filled], axis=0)
        return out

    def normalized(self) -> Rows:
        """Each row scaled to unit length (empty rows stay empty)."""
        norms = np.sqrt(np.bincount(self.owner(), weights=self.data * self.data, minlength=len(self)))
        return Rows(self.indptr, self.indices, self.data / norms[self.owner()], self.width)
