"""Relation features of a (comment, article) pair: is the comment about this article?

Every feature compares a comment with its article's title, body, or both (or describes the comment
alone: how generic it is), using spaces fitted on real comments grouped by article
(serving/features/topics.py). Feature families (`FAMILIES`) were compared by measurement
(`make bench`, section "Relevance"); `DEFAULT_FAMILIES` is what the product computes.

Inputs are `PreparedComments` (normalised text, title and body; serving/features/prepare.py).
The article's side (its vectors, its reference statistics) is computed once per article: callers
pass it back in with `row`, and `transform` computes each distinct article of a batch once.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from serving.features.prepare import CommentPreprocessor, PreparedComments
from serving.features.sparse_rows import Rows
from serving.features.topics import (
    EMPTY,
    CharGrams,
    SparseVector,
    Tfidf,
    TopicSpace,
    Words,
    sparse_dot,
    topic_words,
)
from serving.text.normalize import dominant_script

# ----------------------------------------------------------------------------- features

PARTS = ("title", "body", "article")  # article = title and body together (or whichever exists)

# Feature families, in column order. `RelevanceFeatures(include=...)` computes a subset;
# "context" and "comment" are always computed (the generic rule reads "comment").
FAMILIES: dict[str, tuple[str, ...]] = {
    "context": ("has_title", "has_body"),
    "char": tuple(f"char_{p}" for p in PARTS),
    "word": tuple(f"word_{p}" for p in PARTS),
    "lsa": tuple(f"lsa_{p}" for p in PARTS),
    "bm25": ("bm25_title", "bm25_article"),
    "cover": ("cover_title", "cover_article"),
    "z": tuple(f"z_{k}_{p}" for k in ("char", "word", "lsa") for p in ("title", "article")),
    "prf": ("prf_title", "prf_article"),
    "esa": ("esa_title", "esa_article"),
    "unrelated": ("unrelated_title", "unrelated_article"),
    "background": ("bg_pct_title", "bg_pct_article", "bg_margin_article", "bg_top"),
    "overlap": ("rare_shared", "num_shared", "rare_shared_frac"),
    "comment": ("generic_df", "specific_words", "log_len", "specificity"),
    "script": ("script_mismatch",),
}
ALL_FAMILIES = tuple(FAMILIES)
# Chosen by measurement (REPORT.md): bm25, cover, prf and background added nothing over the rest
# in the article-grouped folds and cost per-comment time, so the default leaves them out.
DEFAULT_FAMILIES = ("context", "char", "word", "lsa", "z", "esa", "unrelated", "overlap", "comment", "script")


ArticleSide = tuple["_Side | None", "_Side | None", "_Side | None"]


def _column_names(families: Sequence[str]) -> np.ndarray:
    """The feature columns of `families`, in the order they are computed."""
    return np.asarray([name for family in families for name in FAMILIES[family]], dtype=object)


class _Side:
    """Everything computed once per text (a comment, or an article part: cache those)."""

    __slots__ = (
        "bg",
        "char",
        "esa",
        "expanded",
        "lsa",
        "norm",
        "rare",
        "ref",
        "script",
        "tf",
        "topic",
        "word",
        "word_set",
        "words",
    )

    def __init__(self, norm: str) -> None:
        self.norm = norm
        self.words: list[str] = []
        self.char: SparseVector = EMPTY
        self.word: SparseVector = EMPTY
        self.topic: SparseVector = EMPTY
        self.lsa: np.ndarray = np.zeros(0, dtype=np.float32)
        self.script = "none"
        self.tf: Counter[str] = Counter()
        self.ref: dict[str, tuple[float, float]] = {}
        self.expanded: np.ndarray | None = None
        self.bg: np.ndarray | None = None
        self.esa: SparseVector = EMPTY
        self.rare: frozenset[str] | None = None
        self.word_set: frozenset[str] = frozenset()


class RelevanceFeatures(TransformerMixin, BaseEstimator):
    """Relation features of (comment, article title, article body); names in `feature_names_`.

    fit(X=None, y=None, corpus=...): `corpus` is a DataFrame of real comments with `text` (or the
    already normalised `text_norm`) and `group` (the article each was posted under), e.g. the AOC
    comment sentences. Everything is learned from it: the topical space, the article document
    frequency, the char/word IDF and a fixed sample of reference comments. X is not needed (so the
    features never see evaluation pairs); when given, its comments and article parts are added to
    the char/word IDF.

    Families (`include`; each for the title, the body and both together where it makes sense):
    char / word: TF-IDF cosine (char 2-4-grams within words; stemmed content words);
    lsa: cosine in the topical space; z: char/word/lsa cosine standardised against how the same
    article scores `n_reference` unrelated real comments (removes per-article offsets: long
    bodies and common words score everyone higher); esa: cosine of the two texts as distributions
    over the corpus articles' comment threads; unrelated: share of the comment's topical weight on
    words whose topical direction is unrelated to the article; overlap: rare words (names) and
    numbers in both; comment (comment only): generic_df (mean share of articles whose comments
    use its words), specific_words (words used under < `rare_df` of articles or unknown),
    log_len, specificity (learned, see TopicSpace); script: Latin comment under Arabic article.
    Optional: bm25 (comment as query, scaled to [0,1]); cover (share of the article's key words
    in the comment); prf (cosine with the article expanded by matching corpus threads);
    background (share of corpus threads that fit the comment better than this article).
    """

    def __init__(
        self,
        include: Sequence[str] = DEFAULT_FAMILIES,
        n_components: int = 200,
        topic_vocabulary: int = 20000,
        expand_k: int = 30,
        char_range: tuple[int, int] = (2, 4),
        char_corpus_max: int = 3000,
        n_reference: int = 200,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        rare_df: float = 0.01,
        esa_top: int = 300,
        n_key: int = 15,
        unrelated_cos: float = 0.1,
        max_background: int = 2000,
        random_state: int = 13,
    ):
        self.include = include
        self.n_components = n_components
        self.topic_vocabulary = topic_vocabulary
        self.expand_k = expand_k
        self.char_range = char_range
        self.char_corpus_max = char_corpus_max
        self.n_reference = n_reference
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.rare_df = rare_df
        self.esa_top = esa_top
        self.n_key = n_key
        self.unrelated_cos = unrelated_cos
        self.max_background = max_background
        self.random_state = random_state

    # -- fitting
    def fit(
        self,
        X: Any = None,
        y: Any = None,
        corpus_texts: Sequence[str] = (),
        corpus_groups: Sequence[str] = (),
    ) -> RelevanceFeatures:
        """Learn every space from a corpus of real comments (`corpus_texts`, already normalised)
        and the article each was posted under (`corpus_groups`): the topical space, the article
        document frequency, the char/word IDF and a fixed sample of reference comments. X (pairs)
        is optional, so the features need never see an evaluation pair; when given, its comments
        and article parts join the char/word IDF. Without a corpus, X's comments grouped by their
        title stand in (small test fixtures)."""
        unknown = set(self.include) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown feature families {sorted(unknown)}")
        self.families_ = tuple(f for f in FAMILIES if f in set(self.include) | {"context", "comment"})
        self.feature_names_ = _column_names(self.families_)
        prepared = CommentPreprocessor().transform(X) if X is not None else PreparedComments((), (), (), ())
        text_n = list(prepared.text)
        if len(corpus_texts):
            if len(corpus_texts) != len(corpus_groups):
                raise ValueError(f"{len(corpus_texts)} corpus texts but {len(corpus_groups)} groups")
            c_text, c_group = list(corpus_texts), [str(g) for g in corpus_groups]
        else:
            c_text, c_group = text_n, [t or f"row{i}" for i, t in enumerate(prepared.title)]
        if not c_text:
            raise ValueError("RelevanceFeatures needs a corpus of comments (or pairs X) to fit")
        c_tokens = [topic_words(t) for t in c_text]
        self.topics_ = TopicSpace(
            self.n_components,
            max_features=self.topic_vocabulary,
            expand_k=self.expand_k,
            max_background=self.max_background,
            random_state=self.random_state,
        )
        self.topics_.fit_tokens(c_tokens, c_group)
        parts = sorted({p for p in prepared.title if p} | {p for p in prepared.body if p})
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(len(c_text))
        sample = [c_text[i] for i in sorted(order[: self.char_corpus_max])]
        self.char_ = Tfidf(CharGrams(*self.char_range), min_df=2).fit(sample + text_n + parts)
        word_docs = [" ".join(t) for t in c_tokens] + [" ".join(topic_words(t)) for t in text_n + parts]
        self.word_ = Tfidf(Words(), min_df=1).fit(word_docs)
        self.max_idf_ = float(self.word_.idf_.max())
        # BM25 length reference: article parts when given, else 20x a comment (a news story)
        part_lengths = [len(topic_words(p)) for p in parts]
        self.avg_article_len_ = (
            float(np.mean(part_lengths))
            if part_lengths
            else 20.0 * float(np.mean([len(t) for t in c_tokens]))
        )
        # reference comments (never in the char IDF sample) standardise an article's similarities
        ref_idx = [i for i in order[self.char_corpus_max :] if len(c_tokens[i]) >= 3][: self.n_reference]
        if not ref_idx:  # a tiny corpus: reuse the IDF sample rather than have no reference
            ref_idx = [int(i) for i in order[: self.n_reference]]
        ref = [self._side_from_norm(c_text[i]) for i in ref_idx]
        self.ref_char_ = Rows.stack([r.char for r in ref], len(self.char_.vocabulary_)).to_csr()
        self.ref_word_ = Rows.stack([r.word for r in ref], len(self.word_.vocabulary_)).to_csr()
        self.ref_lsa_ = np.vstack([r.lsa for r in ref]).astype(np.float32)
        return self

    def with_families(self, include: Sequence[str]) -> RelevanceFeatures:
        """The same fitted spaces computing only `include` (plus "context" and "comment"), without
        fitting again: to weigh what each family costs against what it adds (`make bench`). Must be
        a subset of the fitted families."""
        wanted = set(include) | {"context", "comment"}
        missing = wanted - set(self.families_)
        if missing:
            raise ValueError(f"families {sorted(missing)} were not fitted")
        restricted = copy.copy(self)
        restricted.include = tuple(f for f in FAMILIES if f in wanted)
        restricted.families_ = restricted.include
        restricted.feature_names_ = _column_names(restricted.families_)
        return restricted

    # -- sides
    def _side_from_norm(self, norm: str) -> _Side:
        s = _Side(norm)
        s.words = topic_words(norm)
        s.char = self.char_.vector(norm)
        s.word = self.word_.vector(" ".join(s.words))
        s.topic = self.topics_.vector(s.words)
        s.lsa = self.topics_.embed(s.topic)
        s.script = dominant_script(norm)
        return s

    def side(self, norm: str) -> _Side:
        """A comment's side, from its normalised text."""
        s = self._side_from_norm(norm)
        fam = self.families_
        if "esa" in fam:
            s.esa = self.topics_.concepts(s.topic, self.esa_top)
        if "background" in fam:
            s.bg = self.topics_.background(s.lsa)
        return s

    def _article_part(self, norm: str) -> _Side:
        s = self._side_from_norm(norm)
        s.tf = Counter(s.words)
        s.word_set = frozenset(s.words)
        s.esa = self.topics_.concepts(s.topic, self.esa_top)
        if "prf" in self.families_:
            s.expanded = self.topics_.expand(s.topic)
        for kind, ref, vec in (("char", self.ref_char_, s.char), ("word", self.ref_word_, s.word)):
            sims = _dot_many(ref, vec)
            s.ref[kind] = (float(sims.mean()), float(sims.std()) + 1e-3)
        sims = self.ref_lsa_ @ s.lsa
        s.ref["lsa"] = (float(sims.mean()), float(sims.std()) + 1e-3)
        return s

    def article_side(self, title: str, body: str) -> ArticleSide:
        """(title, body, title+body) sides of an article from its normalised parts: computed once
        per article (callers cache it)."""
        t = self._article_part(title) if title else None
        b = self._article_part(body) if body else None
        if t is None and b is None:
            return None, None, None
        a = self._article_part(f"{title} {body}") if (t is not None and b is not None) else (t or b)
        return t, b, a

    # -- single relations
    def _bm25(self, comment: _Side, art: _Side) -> float:
        """BM25 of the comment's words as a query against the article, divided by the score the
        same query would reach if every word were present once, so it is in [0, 1]."""
        if not comment.words or not art.words:
            return 0.0
        voc, idf = self.word_.vocabulary_, self.word_.idf_
        k1, b = self.bm25_k1, self.bm25_b
        norm_len = k1 * (1 - b + b * len(art.words) / self.avg_article_len_)
        got = best = 0.0
        for w in set(comment.words):
            j = voc.get(w)
            weight = idf[j] if j is not None else self.max_idf_
            best += weight
            f = art.tf.get(w, 0)
            if f:
                got += weight * f * (k1 + 1) / (f + norm_len)
        return got / (best * (k1 + 1) / (1 + k1 * (1 - b))) if best else 0.0

    def _unrelated(self, comment: _Side, art: _Side) -> float:
        """Share of the comment's topical weight (squared TF-IDF weights in the topic space) on
        words whose own direction in the topical space is unrelated to the article (cosine below
        `unrelated_cos`): one shared country name does not hide that the rest is about football."""
        cols, w = comment.topic
        if len(cols) == 0 or not art.lsa.any():
            return 0.0
        rel = self.topics_.word_directions()[cols] @ art.lsa
        return float((w[rel < self.unrelated_cos] ** 2).sum())

    def _cover(self, comment: _Side, art: _Side) -> float:
        """Share of the article's key words (its `n_key` highest TF-IDF words, IDF-weighted) that
        the comment uses."""
        if not comment.words or len(art.word[0]) == 0 or len(comment.word[0]) == 0:
            return 0.0
        cols, w = art.word
        if len(cols) > self.n_key:
            top = np.argpartition(-w, self.n_key - 1)[: self.n_key]
            cols, w = cols[top], w[top]
        c_cols = comment.word[0]
        idx = np.searchsorted(c_cols, cols).clip(max=len(c_cols) - 1)
        return float(w[c_cols[idx] == cols].sum() / w.sum())

    def _is_rare(self, word: str) -> bool:
        """A name-like word: used under fewer than `rare_df` of the corpus articles (or never)."""
        if word.startswith("#") or len(word) < 3:
            return False
        j = self.topics_.tfidf_.vocabulary_.get(word)
        return j is None or bool(self.topics_.article_df_[j] < self.rare_df)

    def _word_facts(self, word: str) -> tuple[float, bool]:
        """A topical word's article document frequency (0 when unknown) and whether it is rare
        (`_is_rare`), memoised per word (a per-process memo, not model state)."""
        memo: dict[str, tuple[float, bool]] | None = self.__dict__.get("_facts")
        if memo is None or len(memo) > 200_000:
            memo = self.__dict__["_facts"] = {}
        found = memo.get(word)
        if found is None:
            j = self.topics_.tfidf_.vocabulary_.get(word)
            df = float(self.topics_.article_df_[j]) if j is not None else 0.0
            found = memo[word] = (df, self._is_rare(word))
        return found

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = dict(super().__getstate__())
        state.pop("_facts", None)
        return state

    def _overlap(self, c: _Side, a: _Side) -> list[float]:
        """Rare words (names) and numbers the comment shares with the article."""
        if c.rare is None:  # the comment's rare words, once per comment
            c.rare = frozenset(w for w in set(c.words) if self._word_facts(w)[1])
        shared = len(c.rare & a.word_set)
        numbers = sum(1 for w in a.word_set.intersection(c.words) if w.startswith("#"))
        return [float(shared), float(numbers), shared / len(c.rare) if c.rare else 0.0]

    def _facts_of(self, words: Sequence[str]) -> list[tuple[float, bool]]:
        """`_word_facts` of every word, reading the memo directly (a batch looks up ~40 per comment)."""
        memo: dict[str, tuple[float, bool]] | None = self.__dict__.get("_facts")
        if memo is None:
            return [self._word_facts(w) for w in words]
        known = memo.get
        return [known(w) or self._word_facts(w) for w in words]

    def _word_counts(
        self, norm: str, words: Sequence[str], facts: Sequence[tuple[float, bool]] | None = None
    ) -> tuple[float, float, float]:
        """generic_df, specific_words and log_len of a comment (its normalised text and topical
        words, with their `_facts_of` when known); specificity, the fourth comment-only feature,
        needs its topical vector."""
        dfs = [df for df, _ in (facts if facts is not None else self._facts_of(words))]
        return (
            sum(dfs) / len(dfs) if dfs else 1.0,  # 1.0 = no topical word at all
            float(sum(1 for d in dfs if d < self.rare_df)),
            math.log1p(len(norm.split())),
        )

    def _comment_only(self, c: _Side) -> list[float]:
        return [*self._word_counts(c.norm, c.words), self.topics_.specificity(c.topic)]

    def row(self, c: _Side, t: _Side | None, b: _Side | None, a: _Side | None) -> list[float]:
        """One feature row (order = `feature_names_`); `c` from `side`, (t, b, a) from
        `article_side`. Relation features are 0 when the row has no article."""
        out: list[float] = []
        has = a is not None
        same = a is t or a is b  # one article part only: "article" = that part

        def three(f: Any) -> list[float]:
            vt = f(t) if t is not None else 0.0
            vb = f(b) if b is not None else 0.0
            return [vt, vb, (vt if a is t else vb) if same else (f(a) if has else 0.0)]

        def two(f: Any) -> list[float]:  # title and article
            vt = f(t) if t is not None else 0.0
            return [vt, vt if a is t else (f(a) if has else 0.0)]

        char = three(lambda p: sparse_dot(c.char, p.char))
        word = three(lambda p: sparse_dot(c.word, p.word))
        lsa = three(lambda p: float(c.lsa @ p.lsa))

        def z(kind: str, value: float, p: _Side | None) -> float:
            if p is None:
                return 0.0
            mean, std = p.ref[kind]
            return (value - mean) / std

        for fam in self.families_:
            if fam == "context":
                out += [float(t is not None), float(b is not None)]
            elif fam == "char":
                out += char
            elif fam == "word":
                out += word
            elif fam == "lsa":
                out += lsa
            elif fam == "bm25":
                out += [
                    self._bm25(c, t) if t is not None else 0.0,
                    self._bm25(c, a) if a is not None else 0.0,
                ]
            elif fam == "cover":
                out += [
                    self._cover(c, t) if t is not None else 0.0,
                    self._cover(c, a) if a is not None else 0.0,
                ]
            elif fam == "z":
                out += [
                    z("char", char[0], t),
                    z("char", char[2], a),
                    z("word", word[0], t),
                    z("word", word[2], a),
                    z("lsa", lsa[0], t),
                    z("lsa", lsa[2], a),
                ]
            elif fam == "prf":
                out += [float(c.lsa @ p.expanded) if p is not None else 0.0 for p in (t, a)]
            elif fam == "esa":
                out += two(lambda p: sparse_dot(c.esa, p.esa))
            elif fam == "unrelated":
                out += two(lambda p: self._unrelated(c, p))
            elif fam == "background":
                bg = c.bg if c.bg is not None else np.zeros(1)
                ok = has and c.bg is not None and len(c.topic[0]) > 0
                out += [
                    float(np.count_nonzero(bg > lsa[0])) / len(bg) if ok and t is not None else 0.0,
                    float(np.count_nonzero(bg > lsa[2])) / len(bg) if ok else 0.0,
                    lsa[2] - float(bg.max()) if ok else 0.0,
                    float(bg.max()) if c.bg is not None and len(c.topic[0]) else 0.0,
                ]
            elif fam == "overlap":
                out += self._overlap(c, a) if a is not None else [0.0, 0.0, 0.0]
            elif fam == "comment":
                out += self._comment_only(c)
            elif fam == "script":
                latin = c.script in ("latin", "mixed")
                out += [float(a is not None and latin and a.script == "arabic")]
        return out

    def transform(self, X: Any) -> np.ndarray:
        """Feature rows (order = `feature_names_`) for a canonical DataFrame or PreparedComments;
        each distinct article and comment of the batch is computed once."""
        prepared = CommentPreprocessor().transform(X)
        articles: dict[tuple[str, str], ArticleSide] = {}
        sides = []
        for title, body in zip(prepared.title, prepared.body, strict=True):
            key = (title, body)
            if key not in articles:
                articles[key] = self.article_side(title, body)
            sides.append(articles[key])
        return self.rows(prepared.text, sides)

    def rows(self, texts: Sequence[str], articles: Sequence[ArticleSide]) -> np.ndarray:
        """Feature rows (order = `feature_names_`) of normalised comments, each with its article's
        side (from `article_side`, cached by the caller). A batch of the product's families is
        computed at once (`_rows_batch`); a few comments (a server's request) and the optional
        families one row at a time (`row`), which costs less for a handful of rows. The two agree to
        float32 precision (the topical space's sums run in another order)."""
        width = len(self.feature_names_)
        if not len(texts):
            return np.zeros((0, width))
        if len(texts) > ROW_BY_ROW_UP_TO and set(self.families_) <= BATCH_FAMILIES:
            return self._rows_batch(texts, articles)
        comments: dict[str, _Side] = {}
        out = []
        for text, sides in zip(texts, articles, strict=True):
            if text not in comments:
                comments[text] = self.side(text)
            out.append(self.row(comments[text], *sides))
        return np.asarray(out, dtype=np.float64).reshape(len(out), width)

    # -- the whole batch at once
    def comment_block(self, texts: Sequence[str], related: np.ndarray | None = None) -> CommentBlock:
        """The comment side of distinct normalised comments, as matrices (one row per comment).
        `related`: which comments are compared with an article (None: all); the concept vectors,
        the costliest part, are computed for those only."""
        words = [topic_words(t) for t in texts]
        joined = [" ".join(w) for w in words]
        char = self.char_.rows(texts)
        word = self.word_.rows(joined)
        topic = self.topics_.tfidf_.rows(joined)
        lsa = self.topics_.embed_rows(topic)
        esa = None
        if "esa" in self.families_:
            wanted = np.flatnonzero(related) if related is not None else np.arange(len(texts))
            esa = self.topics_.concept_rows(topic.take(wanted), self.esa_top).spread(wanted, len(texts))
        facts = [self._facts_of(ws) for ws in words]
        only = np.zeros((len(texts), 4))
        for i, (text, ws, fs) in enumerate(zip(texts, words, facts, strict=True)):
            only[i, :3] = self._word_counts(text, ws, fs)
        only[:, 3] = self.topics_.specificity_rows(topic)
        return CommentBlock(
            char=char,
            word=word,
            topic=topic,
            lsa=lsa,
            esa=esa,
            comment_only=only,
            rare=[
                frozenset(w for w, (_, rare) in zip(ws, fs, strict=True) if rare)
                for ws, fs in zip(words, facts, strict=True)
            ],
            numbers=[frozenset(w for w in ws if w.startswith("#")) for ws in words],
            latin=np.array([dominant_script(t) in ("latin", "mixed") for t in texts], dtype=bool),
        )

    def _rows_batch(self, texts: Sequence[str], articles: Sequence[ArticleSide]) -> np.ndarray:
        """`row` for every row at once: each feature is one vectorised pass over the batch."""
        unique: dict[str, int] = {}
        ci = np.array([unique.setdefault(t, len(unique)) for t in texts], dtype=np.int64)
        widths = (len(self.char_.vocabulary_), len(self.word_.vocabulary_), self.topics_.n_concepts)
        parts = _PartStack(articles, widths)
        related = np.zeros(len(unique), dtype=bool)
        related[ci[parts.index[2] >= 0]] = True
        block = self.comment_block(list(unique), related)
        n = len(texts)
        ti, bi, ai = parts.index
        has_t, has_b, has_a = ti >= 0, bi >= 0, ai >= 0
        sims: dict[str, list[np.ndarray]] = {}
        for kind, comments, stacked in (("char", block.char, parts.char), ("word", block.word, parts.word)):
            sims[kind] = [_pair_dots(comments, ci, stacked, pi) for pi in (ti, bi, ai)]
        sims["lsa"] = [parts.lsa_dots(block.lsa, ci, pi) for pi in (ti, bi, ai)]
        columns: list[np.ndarray] = []
        for fam in self.families_:
            if fam == "context":
                columns += [has_t.astype(float), has_b.astype(float)]
            elif fam in ("char", "word", "lsa"):
                columns += sims[fam]
            elif fam == "z":
                for kind in ("char", "word", "lsa"):
                    for value, pi in ((sims[kind][0], ti), (sims[kind][2], ai)):
                        mean, std = parts.ref(kind, pi)
                        columns.append(np.where(pi >= 0, (value - mean) / std, 0.0))
            elif fam == "esa":
                assert block.esa is not None
                columns += [_pair_dots(block.esa, ci, parts.esa, pi) for pi in (ti, ai)]
            elif fam == "unrelated":
                columns += [
                    parts.unrelated(block.topic, ci, pi, self.topics_.word_directions(), self.unrelated_cos)
                    for pi in (ti, ai)
                ]
            elif fam == "overlap":
                overlap = np.zeros((n, 3))
                for r in np.flatnonzero(has_a).tolist():
                    c, article = int(ci[r]), parts.sides[int(ai[r])]
                    rare = block.rare[c]
                    shared = len(rare & article.word_set)
                    overlap[r] = (
                        shared,
                        len(block.numbers[c] & article.word_set),
                        shared / len(rare) if rare else 0.0,
                    )
                columns += list(overlap.T)
            elif fam == "comment":
                columns += list(block.comment_only[ci].T)
            elif fam == "script":
                columns.append((has_a & block.latin[ci] & parts.arabic(ai)).astype(float))
        return np.column_stack(columns).astype(np.float64, copy=False)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return self.feature_names_


