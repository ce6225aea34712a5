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

from serving.normalize import (
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
        weights = self.transformer_weights or {}
        blocks = []
        for name, transformer in self.transformer_list:
            if transformer in ("drop", None):
                continue
            block = transformer.transform(X)
            weight = weights.get(name)
            blocks.append(block * weight if weight not in (None, 1, 1.0) else block)
        return sp.hstack(blocks, format="csr")


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
    return content_tokens(text)


def _row_normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


# Similarity bins: a linear classifier gets "how related" as indicators, not one slope.
SIMILARITY_EDGES = (0.05, 0.1, 0.2, 0.35)


@lru_cache(maxsize=2048)
def _article_words(article: str) -> frozenset[str]:
    return frozenset(content_tokens(article))


@lru_cache(maxsize=2048)
def _article_script(article: str) -> str:
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
        state.pop("_projection_c", None)
        return state

    def transform(self, X: PreparedComments) -> sp.csr_matrix:
        """Dense relation block (as sparse, to sit beside the n-grams)."""
        n = len(X)
        out = np.zeros((n, len(self.feature_names_)), dtype=np.float32)
        has_title = np.array([bool(t) for t in X.title])
        has_body = np.array([bool(b) for b in X.body])
        if not (has_title.any() or has_body.any()):
            return sp.csr_matrix(out)
        articles = [f"{t} {b}".strip() for t, b in zip(X.title, X.body, strict=True)]
        c_tfidf, c_lsa = self._embed(X.text)
        _, t_lsa = self._article_vectors(X.title)
        _, b_lsa = self._article_vectors(X.body)
        a_tfidf, a_lsa = self._article_vectors(articles)
        lsa_title = np.where(has_title, np.einsum("ij,ij->i", c_lsa, t_lsa), 0.0)
        lsa_body = np.where(has_body, np.einsum("ij,ij->i", c_lsa, b_lsa), 0.0)
        has_any = has_title | has_body
        lsa_article = np.where(has_any, np.einsum("ij,ij->i", c_lsa, a_lsa), 0.0)
        tfidf_article = np.asarray(c_tfidf.multiply(a_tfidf).sum(axis=1)).ravel()
        out[:, 0] = has_title
        out[:, 1] = has_body
        out[:, 2] = np.clip(lsa_title, 0, 1)
        out[:, 3] = np.clip(lsa_body, 0, 1)
        out[:, 4] = np.clip(lsa_article, 0, 1)
        out[:, 5] = np.clip(tfidf_article, 0, 1)
        for i in np.flatnonzero(has_any):
            comment_words = set(content_tokens(X.text[i]))
            article_words = _article_words(articles[i])
            shared = len(comment_words & article_words)
            out[i, 6] = min(shared, 5) / 5.0
            out[i, 7] = shared / len(comment_words) if comment_words else 0.0
            # A mismatch needs the comment to differ from every part of the article we have:
            # an English comment under an English headline is not a mismatch, whatever the body.
            comment_script = dominant_script(X.text[i])
            scripts = {_article_script(part) for part in (X.title[i], X.body[i]) if part}
            out[i, 8] = comment_script == "latin" and scripts <= {"arabic"}
            out[i, 9] = comment_script == "arabic" and scripts <= {"latin"}
        n_bins = len(SIMILARITY_EDGES) + 1
        title_sim = np.maximum(out[:, 2], out[:, 5])
        body_sim = np.maximum(out[:, 4], out[:, 5])
        title_bins = np.searchsorted(SIMILARITY_EDGES, title_sim, side="right")
        body_bins = np.searchsorted(SIMILARITY_EDGES, body_sim, side="right")
        title_only = has_title & ~has_body
        for i in np.flatnonzero(title_only):
            out[i, 10 + title_bins[i]] = 1.0
        for i in np.flatnonzero(has_body):
            out[i, 10 + n_bins + body_bins[i]] = 1.0
        return sp.csr_matrix(out)

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

    def transform(self, X: PreparedComments) -> sp.csr_matrix:
        """Sparse matrix of the signals."""
        rows = [self.row(raw, text) for raw, text in zip(X.raw_text, X.text, strict=True)]
        return sp.csr_matrix(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the signals."""
        return np.asarray(self.FEATURES, dtype=object)
