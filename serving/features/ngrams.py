"""N-gram blocks of the comment text: TF-IDF over a learned vocabulary, or hashed n-grams."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer

from serving.features.prepare import PreparedComments
from serving.features.sparse_rows import Rows


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
    """TfidfVectorizer.transform without sklearn's per-call overhead.

    Counts the fitted vocabulary's terms of every text in one pass, then weights (sublinear tf ×
    idf) and L2-normalises the whole batch with a few numpy calls, giving the same numbers as the
    vectorizer (to float32 precision; a unit test holds it to that).
    """
    vocabulary = vectorizer.vocabulary_
    ids: list[int] = []
    lengths = np.zeros(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        before = len(ids)
        ids.extend(j for j in map(vocabulary.get, analyzer(text)) if j is not None)
        lengths[i] = len(ids) - before
    found = Rows.tfidf(np.asarray(ids, dtype=np.int64), lengths, vectorizer.idf_, vectorizer.sublinear_tf)
    return sp.csr_matrix(
        (found.data.astype(np.float32), found.indices.astype(np.int32), found.indptr),
        shape=(len(texts), found.width),
    )


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


class _BatchGrams:
    """A batch's n-gram counts and, when it was hashed in one chunk, its grams, with each row's
    positions among them found on first use (explanations ask for a few rows of a batch)."""

    __slots__ = ("_bounds", "_order", "counts", "grams")

    def __init__(self, counts: tuple[np.ndarray, np.ndarray, np.ndarray], grams: HashedGrams | None):
        self.counts = counts
        self.grams = grams
        self._order: np.ndarray | None = None
        self._bounds: np.ndarray | None = None

    def row(self, row: int) -> HashedGrams | None:
        grams = self.grams
        if grams is None:
            return None
        if row == 0 and not grams.doc.any():
            return grams  # one comment (a server's request): its grams are the batch's
        if self._order is None or self._bounds is None:
            # Stable: a row's grams keep their order, so ties between names break as for the row alone.
            self._order = np.argsort(grams.doc, kind="stable")
            self._bounds = np.searchsorted(
                grams.doc[self._order], np.arange(int(grams.doc.max(initial=0)) + 2)
            )
        if row + 1 >= len(self._bounds):
            at = self._order[:0]
        else:
            at = self._order[self._bounds[row] : self._bounds[row + 1]]
        return HashedGrams(grams.doc[at], grams.bucket[at], grams.begin[at], grams.end[at], grams.joined)


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


def _distinct_counts(
    found: HashedGrams, first_row: int, bits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, bucket, count) of the distinct (document, bucket) pairs of `found`, sorted; rows are
    numbered from `first_row`. One sort of packed keys: cheaper than a sparse matrix's per-row
    sort and duplicate sum, and than np.unique's extra passes."""
    keys = np.sort((found.doc << bits) | found.bucket)
    if not len(keys):
        return keys, keys, keys
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    counts = np.diff(np.append(starts, len(keys)))
    keys = keys[starts]
    return (keys >> bits) + first_row, keys & ((1 << bits) - 1), counts


# The base model and a label head hash the same comment with the same analyzer and bucket count;
# keyed by both, the last few single comments' grams are computed once for every block that asks.
_RECENT_GRAMS: OrderedDict[tuple[str, tuple[int, ...], int, str], HashedGrams] = OrderedDict()
_RECENT_GRAMS_SIZE = 8


