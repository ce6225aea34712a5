"""The relevance component: its data, its out-of-fold evaluation beside plain cosine, its final fit.

Protocol (`evaluate_relevance`, the same in `raqib train` and `make bench`):
- The relation features are fitted ONCE on the comment corpus (AOC's published comments grouped
  by article, no label; the AOC sample's own articles left out), so they never see a pair; one
  feature matrix serves every fold. Only the small per-context classifiers and their thresholds
  are fitted per fold.
- Folds are grouped by article (AOC: the comment's own article and its partners fall in one fold;
  SemEval: by question). Each fold's model trains on the other folds' AOC pairs (every real pair,
  one CONSTRUCTED partner per comment, title+body and title-only copies) and SemEval pairs.
- AOC figures per context (title and body; title only): ROC-AUC of p(about something else) for
  real vs hard re-pairings and real vs random ones; the share of real pairs held (relation
  `about_something_else` at the threshold chosen inside the training folds); with no article
  nothing can be held. SemEval (human labels): ROC-AUC, and the share of relevant answers held.
- Baseline, in the same folds: plain char 2–5-gram TF-IDF cosine between the comment and the
  article (title + body, or the title), IDF fitted on the training folds; score = −cosine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from joblib.externals.loky import ProcessPoolExecutor
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.metrics import roc_auc_score

from serving.features.relevance import DEFAULT_FAMILIES, RelevanceFeatures
from serving.model.relevance import ABOUT_ELSE, RelevanceModel
from serving.text.normalize import normalize
from training.data.contract import LabeledRecord
from training.data.relevance import (
    HARD,
    RANDOM,
    REAL,
    article_pairs,
    comment_corpus,
    labelled_pairs,
    training_subset,
    with_context,
)
from training.experiment.config import RelevanceConfig

Progress = Callable[[str], None]
CONTEXTS = ("title_body", "title")


@dataclass
class RelevanceData:
    """Pairs and corpus for one run."""

    pairs: pd.DataFrame  # AOC-style pairs: real + CONSTRUCTED hard/random partners
    labelled: pd.DataFrame  # human relevance labels (SemEval)
    corpus_texts: list[str]
    corpus_groups: list[str]
    # Keyed by the features object's id, holding the object too: alive while its matrices are cached,
    # its id cannot pass to another features object (which would be handed these matrices).
    _matrices: dict[tuple[int, str, str], tuple[RelevanceFeatures, np.ndarray]] = field(
        default_factory=dict, repr=False
    )
    _cosine: dict[tuple[str, str, int], np.ndarray] = field(default_factory=dict, repr=False)
    _cosine_pending: dict[tuple[str, str, int], Future[np.ndarray]] = field(default_factory=dict, repr=False)

    def cosine(self, which: str, context: str, n_folds: int) -> np.ndarray:
        """The cosine baseline's scores of `frame(which, context)` (computed once, or awaited from
        `cosines_in_background`)."""
        key = (which, context, n_folds)
        if key not in self._cosine:
            pending = self._cosine_pending.pop(key, None)
            if pending is not None:
                self._cosine[key] = pending.result()
            else:
                self._cosine[key] = cosine_scores(self.frame(which, context), n_folds)
        return self._cosine[key]

    @contextmanager
    def cosines_in_background(self, n_folds: int) -> Iterator[None]:
        """Inside: the cosine baselines `evaluate_relevance` reports are computed in one worker process
        while this one fits and evaluates the component (they share nothing with it; in a public
        training run that moves ~6 s of the single-threaded relevance stage onto the other core).
        Left unused, they are dropped with the worker on the way out."""
        keys = [("pairs", c, n_folds) for c in CONTEXTS]
        if len(self.labelled):
            keys.append(("labelled", "title_body", n_folds))
        # loky, as the candidate search: a fresh interpreter (no fork of this threaded process) that
        # does not re-run the caller's main module.
        executor = ProcessPoolExecutor(max_workers=1)
        try:
            for key in keys:
                if key not in self._cosine:
                    which, context, folds = key
                    self._cosine_pending[key] = executor.submit(
                        cosine_scores, self.frame(which, context), folds
                    )
            yield
        finally:
            for key in keys:
                pending = self._cosine_pending.pop(key, None)
                if pending is not None:
                    pending.cancel()
            executor.shutdown(wait=True)

    def frame(self, which: str, context: str) -> pd.DataFrame:
        """`pairs` or `labelled` as a CMS would send them in `context`."""
        return with_context(self.pairs if which == "pairs" else self.labelled, context)

    def matrix(self, features: RelevanceFeatures, which: str, context: str) -> np.ndarray:
        """Feature rows of `frame(which, context)`, computed once per features object."""
        key = (id(features), which, context)
        if key not in self._matrices:
            frame = self.frame(which, context)
            matrix = features.transform(frame) if len(frame) else np.zeros((0, len(features.feature_names_)))
            self._matrices[key] = (features, matrix)
        return self._matrices[key][1]

    def describe(self) -> dict[str, Any]:
        """Row counts, with the constructed ones said."""
        return {
            "pairs": len(self.pairs),
            "pairs_constructed": int(self.pairs["constructed"].sum()) if len(self.pairs) else 0,
            "pair_articles": int(self.pairs["own_article_id"].nunique()) if len(self.pairs) else 0,
            "labelled": len(self.labelled),
            "labelled_off_topic": int(self.labelled["label"].sum()) if len(self.labelled) else 0,
            "corpus_comments": len(self.corpus_texts),
            "corpus_articles": len(set(self.corpus_groups)),
        }


@dataclass
class RelevanceComponent:
    """The fitted component and the evidence behind it."""

    model: RelevanceModel
    evidence: dict[str, Any]


def relevance_data(config: RelevanceConfig, records: Sequence[LabeledRecord], seed: int) -> RelevanceData:
    """Pairs and corpus from gathered records (a training split, or every record in the bench)."""
    pairs = pd.concat(
        [article_pairs(records, config.folds, seed, source) for source in config.pair_sources],
        ignore_index=True,
    )
    labelled = pd.concat(
        [labelled_pairs(records, config.folds, source) for source in config.labelled_sources],
        ignore_index=True,
    )
    held_out = frozenset(str(a) for a in pairs["own_article_id"]) if len(pairs) else frozenset()
    texts, groups = comment_corpus(records, config.corpus_source, exclude_articles=held_out)
    return RelevanceData(pairs, labelled, texts, groups)


def features_for(
    config: RelevanceConfig, data: RelevanceData, families: Sequence[str] = ()
) -> RelevanceFeatures:
    """The relation features fitted on the corpus alone."""
    include = tuple(families or config.families or DEFAULT_FAMILIES)
    return RelevanceFeatures(
        include=include,
        n_components=config.n_components,
        topic_vocabulary=config.topic_vocabulary,
        max_background=config.max_background,
    ).fit(None, corpus_texts=data.corpus_texts, corpus_groups=data.corpus_groups)


def _model(
    config: RelevanceConfig, features: RelevanceFeatures, columns: Sequence[str] | None
) -> RelevanceModel:
    return RelevanceModel(
        features=features,
        columns=columns,
        C=config.C,
        target_held=config.target_held,
        generic_max_specific=config.generic_max_specific,
        classifier=config.classifier,
    )


def _training_sets(data: RelevanceData, features: RelevanceFeatures) -> list[tuple[pd.DataFrame, np.ndarray]]:
    """What a model trains on, with feature rows: every real pair and one CONSTRUCTED partner per
    comment, in both contexts, plus the human-labelled pairs in both contexts."""
    sets = []
    keep = training_subset(data.pairs).index
    for c in CONTEXTS:
        frame, matrix = data.frame("pairs", c), data.matrix(features, "pairs", c)
        sets.append((frame.loc[keep], matrix[frame.index.get_indexer(keep)]))
        if len(data.labelled):
            sets.append((data.frame("labelled", c), data.matrix(features, "labelled", c)))
    return [(frame, matrix) for frame, matrix in sets if len(frame)]


def _fit_on(
    config: RelevanceConfig,
    features: RelevanceFeatures,
    sets: Sequence[tuple[pd.DataFrame, np.ndarray]],
    columns: Sequence[str] | None,
) -> RelevanceModel:
    frame = pd.concat([f for f, _ in sets], ignore_index=True)
    return _model(config, features, columns).fit(
        frame,
        frame["label"].to_numpy(),
        groups=frame["article_id"].to_numpy(),
        features=np.vstack([m for _, m in sets]),
        sample_weight=source_weights(frame["source"].to_numpy(), config.source_mass),
    )


def source_weights(sources: np.ndarray, mass: dict[str, float]) -> np.ndarray:
    """Row weights giving each source the total weight `mass[source]` (1 unless given), so the
    thousands of constructed AOC pairs do not drown a few hundred human labels; mean weight 1."""
    names, index, counts = np.unique(sources, return_inverse=True, return_counts=True)
    per_source = np.array([mass.get(str(n), 1.0) for n in names]) / counts
    weights = per_source[index]
    return weights * (len(weights) / weights.sum())


def fit_relevance(
    config: RelevanceConfig,
    data: RelevanceData,
    features: RelevanceFeatures,
    columns: Sequence[str] | None = None,
) -> RelevanceModel:
    """The component trained on every pair (thresholds out of fold inside `fit`)."""
    return _fit_on(config, features, _training_sets(data, features), columns)


def cosine_scores(frame: pd.DataFrame, n_folds: int) -> np.ndarray:
    """−(char 2–5-gram TF-IDF cosine of comment and article), IDF fitted on the other folds.

    Each fold's vectorizer is the one `TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5),
    sublinear_tf=True)` would fit on the fold's training comments and distinct training articles;
    it is built from counts of every distinct text made once, rather than by analysing each text
    again in every fold (that cost ~30 s of a public training run): the fold's vocabulary is the
    n-grams its training documents contain, in the same (sorted) column order, weighed by the same
    TfidfTransformer, so the weights and cosines are the same.
    """
    comments = [normalize(t) for t in frame["text"]]
    raw_articles = [
        f"{t or ''} {b or ''}".strip()
        for t, b in zip(frame["article_title"], frame["article_text"], strict=True)
    ]
    normalised = {text: normalize(text) for text in set(raw_articles)}  # thousands of pairs, ~100 articles
    articles = [normalised[text] for text in raw_articles]
    out = np.zeros(len(frame))
    if not len(frame):
        return out
    distinct = sorted(set(comments) | set(articles))
    index = {text: k for k, text in enumerate(distinct)}
    counts = CountVectorizer(analyzer="char_wb", ngram_range=(2, 5)).fit_transform(distinct).tocsr()
    comment_rows = np.fromiter((index[c] for c in comments), dtype=np.int64, count=len(comments))
    article_rows = np.fromiter((index[a] for a in articles), dtype=np.int64, count=len(articles))
    folds = frame["fold"].to_numpy()
    for f in range(n_folds):
        train, test = folds != f, folds == f
        if not test.any():
            continue
        # The fold's training documents: its comments (repeats included) and each distinct article once.
        train_articles = sorted({a for a, m in zip(articles, train, strict=True) if m and a})
        documents = counts[
            np.concatenate([comment_rows[train], [index[a] for a in train_articles]]).astype(int)
        ]
        vocabulary = np.unique(documents.indices)  # the n-grams the fold's vectorizer would know
        tfidf = TfidfTransformer(sublinear_tf=True).fit(documents[:, vocabulary])
        rows = np.flatnonzero(test)
        comment_vectors = tfidf.transform(counts[comment_rows[rows]][:, vocabulary])
        # Each distinct article weighed once, then repeated for its comments.
        test_articles, which = np.unique(article_rows[rows], return_inverse=True)
        article_vectors = tfidf.transform(counts[test_articles][:, vocabulary])[which]
        out[rows] = -np.asarray(comment_vectors.multiply(article_vectors).sum(axis=1)).ravel()
    return out


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    if len(set(y.tolist())) < 2:
        return None
    return round(float(roc_auc_score(y, score)), 4)


def evaluate_relevance(
    config: RelevanceConfig,
    data: RelevanceData,
    features: RelevanceFeatures,
    columns: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Out-of-fold figures (protocol above) for the model and the cosine baseline."""
    say = progress or (lambda _m: None)
    n_folds = config.folds
    contexts = {c: data.frame("pairs", c) for c in (*CONTEXTS, "none")}
    matrices = {c: data.matrix(features, "pairs", c) for c in contexts}
    labelled = data.frame("labelled", "title_body")
    labelled_matrix = data.matrix(features, "labelled", "title_body")
    train_sets = _training_sets(data, features)
    relation = {c: np.empty(len(contexts[c]), dtype=object) for c in contexts}
    p = {c: np.zeros(len(contexts[c])) for c in contexts}
    labelled_relation = np.empty(len(labelled), dtype=object)
    labelled_p = np.zeros(len(labelled))
    for f in range(n_folds):
        say(f"relevance fold {f + 1}/{n_folds}")
        outside = [
            (frame[frame["fold"] != f], matrix[(frame["fold"] != f).to_numpy()])
            for frame, matrix in train_sets
        ]
        model = _fit_on(config, features, outside, columns)
        for c, test_frame in contexts.items():
            test = (test_frame["fold"] == f).to_numpy()
            if test.any():
                rel = model.relations(test_frame[test], features=matrices[c][test])
                relation[c][test], p[c][test] = rel.relation, rel.p_about_else
        test = (labelled["fold"] == f).to_numpy() if len(labelled) else np.zeros(0, dtype=bool)
        if test.any():
            rel = model.relations(labelled[test], features=labelled_matrix[test])
            labelled_relation[test], labelled_p[test] = rel.relation, rel.p_about_else
    out: dict[str, Any] = {"data": data.describe(), "folds": n_folds}
    for c in CONTEXTS:
        frame = contexts[c]
        y = frame["label"].to_numpy()
        kind = frame["kind"].to_numpy()
        cosine = data.cosine("pairs", c, n_folds)
        hard, rand, real = kind != RANDOM, kind != HARD, kind == REAL
        held = relation[c] == ABOUT_ELSE
        out[c] = {
            "auc_hard": _auc(y[hard], p[c][hard]),
            "auc_hard_cosine": _auc(y[hard], cosine[hard]),
            "auc_random": _auc(y[rand], p[c][rand]),
            "auc_random_cosine": _auc(y[rand], cosine[rand]),
            "real_held": round(float(held[real].mean()), 4) if real.any() else None,
            "hard_caught": round(float(held[kind == HARD].mean()), 4) if (kind == HARD).any() else None,
            "random_caught": round(float(held[kind == RANDOM].mean()), 4) if (kind == RANDOM).any() else None,
        }
    none_real = (contexts["none"]["kind"] == REAL).to_numpy()
    out["none"] = {"real_held": round(float((relation["none"][none_real] == ABOUT_ELSE).mean()), 4)}
    if len(labelled):
        y = labelled["label"].to_numpy()
        relevant = y == 0
        out["labelled"] = {
            "auc": _auc(y, labelled_p),
            "auc_cosine": _auc(y, data.cosine("labelled", "title_body", n_folds)),
            "relevant_held": round(float((labelled_relation[relevant] == ABOUT_ELSE).mean()), 4),
            "irrelevant_caught": round(float((labelled_relation[~relevant] == ABOUT_ELSE).mean()), 4),
        }
    return out


def train_relevance(
    config: RelevanceConfig,
    records: Sequence[LabeledRecord],
    seed: int,
    progress: Progress | None = None,
    background: bool = False,
) -> RelevanceComponent | None:
    """Evaluate out of fold, then fit the shipped component on every pair; None without data.
    `background`: the cosine baselines are computed in a worker process meanwhile."""
    say = progress or (lambda _m: None)
    say("relevance: building pairs and the comment corpus")
    data = relevance_data(config, records, seed)
    if not data.corpus_texts or len(data.pairs) + len(data.labelled) == 0:
        return None
    alongside = data.cosines_in_background(config.folds) if background else nullcontext()
    with alongside:
        say("relevance: fitting the feature spaces on the comment corpus")
        features = features_for(config, data)
        evidence = evaluate_relevance(config, data, features, progress=say)
    say("relevance: fitting the component on every pair")
    model = fit_relevance(config, data, features)
    evidence["thresholds"] = {k: round(v, 4) for k, v in model.thresholds_.items()}
    return RelevanceComponent(model, evidence)


def table_markdown(evidence: dict[str, Any]) -> str:
    """The out-of-fold figures as a Markdown table, model beside cosine."""

    def cell(value: Any) -> str:
        return "—" if value is None else f"{value:.3f}"

    lines = [
        "| evaluation (out of fold, grouped by article) | relevance component | plain cosine |",
        "|---|---|---|",
    ]
    names = {"title_body": "title and body", "title": "title only"}
    for c in CONTEXTS:
        e = evidence.get(c)
        if not e:
            continue
        lines.append(
            f"| AOC real vs hard re-pairing (constructed), {names[c]}: ROC-AUC | "
            f"{cell(e['auc_hard'])} | {cell(e['auc_hard_cosine'])} |"
        )
        lines.append(
            f"| AOC real vs random re-pairing (constructed), {names[c]}: ROC-AUC | "
            f"{cell(e['auc_random'])} | {cell(e['auc_random_cosine'])} |"
        )
        lines.append(f"| AOC real pairs held as off_topic, {names[c]} | {cell(e['real_held'])} | |")
    if "none" in evidence:
        lines.append(
            f"| AOC real comments held as off_topic, no article | {cell(evidence['none']['real_held'])} | |"
        )
    if "labelled" in evidence:
        e = evidence["labelled"]
        lines.append(
            f"| SemEval-2015 (human labels), irrelevant vs relevant: ROC-AUC | {cell(e['auc'])} | "
            f"{cell(e['auc_cosine'])} |"
        )
        lines.append(f"| SemEval relevant answers held as off_topic | {cell(e['relevant_held'])} | |")
    return "\n".join(lines)
