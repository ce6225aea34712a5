"""The first step of the Pipeline: the canonical DataFrame normalised once into PreparedComments,
and the feature union that runs every block over it in-process."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import FeatureUnion

from serving.features.article_cache import ArticleEntry
from serving.features.sparse_rows import Rows
from serving.schema import MODEL_INPUT_COLUMNS
from serving.text.normalize import (
    normalize,
)


@lru_cache(maxsize=2048)
def _normalize_article_part(text: str) -> str:
    # Articles repeat across a batch (many comments, one story): normalise each once.
    return normalize(text)


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


@dataclass(frozen=True, slots=True)
class PreparedComments:
    """A batch of comments with their article, normalised once for every feature block.

    `articles`, when the model runtime built the batch: per row its article's cache entry
    (serving/features/article_cache.py), where each block keeps its article-side features; empty
    when a Pipeline is called directly (training, evaluation), and then each block computes every
    distinct article of the batch once.
    """

    raw_text: tuple[str, ...]
    text: tuple[str, ...]
    title: tuple[str, ...]
    body: tuple[str, ...]
    articles: tuple[ArticleEntry | None, ...] = ()
    # What one block computed that another needs too (the base model and a label head hash the
    # same n-grams of the same comments): per batch, dropped with it.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.text)


def _column(X: Any, name: str, n: int) -> list[str]:
    if hasattr(X, "columns"):
        if name in X.columns:
            return [_as_text(v) for v in X[name].tolist()]
        return [""] * n
    return [_as_text(row.get(name)) for row in X]


class SequentialFeatureUnion(FeatureUnion):
    """FeatureUnion that transforms in-process, one block after another.

    The stock union dispatches through joblib even with one job, which costs more than the
    features themselves for a single comment; scoring is the hot path, so it is done directly.
    """

    def transform(self, X: Any) -> sp.csr_matrix:
        """Weighted horizontal stack of every block's features."""
        return self.rows(X).to_csr()

    def rows(self, X: Any) -> Rows:
        """`transform` without building a scipy matrix (the model runtime's scoring path)."""
        rows, cols, values, width = self.sparse_parts(X)
        n = len(X)
        if n > 1:
            order = np.argsort(rows, kind="stable")  # blocks were appended one after another
            rows, cols, values = rows[order], cols[order], values[order]
        indptr = np.searchsorted(rows, np.arange(n + 1))
        return Rows(indptr, cols, values, width)

    def sparse_parts(self, X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(row, column, value) of every block's non-zero features, block after block, and the width."""
        weights = self.transformer_weights or {}
        rows, cols, values = [], [], []
        offset = 0
        for name, transformer in self.transformer_list:
            if transformer in ("drop", None):
                continue
            if hasattr(transformer, "sparse_parts"):
                r, c, v = transformer.sparse_parts(X)
                width = transformer.output_width
            else:  # blocks of older bundles (vocabulary n-grams)
                block = sp.csr_matrix(transformer.transform(X))
                width = block.shape[1]
                r = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
                c, v = block.indices, block.data
            weight = weights.get(name)
            if weight not in (None, 1, 1.0):
                v = v * np.float32(weight)
            rows.append(r)
            cols.append(c.astype(np.int32, copy=False) + np.int32(offset))
            values.append(v.astype(np.float32, copy=False))
            offset += width
        return np.concatenate(rows), np.concatenate(cols), np.concatenate(values), offset

    def block_layout(self) -> list[tuple[str, Any, int, int]]:
        """(name, transformer, first column, width) of every block, in column order."""
        layout = []
        offset = 0
        for name, transformer in self.transformer_list:
            if transformer in ("drop", None):
                continue
            if hasattr(transformer, "output_width"):
                width = transformer.output_width
            else:
                width = len(transformer.get_feature_names_out())
            layout.append((name, transformer, offset, width))
            offset += width
        return layout


def dense_parts(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(dense)
    return rows, cols, dense[rows, cols]


class CommentPreprocessor(TransformerMixin, BaseEstimator):
    """Canonical DataFrame (or list of dicts) → PreparedComments, normalising text and article."""

    def fit(self, X: Any, y: Any = None) -> CommentPreprocessor:
        """Stateless; present for the Pipeline."""
        return self

    def transform(self, X: Any) -> PreparedComments:
        """Normalise comment text, article title and article body."""
        if isinstance(X, PreparedComments):
            return X
        n = len(X)
        if hasattr(X, "columns") and "text" not in X.columns:
            raise ValueError(f"input needs a 'text' column (model columns: {MODEL_INPUT_COLUMNS})")
        raw = _column(X, "text", n)
        titles = _column(X, "article_title", n)
        bodies = _column(X, "article_text", n)
        return PreparedComments(
            raw_text=tuple(raw),
            text=tuple(normalize(t) for t in raw),
            title=tuple(_normalize_article_part(t) if t else "" for t in titles),
            body=tuple(_normalize_article_part(t) if t else "" for t in bodies),
        )