def _single_text_grams(block: HashedNgrams, text: str) -> HashedGrams:
    key = (block.analyzer, tuple(block.ngram_range), block.n_bits, text)
    found = _RECENT_GRAMS.get(key)
    if found is None:
        found = block.grams([text])
        _RECENT_GRAMS[key] = found
        while len(_RECENT_GRAMS) > _RECENT_GRAMS_SIZE:
            try:
                _RECENT_GRAMS.popitem(last=False)
            except KeyError:  # another thread emptied it first
                break
    return found


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
        return self._counts_and_grams(texts)[0]

    def _counts_and_grams(
        self, texts: Sequence[str]
    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], HashedGrams | None]:
        """`_counts`, and the hashed grams behind them when the texts were hashed in one chunk (a
        scoring batch): explanations name a row's columns from them instead of hashing it again."""
        if len(texts) == 1:
            # Serving's hot path: the base model and a head ask for the same comment's grams.
            found = _single_text_grams(self, texts[0])
            return _distinct_counts(found, 0, self.n_bits), found
        if len(texts) <= _HASH_CHUNK:
            found = self.grams(texts)
            return _distinct_counts(found, 0, self.n_bits), found
        chunks = [
            (rows + start, buckets, counts) for start, _, (rows, buckets, counts) in self._chunk_counts(texts)
        ]
        rows, buckets, counts = (np.concatenate(parts) for parts in zip(*chunks, strict=True))
        return (rows, buckets, counts), None

    def _chunk_counts(
        self, texts: Sequence[str]
    ) -> Iterator[tuple[int, int, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
        """(first text, number of texts, `_counts` of them with rows from 0) per `_HASH_CHUNK` texts:
        chunks bound the transient arrays of hashing a training set."""
        for start in range(0, len(texts), _HASH_CHUNK):
            chunk = texts[start : start + _HASH_CHUNK]
            yield start, len(chunk), _distinct_counts(self.grams(chunk), 0, self.n_bits)

    def _document_frequencies(self, bucket_arrays: Iterable[np.ndarray]) -> np.ndarray:
        """Documents per bucket, from each chunk's distinct (row, bucket) buckets."""
        df = np.zeros(1 << self.n_bits, dtype=np.int64)
        for buckets in bucket_arrays:
            df += np.bincount(buckets, minlength=1 << self.n_bits)
        return df

    def fit(self, X: PreparedComments, y: Any = None) -> HashedNgrams:
        """Learn document frequencies per bucket; keep the frequent ones, weight them by IDF."""
        chunks = self._chunk_counts(X.text)
        self._fit_df(self._document_frequencies(buckets for _, _, (_, buckets, _) in chunks), len(X))
        return self

    def fit_transform(self, X: PreparedComments, y: Any = None, **fit_params: Any) -> sp.csr_matrix:
        """Fit and transform with one hashing pass.

        Training featurises ~100k comments at once: each chunk's counts are kept in 32-bit arrays
        and weighed chunk by chunk (a row's weights depend on that row alone, so the result is the
        same), which keeps the peak near the result's own size instead of several times it.
        """
        chunks = [
            (size, (rows.astype(np.int32), buckets.astype(np.int32), counts.astype(np.int32)))
            for _, size, (rows, buckets, counts) in self._chunk_counts(X.text)
        ]
        self._fit_df(self._document_frequencies(counts[1] for _, counts in chunks), len(X))
        if not chunks:
            return sp.csr_matrix((0, len(self.idf_)), dtype=np.float32)
        pieces = []
        chunks.reverse()
        while chunks:  # each chunk's counts are dropped as soon as they are weighed
            size, counts = chunks.pop()
            pieces.append(self._matrix(self._weigh(counts, size), size))
        return pieces[0] if len(pieces) == 1 else sp.vstack(pieces, format="csr")

    def _fit_df(self, df: np.ndarray, n_docs: int) -> None:
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
        return self._weigh(self._shared_counts(X), len(X))

    def _memo_key(self) -> tuple[Any, ...]:
        return ("hashed-ngrams", self.analyzer, tuple(self.ngram_range), self.n_bits)

    def _shared_counts(self, X: PreparedComments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`_counts` of the batch, computed once for every block that hashes alike (the base model's
        and a head's blocks), through the batch's memo; the batch's grams are kept there too, for
        `row_grams`."""
        memo = getattr(X, "memo", None)
        if memo is None:
            return self._counts(X.text)
        key = self._memo_key()
        found = memo.get(key)
        if found is None:
            found = memo[key] = _BatchGrams(*self._counts_and_grams(X.text))
        return found.counts

    def row_grams(self, X: PreparedComments, row: int) -> HashedGrams | None:
        """The grams of one row of a batch this block (or one hashing alike) has transformed, or None
        when the batch kept none (never transformed, or hashed in several chunks)."""
        memo = getattr(X, "memo", None)
        found = memo.get(self._memo_key()) if memo is not None else None
        return found.row(row) if found is not None else None

    def transform(self, X: PreparedComments) -> sp.csr_matrix:
        """Sparse TF-IDF matrix of the comments over the hashed buckets."""
        return self._matrix(self.sparse_parts(X), len(X))

    @property
    def output_width(self) -> int:
        """Width of the block: one column per kept bucket."""
        return len(self.idf_)

    def explain_names(
        self, text: str, columns: Sequence[int] | None = None, found: HashedGrams | None = None
    ) -> dict[int, str]:
        """Column → the longest n-gram of this (normalised) text that landed in it (only `columns`).

        `found`: the text's grams when the caller has them (`row_grams`); else they are hashed."""
        if found is None:
            found = _single_text_grams(self, text)
        gram_columns = self.columns_[found.bucket]
        wanted = gram_columns >= 0
        if columns is not None:
            # Membership in a few dozen columns: a sorted lookup, cheaper than np.isin's set machinery.
            targets = np.unique(np.asarray(columns, dtype=gram_columns.dtype))
            if not len(targets):
                return {}
            at = np.minimum(np.searchsorted(targets, gram_columns), len(targets) - 1)
            wanted &= targets[at] == gram_columns
        picked = np.flatnonzero(wanted)
        picked = picked[np.argsort(found.begin[picked] - found.end[picked], kind="stable")]
        names: dict[int, str] = {}
        joined, begins, ends = found.joined, found.begin, found.end
        for i, column in zip(picked.tolist(), gram_columns[picked].tolist(), strict=True):
            if column not in names:
                names[column] = joined[begins[i] : ends[i]]
        return names

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Column names by bucket (the n-grams behind a bucket are only known per comment: explain_names)."""
        prefix = "char" if self.analyzer.startswith("char") else "word"
        buckets = np.flatnonzero(self.columns_ >= 0)
        return np.asarray([f"{prefix}#{b}" for b in buckets.tolist()], dtype=object)
