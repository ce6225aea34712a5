"""The model's feature transformers: everything between the canonical DataFrame and the classifier.

They live in serving/ because the pickled Pipeline needs them at scoring time; training imports
them to build the Pipeline. All follow scikit-learn's conventions (`__init__` stores parameters,
`fit` returns self, fitted state ends in `_`) and hold no lambdas, so the Pipeline pickles.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from serving.text.normalize import (
    EMAIL_TOKEN,
    MASK_TOKENS,
    MENTION_TOKEN,
    PHONE_TOKEN,
    URL_TOKEN,
    dominant_script,
    normalize,
)
from serving.schema import MODEL_INPUT_COLUMNS

# Function words that say nothing about topic (normalised forms: ى→ي, ة→ه, hamza seats→ا).
STOPWORDS = frozenset(
    """
    في من الي علي عن مع هذا هذه ذلك تلك هو هي هم هن انا نحن انت انتم كان كانت يكون تكون
    ان او ثم لكن لا لم لن ما ماذا لماذا كيف متي اين اذا قد كل بعض غير بين حتي عند بعد قبل
    الذي التي الذين اللي يا و ف ب ل ك ايه ايش شو وش مش مو هاد هادا هيك كده كدا بس عشان علشان
    اللهم والله الله ربنا اي ايضا جدا فقط منذ خلال حول ضد دون عبر كما لقد انه انها لان
    the a an and or but of to in on for with at by from is are was were be been it this that
    these those i you he she we they me my your our their not no yes so very just all any
    """.split()
)
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_ARABIC_PREFIXES = ("وال", "بال", "كال", "فال", "لل", "ال")
_ARABIC_SUFFIXES = ("هما", "كما", "ات", "ون", "ين", "ها", "هم", "كم", "نا")


def light_stem(token: str) -> str:
    """Strip one Arabic article/conjunction prefix and one plural/pronoun suffix."""
    for prefix in _ARABIC_PREFIXES:
        if token.startswith(prefix) and len(token) - len(prefix) >= 3:
            token = token[len(prefix) :]
            break
    for suffix in _ARABIC_SUFFIXES:
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            token = token[: -len(suffix)]
            break
    return token


def content_tokens(normalized: str) -> list[str]:
    """Topical tokens of normalised text: no stopwords, masks or digits, lightly stemmed."""
    out = []
    for token in _TOKEN.findall(normalized):
        if len(token) < 2 or token in STOPWORDS or token in MASK_TOKENS or token.isdigit():
            continue
        out.append(light_stem(token))
    return out


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
    """A batch of comments with their article, normalised once for every feature block."""

    raw_text: tuple[str, ...]
    text: tuple[str, ...]
    title: tuple[str, ...]
    body: tuple[str, ...]

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
        rows, cols, values, width = self.sparse_parts(X)
        n = len(X)
        if n > 1:
            order = np.argsort(rows, kind="stable")  # blocks were appended one after another
            rows, cols, values = rows[order], cols[order], values[order]
        indptr = np.searchsorted(rows, np.arange(n + 1))
        return sp.csr_matrix((values, cols, indptr), shape=(n, width))

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


def _dense_parts(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


class TextNgrams(TransformerMixin, BaseEstimator):
    """TF-IDF n-grams (char or word) of the normalised comment text."""

    def __init__(
        self,
        analyzer: str = "char_wb",
        ngram_range: tuple[int, int] = (2, 5),
        min_df: int = 2,
        max_features: int | None = 200_000,
        sublinear_tf: bool = True,
    ):
        self.analyzer = analyzer
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf

    def _vectorizer(self) -> TfidfVectorizer:
        return TfidfVectorizer(
            analyzer=self.analyzer,
            ngram_range=self.ngram_range,
            min_df=self.min_df,
            max_features=self.max_features,
            sublinear_tf=self.sublinear_tf,
            lowercase=False,  # the normaliser already folded case
            token_pattern=r"(?u)\b\w+\b" if self.analyzer == "word" else None,
            dtype=np.float32,
        )

    def fit(self, X: PreparedComments, y: Any = None) -> TextNgrams:
        """Learn the vocabulary and IDF weights from the comments."""
        min_df = self.min_df if len(X) >= 50 else 1  # tiny fixtures would leave no vocabulary
        self.vectorizer_ = self._vectorizer().set_params(min_df=min_df)
        self.vectorizer_.fit(X.text)
        self.feature_names_ = self.vectorizer_.get_feature_names_out()
        return self

    def fit_transform(self, X: PreparedComments, y: Any = None, **fit_params: Any) -> sp.csr_matrix:
        """Fit and transform in one counting pass (training featurises once, not twice)."""
        min_df = self.min_df if len(X) >= 50 else 1
        self.vectorizer_ = self._vectorizer().set_params(min_df=min_df)
        matrix = self.vectorizer_.fit_transform(X.text)
        self.feature_names_ = self.vectorizer_.get_feature_names_out()
        return matrix

    def transform(self, X: PreparedComments) -> sp.csr_matrix:
        """Sparse TF-IDF matrix of the comments (same numbers as the fitted TfidfVectorizer)."""
        analyzer = self.__dict__.get("_analyzer")
        if analyzer is None:
            analyzer = self.vectorizer_.build_analyzer()
            self.__dict__["_analyzer"] = analyzer
        return tfidf_rows(self.vectorizer_, analyzer, X.text)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_analyzer", None)  # a closure over the vectorizer; rebuilt after unpickling
        return state

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Feature names prefixed by the analyzer kind."""
        prefix = "char" if self.analyzer.startswith("char") else "word"
        return np.asarray([f"{prefix}:{name}" for name in self.feature_names_], dtype=object)


