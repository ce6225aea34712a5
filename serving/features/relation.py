"""How a comment relates to its article: similarities, shared words, script (the relation block)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from serving.features.ngrams import tfidf_rows
from serving.features.prepare import PreparedComments, dense_parts
from serving.text.normalize import (
    dominant_script,
)
from serving.text.tokens import content_tokens


def _content_analyzer(text: str) -> list[str]:
    return list(_comment_tokens(text))


def _row_normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


# Similarity bins: a linear classifier gets "how related" as indicators, not one slope.
SIMILARITY_EDGES = (0.05, 0.1, 0.2, 0.35)


def _unit_interval(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def _as_float32(value: float) -> float:
    return float(np.float32(value))


def _bin(similarity: float) -> int:
    """Index of the similarity's bin: how many edges it reaches."""
    return sum(1 for edge in SIMILARITY_EDGES if edge <= similarity)


@lru_cache(maxsize=1024)
def _comment_tokens(text: str) -> tuple[str, ...]:
    # The relation block reads a comment's content words twice (TF-IDF, shared words); sized
    # to hold a scoring batch, so the second read is a hit.
    return tuple(content_tokens(text))


RELATION_PART = "relation"  # this block's slot in an article's cache entry


@dataclass(frozen=True)
class _ArticleSide:
    """What the relation block reads of one article, computed once per article."""

    title: tuple[dict[int, float], np.ndarray]
    body: tuple[dict[int, float], np.ndarray]
    article: tuple[dict[int, float], np.ndarray]
    words: frozenset[str]
    scripts: frozenset[str]


@lru_cache(maxsize=2048)
def article_script(article: str) -> str:
    """dominant_script of an article part, memoised: many comments share one article."""
    return dominant_script(article)


