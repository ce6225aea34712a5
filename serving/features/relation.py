"""How a comment relates to its article: similarities, shared words, script (the relation block)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
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


@lru_cache(maxsize=1024)
def _comment_tokens(text: str) -> tuple[str, ...]:
    # The relation block reads a comment's content words twice (TF-IDF, shared words); sized
    # to hold a scoring batch, so the second read is a hit.
    return tuple(content_tokens(text))


@lru_cache(maxsize=2048)
def _article_words(article: str) -> frozenset[str]:
    return frozenset(content_tokens(article))


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

    def _article_vectors(self, texts: Sequence[str]) -> tuple[sp.csr_matrix, np.ndarray]:
        """Embeddings of article texts, cached: many comments share one article."""
        cache: dict[str, tuple[sp.csr_matrix, np.ndarray]] = self.__dict__.setdefault("_cache", {})
        missing = sorted({t for t in texts if t not in cache})
        if missing:
            tfidf, lsa = self._embed(missing)
            if len(cache) + len(missing) > 4096:
                cache.clear()
            for i, text in enumerate(missing):
                cache[text] = (tfidf[i], lsa[i])
        rows = [cache[t] for t in texts]
        return sp.vstack([r[0] for r in rows], format="csr"), np.vstack([r[1] for r in rows])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_cache", None)  # per-process memos, not part of the model
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

    def _cached_vector(self, text: str) -> tuple[dict[int, float], np.ndarray]:
        cache: dict[str, tuple[dict[int, float], np.ndarray]] = self.__dict__.setdefault("_vectors", {})
        vector = cache.get(text)
        if vector is None:
            if len(cache) > 4096:
                cache.clear()
            vector = cache[text] = self._vector(text)
        return vector

    def _similarities(self, X: PreparedComments, articles: Sequence[str]) -> np.ndarray:
        """Columns lsa_title, lsa_body, lsa_article, tfidf_article for every row."""
        n = len(X)
        if n > 64:
            c_tfidf, c_lsa = self._embed(X.text)
            _, t_lsa = self._article_vectors(X.title)
            _, b_lsa = self._article_vectors(X.body)
            a_tfidf, a_lsa = self._article_vectors(articles)
            return np.column_stack(
                [
                    np.einsum("ij,ij->i", c_lsa, t_lsa),
                    np.einsum("ij,ij->i", c_lsa, b_lsa),
                    np.einsum("ij,ij->i", c_lsa, a_lsa),
                    np.asarray(c_tfidf.multiply(a_tfidf).sum(axis=1)).ravel(),
                ]
            )
        # Scoring one comment at a time: plain dicts and dot products beat building sparse matrices.
        out = np.zeros((n, 4), dtype=np.float64)
        for i in range(n):
            comment, c_lsa = self._vector(X.text[i])
            if X.title[i]:
                out[i, 0] = float(np.dot(c_lsa, self._cached_vector(X.title[i])[1]))
            if X.body[i]:
                out[i, 1] = float(np.dot(c_lsa, self._cached_vector(X.body[i])[1]))
            if articles[i]:
                article, a_lsa = self._cached_vector(articles[i])
                out[i, 2] = float(np.dot(c_lsa, a_lsa))
                out[i, 3] = sum(value * article.get(j, 0.0) for j, value in comment.items())
        return out

    def dense(self, X: PreparedComments) -> np.ndarray:
        """The relation features as a dense (comments × features) array."""
        n = len(X)
        out = np.zeros((n, len(self.feature_names_)), dtype=np.float32)
        has_title = np.array([bool(t) for t in X.title], dtype=bool)
        has_body = np.array([bool(b) for b in X.body], dtype=bool)
        if not (has_title.any() or has_body.any()):
            return out
        articles = [f"{t} {b}".strip() for t, b in zip(X.title, X.body, strict=True)]
        similarities = self._similarities(X, articles)
        has_any = has_title | has_body
        out[:, 0] = has_title
        out[:, 1] = has_body
        out[:, 2] = np.clip(np.where(has_title, similarities[:, 0], 0.0), 0, 1)
        out[:, 3] = np.clip(np.where(has_body, similarities[:, 1], 0.0), 0, 1)
        out[:, 4] = np.clip(np.where(has_any, similarities[:, 2], 0.0), 0, 1)
        out[:, 5] = np.clip(similarities[:, 3], 0, 1)
        for i in np.flatnonzero(has_any):
            comment_words = set(_comment_tokens(X.text[i]))
            article_words = _article_words(articles[i])
            shared = len(comment_words & article_words)
            out[i, 6] = min(shared, 5) / 5.0
            out[i, 7] = shared / len(comment_words) if comment_words else 0.0
            # A mismatch needs the comment to differ from every part of the article we have:
            # an English comment under an English headline is not a mismatch, whatever the body.
            comment_script = dominant_script(X.text[i])
            scripts = {article_script(part) for part in (X.title[i], X.body[i]) if part}
            out[i, 8] = comment_script == "latin" and scripts <= {"arabic"}
            out[i, 9] = comment_script == "arabic" and scripts <= {"latin"}
        n_bins = len(SIMILARITY_EDGES) + 1
        title_sim = np.maximum(out[:, 2], out[:, 5])
        body_sim = np.maximum(out[:, 4], out[:, 5])
        title_bins = np.searchsorted(SIMILARITY_EDGES, title_sim, side="right")
        body_bins = np.searchsorted(SIMILARITY_EDGES, body_sim, side="right")
        title_only = has_title & ~has_body
        out[np.flatnonzero(title_only), 10 + title_bins[title_only]] = 1.0
        out[np.flatnonzero(has_body), 10 + n_bins + body_bins[has_body]] = 1.0
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the relation features."""
        return self.feature_names_