# Up to this many rows, one row at a time costs less than the batch path's fixed numpy overhead
# (measured: 1 row 0.3 vs 1.3 ms, 8 rows about even, 64 rows 0.49 vs 0.22 ms a comment).
ROW_BY_ROW_UP_TO = 6
# Families `_rows_batch` computes for a whole batch; the optional ones go row by row.
BATCH_FAMILIES = frozenset(
    ("context", "char", "word", "lsa", "z", "esa", "unrelated", "overlap", "comment", "script")
)


@dataclass(frozen=True, slots=True)
class CommentBlock:
    """Distinct comments of a batch as matrices: TF-IDF rows (char, word, topic), unit LSA rows,
    concept rows, the comment-only features, and per comment its rare words, numbers and script."""

    char: Rows
    word: Rows
    topic: Rows
    lsa: np.ndarray
    esa: Rows | None
    comment_only: np.ndarray
    rare: list[frozenset[str]]
    numbers: list[frozenset[str]]
    latin: np.ndarray


class _PartStack:
    """The distinct article parts of a batch stacked into matrices, and per row the index of its
    title, body and whole-article part in them (-1: none)."""

    def __init__(self, articles: Sequence[ArticleSide], widths: tuple[int, int, int]) -> None:
        position: dict[int, int] = {}
        self.sides: list[_Side] = []
        index = np.full((3, len(articles)), -1, dtype=np.int64)
        for r, sides in enumerate(articles):
            for k, side in enumerate(sides):
                if side is None:
                    continue
                j = position.get(id(side))
                if j is None:
                    j = position[id(side)] = len(self.sides)
                    self.sides.append(side)
                index[k, r] = j
        self.index = (index[0], index[1], index[2])
        parts = self.sides
        char_width, word_width, concept_width = widths
        self.char = Rows.stack([p.char for p in parts], char_width)
        self.word = Rows.stack([p.word for p in parts], word_width)
        self.esa = Rows.stack([p.esa for p in parts], concept_width)
        width = len(parts[0].lsa) if parts else 0
        self.lsa = np.vstack([p.lsa for p in parts]) if parts else np.zeros((0, width), dtype=np.float32)
        self.refs = {
            kind: (
                np.array([p.ref[kind][0] for p in parts] + [0.0]),
                np.array([p.ref[kind][1] for p in parts] + [1.0]),
            )
            for kind in ("char", "word", "lsa")
        }

    def ref(self, kind: str, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reference mean and std of each row's part (0 and 1 where the row has none)."""
        mean, std = self.refs[kind]
        return mean[pi], std[pi]  # index -1 reads the trailing (0, 1)

    def lsa_dots(self, comments: np.ndarray, ci: np.ndarray, pi: np.ndarray) -> np.ndarray:
        """Cosine in the topical space of each row's comment and part (0 where it has none)."""
        out = np.zeros(len(ci))
        rows = np.flatnonzero(pi >= 0)
        if len(rows):
            out[rows] = np.einsum("ij,ij->i", comments[ci[rows]], self.lsa[pi[rows]])
        return out

    def unrelated(
        self, topic: Rows, ci: np.ndarray, pi: np.ndarray, directions: np.ndarray, below: float
    ) -> np.ndarray:
        """RelevanceFeatures._unrelated for every row: the share of the comment's topical weight on
        words whose direction has a cosine below `below` with the part's topical vector."""
        out = np.zeros(len(ci))
        if not len(self.sides):
            return out
        usable = np.array([bool(p.lsa.any()) for p in self.sides] + [False])
        rows = np.flatnonzero((pi >= 0) & usable[pi])
        if not len(rows):
            return out
        gathered = topic.take(ci[rows])
        owner = gathered.owner()
        related = np.einsum("ij,ij->i", directions[gathered.indices], self.lsa[pi[rows]][owner])
        weight = np.where(related < below, gathered.data**2, 0.0)
        out[rows] = np.bincount(owner, weights=weight, minlength=len(rows))
        return out

    def arabic(self, pi: np.ndarray) -> np.ndarray:
        """Whether each row's part is in Arabic script (False where it has none)."""
        scripts = np.array([p.script == "arabic" for p in self.sides] + [False])
        return scripts[pi]


def _pair_dots(comments: Rows, ci: np.ndarray, parts: Rows, pi: np.ndarray) -> np.ndarray:
    """Dot product of comment row ci[r] with part row pi[r] for every row r (0 where pi[r] < 0).

    One search over the whole batch: every (part, column) of the stacked parts is a sorted key
    part × width + column, so each comment non-zero finds its partner, if any, by bisection.
    """
    out = np.zeros(len(ci))
    rows = np.flatnonzero(pi >= 0)
    if not len(rows) or not len(parts.data):
        return out
    width = max(comments.width, parts.width)
    part_keys = parts.owner() * width + parts.indices
    gathered = comments.take(ci[rows])
    owner = gathered.owner()
    keys = pi[rows][owner] * width + gathered.indices
    found = np.searchsorted(part_keys, keys).clip(max=len(part_keys) - 1)
    hit = part_keys[found] == keys
    out[rows] = np.bincount(
        owner[hit], weights=gathered.data[hit] * parts.data[found[hit]], minlength=len(rows)
    )
    return out


def _dot_many(matrix: sp.csr_matrix, vec: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Dot product of every row of `matrix` with a (columns, values) vector."""
    cols, vals = vec
    if len(cols) == 0:
        return np.zeros(matrix.shape[0])
    dense = np.zeros(matrix.shape[1])
    dense[cols] = vals
    return matrix @ dense
