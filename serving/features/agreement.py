"""Feature scaling by how consistently an n-gram marks one class across the corpora it was seen in.

A binary head (abusive or not) trained on many corpora meets two kinds of n-grams: those that
mean abuse wherever they appear (insults, curses, slurs) and those that only mark one corpus
(its topics, its platform, the dialect of the corpus whose positives outnumber its negatives).
A plain classifier cannot tell them apart when a corpus's classes differ in topic; on a site it
has never seen it then holds polite comments that merely share the topic.

Each column is multiplied by |median over sources of the source's smoothed log-ratio
P(n-gram | class 1) / P(n-gram | class 0)| + `floor` (a naive-Bayes ratio per source, then the
median across sources). A column whose ratio one source alone supports is shrunk by
`single_source_shrink`. The classifier after this step is then regularised towards n-grams whose
link to the class holds across sources: the product of the NBSVM idea (Wang & Manning 2012) and
a vote across corpora.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from serving.features.sparse_rows import Rows


class CrossSourceScaling(TransformerMixin, BaseEstimator):
    """Wrap a feature union: its matrix with every column scaled by the cross-source ratio."""

    def __init__(
        self,
        features: Any,
        floor: float = 0.1,
        min_count: int = 3,
        single_source_shrink: float = 0.5,
    ):
        self.features = features
        self.floor = floor
        self.min_count = min_count
        self.single_source_shrink = single_source_shrink

    def fit(self, X: Any, y: Any = None, sources: Any = None) -> CrossSourceScaling:
        """Fit the wrapped features, then the per-column scale from `y` (0/1) and each row's source."""
        self.fit_transform(X, y, sources=sources)
        return self

    def fit_transform(self, X: Any, y: Any = None, sources: Any = None, **fit_params: Any) -> sp.csr_matrix:
        """Fit and return the scaled matrix of the training rows."""
        if y is None:
            raise ValueError("CrossSourceScaling needs the labels (0/1) to fit")
        matrix = sp.csr_matrix(self.features.fit_transform(X))
        if sources is None:
            sources = np.zeros(matrix.shape[0], dtype=np.int8)
        return self.fit_from_matrix(matrix, y, sources).scale_matrix(matrix)

    def fit_from_matrix(self, matrix: sp.csr_matrix, y: Any, sources: Any) -> CrossSourceScaling:
        """Fit the scale on rows already featurised by the (fitted) wrapped features.

        Training featurises once and fits several heads on subsets of the rows; this is the fit
        for those already-computed matrices.
        """
        self.scale_ = source_agreement_scale(
            sp.csr_matrix(matrix),
            np.asarray(y),
            np.asarray(sources),
            floor=self.floor,
            min_count=self.min_count,
            single_source_shrink=self.single_source_shrink,
        )
        return self

    def scale_matrix(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """An unscaled feature matrix, scaled."""
        return scale_columns(matrix, self.scale_)

    def transform(self, X: Any) -> sp.csr_matrix:
        """The wrapped features' matrix, scaled."""
        return self.scale_matrix(sp.csr_matrix(self.features.transform(X)))

    def rows(self, X: Any) -> Rows:
        """`transform` without building a scipy matrix (the model runtime's scoring path)."""
        found: Rows = self.features.rows(X)
        scaled = (found.data * self.scale_[found.indices]).astype(np.float32, copy=False)
        return Rows(found.indptr, found.indices, scaled, found.width)

    def block_layout(self) -> list[tuple[str, Any, int, int]]:
        """The wrapped union's blocks: scaling keeps every column where it was."""
        layout: list[tuple[str, Any, int, int]] = self.features.block_layout()
        return layout

    @property
    def output_width(self) -> int:
        """Number of columns (the wrapped union's)."""
        return len(self.scale_)


def scale_columns(matrix: sp.csr_matrix, scale: np.ndarray) -> sp.csr_matrix:
    """`matrix` with column j multiplied by scale[j] (a copy)."""
    scaled = sp.csr_matrix(matrix, copy=True)
    scaled.data = (scaled.data * scale[scaled.indices]).astype(np.float32, copy=False)
    return scaled


def source_agreement_scale(
    matrix: sp.csr_matrix,
    y: np.ndarray,
    sources: np.ndarray,
    floor: float = 0.1,
    min_count: int = 3,
    single_source_shrink: float = 0.5,
) -> np.ndarray:
    """|median over sources of each column's smoothed log-ratio| + floor (see the module doc).

    A source votes on a column only if it has both classes and the column occurs in at least
    `min_count` of its rows. A column no source votes on gets `floor` alone.
    """
    present = matrix.tocsr(copy=True)
    present.data = np.ones_like(present.data)
    ratios = []
    for source in np.unique(sources):
        in_source = sources == source
        positive, negative = in_source & (y == 1), in_source & (y == 0)
        if not positive.any() or not negative.any():
            continue
        count_pos = np.asarray(present[np.flatnonzero(positive)].sum(axis=0)).ravel()
        count_neg = np.asarray(present[np.flatnonzero(negative)].sum(axis=0)).ravel()
        ratio = np.log((count_pos + 1.0) / (positive.sum() + 2.0)) - np.log(
            (count_neg + 1.0) / (negative.sum() + 2.0)
        )
        ratio[(count_pos + count_neg) < min_count] = np.nan
        ratios.append(ratio.astype(np.float32))
    if not ratios:
        return np.full(matrix.shape[1], 1.0, dtype=np.float32)
    stacked = np.vstack(ratios)
    votes = np.sum(~np.isnan(stacked), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: nobody voted
        median = np.nan_to_num(np.nanmedian(stacked, axis=0), nan=0.0)
    median[votes == 1] *= single_source_shrink
    return (np.abs(median) + floor).astype(np.float32)