def tfidf_rows(vectorizer: TfidfVectorizer, analyzer: Any, texts: Sequence[str]) -> sp.csr_matrix:
    """TfidfVectorizer.transform for small batches, without sklearn's per-call overhead.

    Serving scores one comment at a time, where validation costs more than the arithmetic;
    this counts, weights (sublinear tf × idf) and L2-normalises with the fitted vocabulary,
    giving the same numbers (a unit test holds it to that). Large batches use sklearn's own.
    """
    if len(texts) > 64:
        return vectorizer.transform(texts)
    vocabulary = vectorizer.vocabulary_
    idf = vectorizer.idf_
    sublinear = vectorizer.sublinear_tf
    indptr = [0]
    indices: list[int] = []
    data: list[float] = []
    for text in texts:
        counts: dict[int, int] = {}
        for gram in analyzer(text):
            j = vocabulary.get(gram)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if counts:
            cols = np.fromiter(sorted(counts), dtype=np.int64, count=len(counts))
            tf = np.fromiter((counts[c] for c in cols.tolist()), dtype=np.float64, count=len(cols))
            if sublinear:
                tf = 1.0 + np.log(tf)
            weights = tf * idf[cols]
            weights /= np.sqrt(np.dot(weights, weights))
            indices.extend(cols.tolist())
            data.extend(weights.tolist())
        indptr.append(len(indices))
    return sp.csr_matrix(
        (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int32), indptr),
        shape=(len(texts), len(idf)),
    )


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
        return _dense_parts(self.dense(X))

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


_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d\U0001f1e6-\U0001f1ff]")
_RUN = re.compile(r"(.)\1{3,}")
_LATIN_UPPER = re.compile(r"[A-Z]")
_LATIN_LETTER = re.compile(r"[A-Za-z]")
_DIGIT = re.compile(r"\d")


