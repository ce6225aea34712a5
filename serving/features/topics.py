"""A topical space learned from real reader comments grouped by the article they were posted under.

Comments under one article are about the same story, so a corpus of comments with their article
ids (AOC's 108k published comment sentences name their article) teaches, without any human label,
which words readers use about the same things. Everything here is fitted once at training time and
read at scoring time: TF-IDF spaces with a fast one-text path (`Tfidf.vector`), the LSA projection,
each word's article document frequency (how generic a word is) and a learned comment specificity.
Used by the relevance features (serving/features/relevance.py).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import TruncatedSVD

from serving.features.sparse_rows import Rows
from serving.text.normalize import MASK_TOKENS
from serving.text.tokens import STOPWORDS, light_stem

_MASKS = frozenset(MASK_TOKENS)
_WORD = re.compile(r"[^\W\d_]+|\d+", re.UNICODE)
# Laughter and interjections say nothing about a topic, however rare their spelling.
_NON_TOPICAL = re.compile(r"^(?:ه{2,}|(?:ها){2,}|خ{2,}|(?:ha){2,}h?|(?:he){2,}|lo+l|x+d+|ya+|wo+w)$")
_MAX_MEMO = 200_000


@lru_cache(maxsize=262144)
def topic_stem(token: str) -> str:
    """`light_stem`, plus a leading conjunction/preposition (و ف ب) dropped from a long word."""
    token = light_stem(token)
    if len(token) >= 5 and token[0] in "وفب" and token[1:3] != "ال":
        token = light_stem(token[1:])
    return token


def _topic_form(token: str) -> str:
    """The topical form of one token, '' when it carries no topic (numbers of 2+ digits: `#n`)."""
    if token.isdigit():
        return "#" + token if len(token) >= 2 else ""
    if len(token) < 2 or token in STOPWORDS or token in _MASKS or _NON_TOPICAL.match(token):
        return ""
    return topic_stem(token)


_FORMS: dict[str, str] = {}


def topic_words(normalized: str) -> list[str]:
    """Topical tokens of normalised text: no function words or masks, stemmed; numbers as `#n`."""
    forms = _FORMS
    if len(forms) > _MAX_MEMO:
        forms.clear()
    out = []
    for token in _WORD.findall(normalized):
        form = forms.get(token)
        if form is None:
            form = forms[token] = _topic_form(token)
        if form:
            out.append(form)
    return out


class Words:
    """Analyzer for pre-tokenised, space-joined documents: each word is one feature."""

    def grams(self, word: str) -> tuple[str, ...]:
        return (word,)

    def __call__(self, text: str) -> list[str]:
        return text.split()


class CharGrams:
    """char n-grams inside word boundaries (each word padded with a space); picklable."""

    def __init__(self, lo: int = 2, hi: int = 4):
        self.lo, self.hi = lo, hi

    def grams(self, word: str) -> tuple[str, ...]:
        return _word_grams(word, self.lo, self.hi)

    def __call__(self, text: str) -> list[str]:
        out: list[str] = []
        for w in text.split():
            out.extend(_word_grams(w, self.lo, self.hi))
        return out


@lru_cache(maxsize=262144)
def _word_grams(word: str, lo: int, hi: int) -> tuple[str, ...]:
    w = f" {word} "
    n_w = len(w)
    return tuple(w[i : i + n] for n in range(lo, min(hi, n_w) + 1) for i in range(n_w - n + 1))


SparseVector = tuple[np.ndarray, np.ndarray]  # (sorted column ids, weights)
EMPTY: SparseVector = (np.zeros(0, dtype=np.int64), np.zeros(0))


class Tfidf:
    """A TF-IDF space (sublinear tf, smooth idf, l2 rows) with a fast single-text path.

    `vector(text)` returns (sorted columns, weights). Each word's column ids are memoised, so a
    comment costs one dictionary lookup per word plus a few numpy calls.
    """

    def __init__(self, analyzer: Any, min_df: int = 2, max_features: int | None = None):
        self.analyzer = analyzer
        self.min_df = min_df
        self.max_features = max_features

    def fit(self, docs: Sequence[str]) -> Tfidf:
        df: Counter[str] = Counter()
        if isinstance(self.analyzer, Words):
            for d in docs:
                df.update(set(d.split()))
        else:
            grams = self.analyzer.grams
            for d in docs:
                seen: set[str] = set()
                for w in set(d.split()):
                    seen.update(grams(w))
                df.update(seen)
        items = [(t, c) for t, c in df.items() if c >= self.min_df]
        if self.max_features and len(items) > self.max_features:
            items.sort(key=lambda tc: (-tc[1], tc[0]))
            items = items[: self.max_features]
        items.sort()
        self.vocabulary_ = {t: i for i, (t, _) in enumerate(items)}
        counts = np.array([c for _, c in items], dtype=np.float64)
        self.n_docs_ = len(docs)
        self.idf_ = np.log((1.0 + self.n_docs_) / (1.0 + counts)) + 1.0
        return self

    def _word_ids(self, word: str) -> np.ndarray:
        memo: dict[str, np.ndarray] = self.__dict__.setdefault("_memo", {})
        ids = memo.get(word)
        if ids is None:
            voc = self.vocabulary_
            ids = np.array([voc[g] for g in self.analyzer.grams(word) if g in voc], dtype=np.int64)
            if len(memo) > 200000:
                memo.clear()
            memo[word] = ids
        return ids

    def vector(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        words = text.split()
        if not words:
            return EMPTY
        parts = [self._word_ids(w) for w in words]
        if len(parts) <= 32 and isinstance(self.analyzer, Words):
            # short word vectors: counting in Python beats numpy's call overhead
            counts: dict[int, int] = {}
            for p in parts:
                for j in p.tolist():
                    counts[j] = counts.get(j, 0) + 1
            if not counts:
                return EMPTY
            cols = np.array(sorted(counts), dtype=np.int64)
            w = (1.0 + np.log(np.array([counts[j] for j in cols.tolist()], dtype=np.float64))) * self.idf_[
                cols
            ]
            return cols, w / math.sqrt(float(w @ w))
        ids = np.concatenate(parts)
        if len(ids) == 0:
            return EMPTY
        cols, counts_ = np.unique(ids, return_counts=True)
        w = (1.0 + np.log(counts_)) * self.idf_[cols]
        return cols, w / math.sqrt(float(w @ w))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_memo", None)
        return state

    def rows(self, texts: Sequence[str]) -> Rows:
        """TF-IDF rows of a batch, the same values as `vector` row by row: each word's column ids
        come from the same memo, and one sort over the batch counts them."""
        parts: list[np.ndarray] = []
        lengths = np.zeros(len(texts), dtype=np.int64)
        if isinstance(self.analyzer, Words):  # one column per known word: no arrays per word
            voc = self.vocabulary_
            known: list[int] = []
            for i, text in enumerate(texts):
                before = len(known)
                known.extend(j for j in map(voc.get, text.split()) if j is not None)
                lengths[i] = len(known) - before
            parts.append(np.array(known, dtype=np.int64))
        else:
            for i, text in enumerate(texts):
                found = [self._word_ids(w) for w in text.split()]
                parts.extend(found)
                lengths[i] = sum(map(len, found))
        ids = np.concatenate(parts).astype(np.int64, copy=False) if parts else np.zeros(0, dtype=np.int64)
        return Rows.tfidf(ids, lengths, self.idf_)

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """`rows` as a scipy matrix (training's spaces are fitted on these)."""
        matrix: sp.csr_matrix = self.rows(texts).to_csr()
        return matrix


def sparse_dot(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Dot product of two (sorted columns, values) vectors."""
    (ca, va), (cb, vb) = a, b
    if len(ca) == 0 or len(cb) == 0:
        return 0.0
    if len(ca) > len(cb):
        ca, va, cb, vb = cb, vb, ca, va
    idx = np.searchsorted(cb, ca)
    idx[idx == len(cb)] = 0
    hit = cb[idx] == ca
    return float(va[hit] @ vb[idx[hit]])


def _unit(m: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, n, out=np.zeros_like(m), where=n > 0)


class TopicSpace(TransformerMixin, BaseEstimator):
    """Topical space learned from comments grouped by their article (self-supervised).

    `fit(texts, groups)`: the comments of one article are joined into one pseudo-document; a TF-IDF
    over those pseudo-documents is reduced by truncated SVD (LSA), so words that readers use under
    the same articles land close together even when they never share a comment. Kept for scoring:
    - `article_df_`: each word's article document frequency (share of articles whose comments use
      it), the basis of the genericness features;
    - `doc_lsa_`: every corpus article's position in the space: a background of "other articles"
      a comment can be compared with ("does some other article fit this comment better?");
    - `doc_tfidf_`: the pseudo-documents themselves, to expand a terse title with what readers
      wrote under the corpus articles that share its words (pseudo-relevance feedback).
    """

    def __init__(
        self,
        n_components: int = 200,
        min_df: int = 3,
        max_features: int = 20000,
        expand_k: int = 30,
        n_negatives: int = 10,
        specificity_articles: int = 800,
        specificity_alpha: float = 30.0,
        max_background: int = 2000,
        random_state: int = 13,
    ):
        self.max_background = max_background
        self.n_negatives = n_negatives
        self.specificity_articles = specificity_articles
        self.specificity_alpha = specificity_alpha
        self.n_components = n_components
        self.min_df = min_df
        self.max_features = max_features
        self.expand_k = expand_k
        self.random_state = random_state

    def fit(self, texts: Sequence[str], groups: Sequence[str]) -> TopicSpace:
        """`texts` already passed through `normalize`; `groups` = the article of each comment."""
        return self.fit_tokens([topic_words(t) for t in texts], groups)

    def fit_tokens(self, tokens: Sequence[list[str]], groups: Sequence[str]) -> TopicSpace:
        docs: dict[str, list[str]] = {}
        for t, g in zip(tokens, groups, strict=False):
            docs.setdefault(g, []).extend(t)
        pseudo = [" ".join(v) for v in docs.values()]
        self.tfidf_ = Tfidf(Words(), min_df=self.min_df, max_features=self.max_features).fit(pseudo)
        m = self.tfidf_.transform(pseudo).astype(np.float32)
        k = max(1, min(self.n_components, m.shape[0] - 1, m.shape[1] - 1))
        svd = TruncatedSVD(n_components=k, random_state=self.random_state, algorithm="randomized", n_iter=2)
        svd.fit(m)
        self.projection_ = np.ascontiguousarray(svd.components_.T, dtype=np.float32)
        self.n_groups_ = len(pseudo)
        self.article_df_ = np.asarray((m > 0).sum(axis=0)).ravel() / float(self.n_groups_)
        # background / concept articles: the `max_background` articles with most comments (their
        # comment threads are the most reliable picture of a story); bounds per-comment cost
        sizes = np.array([len(v) for v in docs.values()])
        keep = np.sort(np.argsort(-sizes, kind="stable")[: self.max_background])
        self.doc_lsa_ = np.ascontiguousarray(_unit(np.asarray(m[keep] @ self.projection_)), dtype=np.float32)
        self.doc_tfidf_ = sp.csc_matrix(m[keep])
        self._fit_specificity(tokens, groups)
        return self

    def _fit_specificity(self, tokens: Sequence[list[str]], groups: Sequence[str]) -> None:
        """Learn how strongly a comment's words tie it to the article it was posted under.

        Self-supervised target for the comments of `specificity_articles` sampled articles with
        >= 3 comments: topical cosine between the comment and the centroid of the OTHER comments
        under its article, minus its mean cosine with the centroids of `n_negatives` random other
        articles. High: the comment talks about its story; near 0: it would fit under anything
        (thanks, prayers, laughter). A ridge regression from the comment's words to that margin
        generalises it to new comments (`specificity`).
        """
        from sklearn.linear_model import Ridge

        rng = np.random.default_rng(self.random_state)
        names, gidx = np.unique(np.asarray(groups), return_inverse=True)
        counts = np.bincount(gidx)
        picked = rng.permutation(np.flatnonzero(counts >= 3))[: self.specificity_articles]
        in_sample = np.zeros(len(names), bool)
        in_sample[picked] = True
        members = np.flatnonzero(in_sample[gidx])
        c = self.tfidf_.transform([" ".join(tokens[int(i)]) for i in members]).astype(np.float32)
        lsa = _unit(np.asarray(c @ self.projection_))
        g = gidx[members]
        sums = np.zeros((len(names), lsa.shape[1]), dtype=np.float64)
        np.add.at(sums, g, lsa)
        centroids = _unit(sums)
        rows = np.flatnonzero(np.asarray(c.getnnz(axis=1)) > 0)
        s_own = np.einsum("ij,ij->i", _unit(sums[g[rows]] - lsa[rows]), lsa[rows])
        s_neg = np.zeros(len(rows))
        for _ in range(self.n_negatives):
            other = rng.choice(picked, len(rows))
            s_neg += np.einsum("ij,ij->i", centroids[other], lsa[rows])
        target = s_own - s_neg / self.n_negatives
        ridge = Ridge(alpha=self.specificity_alpha, solver="sparse_cg").fit(c[rows], target)
        self.specificity_coef_ = ridge.coef_.astype(np.float64)
        self.specificity_intercept_ = float(ridge.intercept_)

    def word_directions(self) -> np.ndarray:
        """Each word's unit direction in the topical space (derived from the projection on first use
        and kept out of the pickle: the bundle would carry the same matrix twice)."""
        directions: np.ndarray | None = self.__dict__.get("_word_directions")
        if directions is None:
            directions = np.ascontiguousarray(_unit(self.projection_), dtype=np.float32)
            self.__dict__["_word_directions"] = directions
        return directions

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = dict(super().__getstate__())
        state.pop("_word_directions", None)
        state.pop("_threads_by_word_m", None)
        return state

    def specificity(self, vec: tuple[np.ndarray, np.ndarray]) -> float:
        """Predicted topical margin of a comment for its own article over random others (higher =
        more specific); words unknown to the space contribute nothing."""
        cols, w = vec
        if len(cols) == 0:
            return self.specificity_intercept_
        return float(self.specificity_intercept_ + w @ self.specificity_coef_[cols])

    def vector(self, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.tfidf_.vector(" ".join(tokens))

    def embed(self, vec: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        cols, w = vec
        if len(cols) == 0:
            return np.zeros(self.projection_.shape[1], dtype=np.float32)
        v = w.astype(np.float32) @ self.projection_[cols]
        n = math.sqrt(float(v @ v))
        return v / n if n else v

    def embed_rows(self, tfidf: Rows) -> np.ndarray:
        """`embed` of every TF-IDF row: unit topical vectors (zeros for empty rows)."""
        lsa = tfidf.dot_dense(self.projection_)
        norms = np.sqrt(np.einsum("ij,ij->i", lsa, lsa))
        return np.divide(lsa, norms[:, None], out=np.zeros_like(lsa), where=norms[:, None] > 0)

    def specificity_rows(self, tfidf: Rows) -> np.ndarray:
        """`specificity` of every TF-IDF row."""
        return tfidf.dot_vector(self.specificity_coef_) + self.specificity_intercept_

    @property
    def n_concepts(self) -> int:
        """How many corpus comment threads the concept vectors range over."""
        return int(self.doc_tfidf_.shape[0])

    def concept_rows(self, tfidf: Rows, top: int = 100) -> Rows:
        """`concepts` of every TF-IDF row: unit rows over the corpus threads, each its `top` best."""
        n, width = len(tfidf), self.n_concepts
        # One sparse product sums every word's contribution to every thread in C, word by word in
        # column order as `_doc_sims` does.
        sims = np.asarray((tfidf.to_csr() @ self._threads_by_word()).toarray())
        k = min(top, width)
        if k < width:
            chosen = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            chosen = np.tile(np.arange(width), (n, 1))
        chosen.sort(axis=1)
        picked = np.take_along_axis(sims, chosen, axis=1)
        keep = picked > 0
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=indptr[1:])
        return Rows(indptr, chosen[keep].astype(np.int64), picked[keep], width).normalized()

    def _threads_by_word(self) -> sp.csr_matrix:
        """The corpus threads' TF-IDF as (words × threads) float64 rows (~8 MB for 2,000 threads),
        made on first use and kept out of the pickle: a batch's cosines with every thread are one
        sparse product."""
        matrix: sp.csr_matrix | None = self.__dict__.get("_threads_by_word_m")
        if matrix is None:
            matrix = sp.csr_matrix(self.doc_tfidf_.T, dtype=np.float64)
            self.__dict__["_threads_by_word_m"] = matrix
        return matrix

    def background(self, lsa: np.ndarray) -> np.ndarray:
        """Cosine of a unit LSA vector with every corpus article."""
        return self.doc_lsa_ @ lsa

    def _doc_sims(self, cols: np.ndarray, w: np.ndarray) -> np.ndarray:
        """TF-IDF cosine of a vector with every background article, straight from the CSC arrays
        (scipy's column slicing costs more than the arithmetic for a short comment)."""
        m = self.doc_tfidf_
        starts, ends = m.indptr[cols], m.indptr[cols + 1]
        lengths = ends - starts
        if lengths.sum() == 0:
            return np.zeros(m.shape[0])
        spans = list(zip(starts.tolist(), ends.tolist(), strict=True))
        idx = np.concatenate([m.indices[a:b] for a, b in spans])
        val = np.concatenate([m.data[a:b] for a, b in spans]) * np.repeat(w, lengths)
        return np.bincount(idx, weights=val, minlength=m.shape[0])

    def expand(self, vec: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Unit LSA vector of the corpus articles whose comments best match `vec` (top k,
        weighted by their similarity): what readers talk about under articles like this one."""
        cols, w = vec
        if len(cols) == 0:
            return np.zeros(self.projection_.shape[1], dtype=np.float32)
        sims = self._doc_sims(cols, w)
        k = min(self.expand_k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        weights = np.clip(sims[top], 0, None)
        if weights.sum() <= 0:
            return np.zeros(self.projection_.shape[1], dtype=np.float32)
        v = weights @ self.doc_lsa_[top]
        n = math.sqrt(float(v @ v))
        return v / n if n else v

    def concepts(self, vec: tuple[np.ndarray, np.ndarray], top: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """The text as a sparse unit vector over corpus articles (explicit semantic analysis with
        the comment threads as concepts): its TF-IDF cosine with each pseudo-document, top `top`."""
        cols, w = vec
        if len(cols) == 0:
            return EMPTY
        sims = self._doc_sims(cols, w)
        k = min(top, len(sims))
        idx = np.argpartition(-sims, k - 1)[:k]
        idx = idx[sims[idx] > 0]
        if len(idx) == 0:
            return EMPTY
        idx.sort()
        v = sims[idx].astype(np.float64)
        return idx.astype(np.int64), v / math.sqrt(float(v @ v))

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        return np.vstack([self.embed(self.vector(topic_words(t))) for t in texts])