class ArticleRelation(TransformerMixin, BaseEstimator):
    """How the comment relates to its article: LSA and TF-IDF similarity, shared words, script.

    Every feature is 0 when the row has no article, so a comment without context is judged on
    its own text. Similarities are computed separately against the title and the body, and each
    is also given as bins per context kind (title only / body present), because a short comment
    that shares nothing with a long body is normal while the same with a title is weaker evidence.
    """

    def __init__(self, n_components: int = 120, min_df: int = 2, random_state: int = 13):
        self.n_components = n_components
        self.min_df = min_df
        self.random_state = random_state

    def fit(self, X: PreparedComments, y: Any = None) -> ArticleRelation:
        """Learn the topical space from comments plus each distinct article once."""
        articles = sorted({t for t in X.title if t} | {b for b in X.body if b})
        corpus = list(X.text) + articles
        min_df = self.min_df if len(corpus) >= 50 else 1
        self.tfidf_ = TfidfVectorizer(
            analyzer=_content_analyzer, min_df=min_df, sublinear_tf=True, dtype=np.float32
        )
        matrix = self.tfidf_.fit_transform(corpus)
        n_components = max(1, min(self.n_components, matrix.shape[1] - 1, matrix.shape[0] - 1))
        self.svd_ = TruncatedSVD(n_components=n_components, random_state=self.random_state)
        self.svd_.fit(matrix)
        self.feature_names_ = np.asarray(self._names(), dtype=object)
        return self

    @staticmethod
    def _names() -> list[str]:
        names = [
            "ctx:has_title",
            "ctx:has_body",
            "ctx:lsa_title",
            "ctx:lsa_body",
            "ctx:lsa_article",
            "ctx:tfidf_article",
            "ctx:shared_words",
            "ctx:shared_fraction",
            "ctx:latin_comment_arabic_article",
            "ctx:arabic_comment_latin_article",
        ]
        for kind in ("title", "body"):
            bins = ("<", *SIMILARITY_EDGES)
            for i, edge in enumerate(bins):
                lower = "0" if edge == "<" else str(edge)
                upper = str(SIMILARITY_EDGES[i]) if i < len(SIMILARITY_EDGES) else "1"
                names.append(f"ctx:{kind}_sim_{lower}-{upper}")
        return names

    def _embed(self, texts: Sequence[str]) -> tuple[sp.csr_matrix, np.ndarray]:
        tfidf = tfidf_rows(self.tfidf_, _content_analyzer, texts)
        lsa = _row_normalize(np.asarray(tfidf @ self._projection()))
        return tfidf, lsa

    def _projection(self) -> np.ndarray:
        # C-ordered (vocabulary × components): sparse @ components_.T would copy the whole
        # transposed matrix on every call, which dominated single-comment latency.
        projection = self.__dict__.get("_projection_c")
        if projection is None:
            projection = np.ascontiguousarray(self.svd_.components_.T, dtype=np.float32)
            self.__dict__["_projection_c"] = projection
        return projection

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_cache", None)  # per-process memos (and those of older versions), not the model
        state.pop("_vectors", None)
        state.pop("_projection_c", None)
        return state

    def transform(self, X: PreparedComments) -> sp.csr_matrix:
        """Dense relation block (as sparse, to sit beside the n-grams)."""
        return sp.csr_matrix(self.dense(X))

    def sparse_parts(self, X: PreparedComments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, column, value) of the non-zero relation features."""
        return dense_parts(self.dense(X))

    @property
    def output_width(self) -> int:
        """Number of relation features."""
        return len(self.feature_names_)

    def _vector(self, text: str) -> tuple[dict[int, float], np.ndarray]:
        """One text's TF-IDF weights (column → value) and unit LSA vector, without scipy."""
        vocabulary = self.tfidf_.vocabulary_
        counts: dict[int, int] = {}
        for token in _comment_tokens(text):
            j = vocabulary.get(token)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts:
            return {}, np.zeros(self._projection().shape[1], dtype=np.float32)
        cols = np.fromiter(counts, dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        weights = (1.0 + np.log(tf)) * self.tfidf_.idf_[cols]
        weights /= np.sqrt(np.dot(weights, weights))
        lsa = weights.astype(np.float32) @ self._projection()[cols]
        norm = float(np.sqrt(np.dot(lsa, lsa)))
        return dict(zip(cols.tolist(), weights.tolist(), strict=True)), lsa / norm if norm else lsa

    def _article(self, title: str, body: str) -> _ArticleSide:
        """An article's side of the block: each part's TF-IDF weights and LSA vector (title, body and
        both together), its content words and the scripts of its parts."""
        joined = f"{title} {body}".strip()
        vectors = {text: self._vector(text) for text in {title, body, joined} if text}
        empty: tuple[dict[int, float], np.ndarray] = ({}, np.zeros(0, dtype=np.float32))
        return _ArticleSide(
            title=vectors.get(title, empty),
            body=vectors.get(body, empty),
            article=vectors.get(joined, empty),
            words=frozenset(content_tokens(joined)),
            scripts=frozenset(dominant_script(part) for part in (title, body) if part),
        )

    def _articles(self, X: PreparedComments) -> list[_ArticleSide | None]:
        """Each row's article side: kept in the article's cache entry when the model runtime built the
        batch (once per article, across calls), else computed once per distinct article of the batch."""
        if X.articles:
            return [
                entry.part(RELATION_PART, partial(self._article, entry.title, entry.body))
                if entry is not None
                else None
                for entry in X.articles
            ]
        sides: dict[tuple[str, str], _ArticleSide] = {}
        out: list[_ArticleSide | None] = []
        for key in zip(X.title, X.body, strict=True):
            if not (key[0] or key[1]):
                out.append(None)
                continue
            if key not in sides:
                sides[key] = self._article(*key)
            out.append(sides[key])
        return out

    def _similarities(self, X: PreparedComments, articles: Sequence[_ArticleSide | None]) -> np.ndarray:
        """Columns lsa_title, lsa_body, lsa_article, tfidf_article for every row."""
        n = len(X)
        out = np.zeros((n, 4), dtype=np.float64)
        if n > 64:
            c_tfidf, c_lsa = self._embed(X.text)
            comments = [
                dict(zip(c_tfidf.indices[a:b].tolist(), c_tfidf.data[a:b].tolist(), strict=True))
                for a, b in zip(c_tfidf.indptr[:-1].tolist(), c_tfidf.indptr[1:].tolist(), strict=True)
            ]
            lsa_rows = list(c_lsa)
        else:
            # Scoring a few comments: plain dicts and dot products beat building sparse matrices.
            vectors = [self._vector(text) for text in X.text]
            comments, lsa_rows = [v[0] for v in vectors], [v[1] for v in vectors]
        for i, side in enumerate(articles):
            if side is None:
                continue
            comment, lsa = comments[i], lsa_rows[i]
            for column, (_, part_lsa) in enumerate((side.title, side.body, side.article)):
                if len(part_lsa):
                    out[i, column] = float(np.dot(lsa, part_lsa))
            weights = side.article[0]
            out[i, 3] = sum(value * weights.get(j, 0.0) for j, value in comment.items())
        return out

    def dense(self, X: PreparedComments) -> np.ndarray:
        """The relation features as a dense (comments × features) float32 array."""
        width = len(self.feature_names_)
        if not (any(X.title) or any(X.body)):
            return np.zeros((len(X), width), dtype=np.float32)
        articles = self._articles(X)
        similarities = self._similarities(X, articles).tolist()
        zeros = [0.0] * width
        # Row by row in Python, one array at the end: a dozen numpy calls per column cost more than
        # the arithmetic for the one comment a request scores, and little more for a batch.
        return np.array(
            [
                self._row(text, bool(title), bool(body), side, sims) if side is not None else zeros
                for text, title, body, side, sims in zip(
                    X.text, X.title, X.body, articles, similarities, strict=True
                )
            ],
            dtype=np.float32,
        )

    def _row(
        self, text: str, has_title: bool, has_body: bool, side: _ArticleSide, similarities: list[float]
    ) -> list[float]:
        """One comment's features against its article (which has a title, a body or both)."""
        lsa_title, lsa_body, lsa_article, tfidf_article = similarities
        row = [0.0] * len(self.feature_names_)
        row[0], row[1] = float(has_title), float(has_body)
        row[2] = _unit_interval(lsa_title) if has_title else 0.0
        row[3] = _unit_interval(lsa_body) if has_body else 0.0
        row[4] = _unit_interval(lsa_article)
        row[5] = _unit_interval(tfidf_article)
        comment_words = set(_comment_tokens(text))
        shared = len(comment_words & side.words)
        row[6] = min(shared, 5) / 5.0
        row[7] = shared / len(comment_words) if comment_words else 0.0
        # A mismatch needs the comment to differ from every part of the article we have:
        # an English comment under an English headline is not a mismatch, whatever the body.
        comment_script = dominant_script(text)
        row[8] = float(comment_script == "latin" and side.scripts <= {"arabic"})
        row[9] = float(comment_script == "arabic" and side.scripts <= {"latin"})
        # One similarity bin, of the body's bins when there is a body, else of the title's; the
        # similarity as the stored (float32) feature, compared with the edges as numpy would.
        tfidf = _as_float32(row[5])
        if has_body:
            row[10 + len(SIMILARITY_EDGES) + 1 + _bin(max(_as_float32(row[4]), tfidf))] = 1.0
        else:
            row[10 + _bin(max(_as_float32(row[2]), tfidf))] = 1.0
        return row

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the relation features."""
        return self.feature_names_