class SpamSignals(TransformerMixin, BaseEstimator):
    """Hand-made spam signals: links, phones, e-mails, mentions, length, ratios, repetition."""

    FEATURES = (
        "sig:url",
        "sig:phone",
        "sig:email",
        "sig:mention",
        "sig:log_length",
        "sig:short",
        "sig:long",
        "sig:digit_ratio",
        "sig:upper_ratio",
        "sig:emoji_ratio",
        "sig:char_runs",
        "sig:repeated_words",
        "sig:exclamations",
        "sig:latin_only",
        "sig:mixed_script",
    )

    def fit(self, X: PreparedComments, y: Any = None) -> SpamSignals:
        """Stateless; present for the Pipeline."""
        self.n_features_out_ = len(self.FEATURES)
        return self

    @staticmethod
    def row(raw: str, text: str) -> list[float]:
        """The signal vector of one comment (raw text for ratios, normalised for masks)."""
        tokens = text.split()
        n_chars = max(len(raw), 1)
        letters = len(_LATIN_LETTER.findall(raw))
        unique_ratio = len(set(tokens)) / len(tokens) if len(tokens) >= 4 else 1.0
        script = dominant_script(text)
        return [
            min(tokens.count(URL_TOKEN), 3) / 3.0,
            min(tokens.count(PHONE_TOKEN), 2) / 2.0,
            min(tokens.count(EMAIL_TOKEN), 2) / 2.0,
            min(tokens.count(MENTION_TOKEN), 3) / 3.0,
            min(math.log1p(len(raw)) / math.log1p(2000), 1.0),
            float(len(tokens) <= 3),
            float(len(raw) > 600),
            len(_DIGIT.findall(raw)) / n_chars,
            len(_LATIN_UPPER.findall(raw)) / letters if letters >= 8 else 0.0,
            min(len(_EMOJI.findall(raw)) / n_chars * 5, 1.0),
            min(len(_RUN.findall(raw)), 3) / 3.0,
            1.0 - unique_ratio,
            min(raw.count("!"), 5) / 5.0,
            float(script == "latin"),
            float(script == "mixed"),
        ]

    def dense(self, X: PreparedComments) -> np.ndarray:
        """The signals as a dense (comments × signals) array."""
        rows = [self.row(raw, text) for raw, text in zip(X.raw_text, X.text, strict=True)]
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(self.FEATURES))

    def sparse_parts(self, X: PreparedComments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, column, value) of the non-zero signals."""
        return _dense_parts(self.dense(X))

    @property
    def output_width(self) -> int:
        """Number of signals."""
        return len(self.FEATURES)

    def transform(self, X: PreparedComments) -> sp.csr_matrix:
        """Sparse matrix of the signals."""
        return sp.csr_matrix(self.dense(X))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the signals."""
        return np.asarray(self.FEATURES, dtype=object)


# --- hashed n-grams ------------------------------------------------------------------------------
# Feature hashing instead of a learned vocabulary: a 300k-entry dict of n-gram strings cost ~200 MB
# of RSS and ~1.5 s to unpickle at server start, and looking grams up one by one in Python was most
# of the scoring time. Here every n-gram of a whole batch is hashed with vectorised numpy
# arithmetic (a polynomial hash over code points, mod 2**64, then xor-shift-multiply), so the
# model carries only an IDF array per block. Hashes are fixed arithmetic: identical across
# processes, machines and PYTHONHASHSEED.

_HASH_BASE = 0x100000001B3  # odd, so it has an inverse mod 2**64
_HASH_BASE_INV = pow(_HASH_BASE, -1, 1 << 64)
_ORDER_SALT = 0x9E3779B97F4A7C15
_WORD_TOKEN = re.compile(r"(?u)\b\w+\b")
_HASH_CHUNK = 4096  # documents hashed at once: bounds the transient arrays while training


class _Powers:
    """BASE**i and BASE**-i mod 2**64, grown on demand (a per-process memo, not model state)."""

    forward = np.ones(1, dtype=np.uint64)
    inverse = np.ones(1, dtype=np.uint64)

    @classmethod
    def upto(cls, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(cls.forward) < n:
            size = max(n, 2 * len(cls.forward), 1024)
            forward = np.empty(size, dtype=np.uint64)
            inverse = np.empty(size, dtype=np.uint64)
            forward[0] = inverse[0] = 1
            forward[1:] = _HASH_BASE
            inverse[1:] = _HASH_BASE_INV
            np.cumprod(forward, out=forward)  # uint64 arrays wrap mod 2**64, silently by design
            np.cumprod(inverse, out=inverse)
            cls.forward, cls.inverse = forward, inverse  # swapped whole: safe for concurrent readers
        return cls.forward, cls.inverse


def _bucket(hashes: np.ndarray, bits: int) -> np.ndarray:
    """Top `bits` bits after an xor-shift and an odd multiply (multiplicative hashing)."""
    mixed = (hashes ^ (hashes >> np.uint64(29))) * np.uint64(0xBF58476D1CE4E5B9)
    return (mixed >> np.uint64(64 - bits)).astype(np.int64)


def _prefix_hashes(codes: np.ndarray) -> np.ndarray:
    """prefix[i] = sum of codes[k] * BASE**k for k < i (mod 2**64)."""
    forward, _ = _Powers.upto(len(codes) + 1)
    prefix = np.zeros(len(codes) + 1, dtype=np.uint64)
    np.cumsum(codes * forward[: len(codes)], out=prefix[1:])
    return prefix


def _segment_hashes(prefix: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Position-independent hash of codes[start:end] for every (start, end) pair."""
    _, inverse = _Powers.upto(len(prefix))
    return (prefix[ends] - prefix[starts]) * inverse[starts]


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)


@dataclass(frozen=True, slots=True)
class HashedGrams:
    """Every n-gram occurrence of a batch: its document, its bucket and where it lies in `joined`."""

    doc: np.ndarray
    bucket: np.ndarray
    begin: np.ndarray
    end: np.ndarray
    joined: str


def char_wb_grams(texts: Sequence[str], ngram_range: tuple[int, int], bits: int) -> HashedGrams:
    """Character n-grams inside space-padded words (like sklearn's char_wb), hashed to `bits` bits."""
    pieces: list[str] = []
    lengths: list[int] = []
    chars_per_doc: list[int] = []
    for text in texts:
        words = text.split()
        piece = " " + "  ".join(words) + " " if words else ""
        pieces.append(piece)
        chars_per_doc.append(len(piece))
        lengths.extend(len(word) + 2 for word in words)
    joined = "".join(pieces)
    codes = _code_points(joined)
    low, high = ngram_range
    # Characters left in the padded word from each position: an n-gram may start where >= n remain.
    word_ends = np.cumsum(np.asarray(lengths, dtype=np.int64))
    left = np.repeat(word_ends, lengths) - np.arange(len(codes), dtype=np.int64)
    orders = np.arange(low, high + 1, dtype=np.int64)
    fits = left[:, None] >= orders[None, :]
    begin, which = np.nonzero(fits)
    end = begin + orders[which]
    prefix = _prefix_hashes(codes)
    salt = orders[which].astype(np.uint64) * np.uint64(_ORDER_SALT)
    hashes = _segment_hashes(prefix, begin, end) + salt
    doc_of_char = np.repeat(np.arange(len(texts), dtype=np.int64), chars_per_doc)
    return HashedGrams(doc_of_char[begin], _bucket(hashes, bits), begin, end, joined)


def word_grams(texts: Sequence[str], ngram_range: tuple[int, int], bits: int) -> HashedGrams:
    """Word n-grams (tokens of letters/digits) hashed to `bits` bits."""
    tokens: list[str] = []
    tokens_per_doc: list[int] = []
    for text in texts:
        found = _WORD_TOKEN.findall(text)
        tokens_per_doc.append(len(found))
        tokens.extend(found)
    joined = " ".join(tokens)
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    token_end = np.cumsum(lengths + 1) - 1
    token_begin = token_end - lengths
    doc_of_token = np.repeat(np.arange(len(texts), dtype=np.int64), tokens_per_doc)
    unigram = _segment_hashes(_prefix_hashes(_code_points(joined)), token_begin, token_end)
    low, high = ngram_range
    docs, begins, ends, hashes = [], [], [], []
    combined = unigram
    for n in range(1, high + 1):
        if n > 1:
            if len(combined) < 2:
                break
            previous = combined[:-1]
            combined = (previous ^ (previous >> np.uint64(31))) * np.uint64(_ORDER_SALT) + unigram[n - 1 :]
        if n < low:
            continue
        first = np.flatnonzero(doc_of_token[: len(combined)] == doc_of_token[n - 1 :])
        docs.append(doc_of_token[first])
        begins.append(token_begin[first])
        ends.append(token_end[first + n - 1])
        hashes.append(combined[first])
    if not docs:
        empty = np.zeros(0, dtype=np.int64)
        return HashedGrams(empty, empty, empty, empty, joined)
    return HashedGrams(
        np.concatenate(docs),
        _bucket(np.concatenate(hashes), bits),
        np.concatenate(begins),
        np.concatenate(ends),
        joined,
    )


class HashedNgrams(TransformerMixin, BaseEstimator):
    """TF-IDF over hashed n-grams (char_wb or word) of the normalised comment text.

    Same weighting as TextNgrams (sublinear tf × smooth idf, L2 rows); `min_df` and
    `max_features` are applied to buckets at fit and only the kept buckets become columns, so the
    learned feature space stays as regularised as with a vocabulary.
    """

    def __init__(
        self,
        analyzer: str = "char_wb",
        ngram_range: tuple[int, int] = (2, 5),
        n_bits: int = 19,
        min_df: int = 2,
        max_features: int | None = 200_000,
        sublinear_tf: bool = True,
    ):
        self.analyzer = analyzer
        self.ngram_range = ngram_range
        self.n_bits = n_bits
        self.min_df = min_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf

    def grams(self, texts: Sequence[str]) -> HashedGrams:
        """Every hashed n-gram occurrence in the texts."""
        if self.analyzer == "char_wb":
            return char_wb_grams(texts, tuple(self.ngram_range), self.n_bits)  # type: ignore[arg-type]
        if self.analyzer == "word":
            return word_grams(texts, tuple(self.ngram_range), self.n_bits)  # type: ignore[arg-type]
        raise ValueError(f"unknown analyzer {self.analyzer!r} (char_wb or word)")

    def _counts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, bucket, count) of every distinct n-gram bucket per text, sorted by row then bucket."""
        if len(texts) <= 64:
            # Serving's hot path: one sort of a few hundred keys beats building a sparse matrix.
            found = self.grams(texts)
            if len(texts) == 1:
                self.__dict__["_last"] = (texts[0], found)  # explain_names reuses it
            keys, counts = np.unique((found.doc << self.n_bits) | found.bucket, return_counts=True)
            return keys >> self.n_bits, keys & ((1 << self.n_bits) - 1), counts
        row_parts, col_parts, count_parts = [], [], []
        for start in range(0, len(texts), _HASH_CHUNK):
            chunk = texts[start : start + _HASH_CHUNK]
            found = self.grams(chunk)
            matrix = sp.csr_matrix(
                (np.ones(len(found.bucket), dtype=np.float32), (found.doc, found.bucket)),
                shape=(len(chunk), 1 << self.n_bits),
            )
            matrix.sum_duplicates()
            row_parts.append(np.repeat(np.arange(start, start + len(chunk)), np.diff(matrix.indptr)))
            col_parts.append(matrix.indices.astype(np.int64))
            count_parts.append(matrix.data)
        if not row_parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        return np.concatenate(row_parts), np.concatenate(col_parts), np.concatenate(count_parts)

    def fit(self, X: PreparedComments, y: Any = None) -> HashedNgrams:
        """Learn document frequencies per bucket; keep the frequent ones, weight them by IDF."""
        self._fit_counts(self._counts(X.text)[1], len(X))
        return self

    def fit_transform(self, X: PreparedComments, y: Any = None, **fit_params: Any) -> sp.csr_matrix:
        """Fit and transform with one hashing pass."""
        counts = self._counts(X.text)
        self._fit_counts(counts[1], len(X))
        return self._matrix(self._weigh(counts, len(X)), len(X))

    def _fit_counts(self, buckets: np.ndarray, n_docs: int) -> None:
        df = np.bincount(buckets, minlength=1 << self.n_bits)
        min_df = self.min_df if n_docs >= 50 else 1  # tiny fixtures would leave nothing
        keep = df >= min_df
        if self.max_features is not None and keep.sum() > self.max_features:
            ranked = np.lexsort((np.arange(len(df)), -df))  # most frequent first, ties by bucket
            top = np.zeros_like(keep)
            top[ranked[: self.max_features]] = True
            keep &= top
        kept = np.flatnonzero(keep)
        # Only kept buckets become columns: the classifier never sees (or fits) millions of
        # always-zero columns, and bucket order is preserved, so rows stay sorted.
        self.columns_ = np.full(1 << self.n_bits, -1, dtype=np.int32)
        self.columns_[kept] = np.arange(len(kept), dtype=np.int32)
        self.idf_ = (np.log((1.0 + n_docs) / (1.0 + df[kept])) + 1.0).astype(np.float32)

    def _weigh(
        self, counts: tuple[np.ndarray, np.ndarray, np.ndarray], n_docs: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, buckets, tf = counts
        cols = self.columns_[buckets]
        kept = cols >= 0
        rows, cols, tf = rows[kept], cols[kept], tf[kept].astype(np.float64)
        if self.sublinear_tf:
            tf = 1.0 + np.log(tf)
        values = tf * self.idf_[cols]
        norms = np.sqrt(np.bincount(rows, weights=values * values, minlength=n_docs))
        values /= norms[rows]
        return rows, cols, values.astype(np.float32)

    def _matrix(self, parts: tuple[np.ndarray, np.ndarray, np.ndarray], n_docs: int) -> sp.csr_matrix:
        rows, cols, values = parts
        indptr = np.searchsorted(rows, np.arange(n_docs + 1))
        return sp.csr_matrix((values, cols.astype(np.int32), indptr), shape=(n_docs, len(self.idf_)))

    def sparse_parts(self, X: PreparedComments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, column, value) of the non-zero TF-IDF weights, rows ascending."""
        return self._weigh(self._counts(X.text), len(X))

    def transform(self, X: PreparedComments) -> sp.csr_matrix:
        """Sparse TF-IDF matrix of the comments over the hashed buckets."""
        return self._matrix(self.sparse_parts(X), len(X))

    @property
    def output_width(self) -> int:
        """Width of the block: one column per kept bucket."""
        return len(self.idf_)

    def explain_names(self, text: str, columns: Sequence[int] | None = None) -> dict[int, str]:
        """Column → the longest n-gram of this (normalised) text that landed in it (only `columns`)."""
        last = self.__dict__.get("_last")
        found = last[1] if last is not None and last[0] == text else self.grams([text])
        gram_columns = self.columns_[found.bucket]
        wanted = gram_columns >= 0
        if columns is not None:
            wanted &= np.isin(gram_columns, np.asarray(columns, dtype=gram_columns.dtype))
        picked = np.flatnonzero(wanted)
        picked = picked[np.argsort(found.begin[picked] - found.end[picked], kind="stable")]
        names: dict[int, str] = {}
        for i in picked.tolist():
            names.setdefault(int(gram_columns[i]), found.joined[found.begin[i] : found.end[i]])
        return names

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_last", None)  # a per-process memo of the last comment, never pickled
        return state

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Column names by bucket (the n-grams behind a bucket are only known per comment: explain_names)."""
        prefix = "char" if self.analyzer.startswith("char") else "word"
        buckets = np.flatnonzero(self.columns_ >= 0)
        return np.asarray([f"{prefix}#{b}" for b in buckets.tolist()], dtype=object)
