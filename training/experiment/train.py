"""One experiment: gather data, compare candidates, choose thresholds, fit the Pipeline, evaluate."""

from __future__ import annotations

import contextlib
import itertools
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed, parallel_config
from joblib.externals.loky import get_reusable_executor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline

from serving.model.composed import ComposedClassifier
from serving.model.decisions import NEVER_REJECT, Thresholds
from serving.model.moderation import CLASSIFIER_STEP, FEATURES_STEP, PREPROCESS_STEP
from serving.model.relevance import REVIEW_AT
from serving.schema import ABUSIVE, ACCEPTABLE_LABEL, OFF_TOPIC, SPAM
from training.data.contract import LabeledRecord, gold_labels, iter_raw_rows, validate_record
from training.data.datasets.ar_tweet_accounts import SOURCE as TWEET_ACCOUNTS
from training.data.gather import (
    augment_context,
    fingerprint,
    gather,
    record_group,
    split_frozen,
    to_frame,
    with_comment_id,
)
from training.experiment.config import CandidateConfig, ExperimentConfig
from training.experiment.evaluate import (
    choose_thresholds,
    classification_metrics,
    false_off_topic_rates,
    off_topic_auc,
    per_source_metrics,
)
from training.experiment.heads import AbuseHead, table_markdown, train_abuse_head
from training.experiment.pipeline import build_classifier, build_pipeline
from training.experiment.relevance import table_markdown as relevance_table
from training.experiment.relevance import train_relevance

Progress = Callable[[str, float], None]


def _quiet(_message: str, _fraction: float) -> None:
    return None


@dataclass
class TrainResult:
    """Everything a run produced: the fitted Pipeline, its thresholds and its evidence."""

    pipeline: Any  # a Pipeline, or a ComposedClassifier (base Pipeline + label heads)
    labels: list[str]
    thresholds: dict[str, dict[str, float]]
    best: dict[str, Any]
    candidates: list[dict[str, Any]]
    metrics: dict[str, Any]
    fingerprint: dict[str, Any]
    frozen_fingerprint: dict[str, Any]
    notes: dict[str, str]
    config: ExperimentConfig
    frozen_records: list[LabeledRecord] = field(repr=False, default_factory=list)
    train_seconds: float = 0.0


class StageClock:
    """Wall seconds of each named stage of a run, each from the end of the one before."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._last, 2)
        self._last = now


def candidate_grid(candidates: Sequence[CandidateConfig]) -> list[tuple[str, dict[str, Any]]]:
    """Expand each candidate's grid into concrete (kind, params) settings."""
    settings = []
    for candidate in candidates:
        keys = sorted(candidate.grid)
        for values in itertools.product(*(candidate.grid[k] for k in keys)) if keys else [()]:
            settings.append((candidate.kind, {**candidate.params, **dict(zip(keys, values, strict=True))}))
    return settings


def sample_weights(records: Sequence[LabeledRecord], weights: dict[str, float]) -> np.ndarray:
    """Per-row weight from the source (SMS is not comment spam: weigh it low, etc.)."""
    return np.array([weights.get(r.source or "", 1.0) for r in records], dtype=np.float64)


def learned_labels(config: ExperimentConfig, records: Sequence[LabeledRecord]) -> list[str]:
    """The default labels present in the data plus any other label a site's data carries."""
    present = {r.label for r in records if r.label}
    ordered = [label for label in config.labels if label in present]
    return ordered + sorted(present - set(ordered))


def _featurizer(config: ExperimentConfig) -> Pipeline:
    full = build_pipeline(config.features, "logreg", {}, config.seed)
    return Pipeline(full.steps[:2])


def run_experiment(
    config: ExperimentConfig,
    root: Path = Path("."),
    progress: Progress = _quiet,
    extra_train: Sequence[LabeledRecord] = (),
    search_backend: str | None = None,
) -> TrainResult:
    """Train and evaluate per the config; nothing is logged or registered here.

    `extra_train` (e.g. older moderator feedback) joins the training side only: it has its own,
    time-based evaluation slice, so it never enters the frozen set. `search_backend` names a joblib
    backend for the candidate × fold fits, e.g. "dask" inside a distributed Client; None keeps
    them in local processes (`n_jobs` of the config).
    """
    started = time.perf_counter()
    clock = StageClock()
    progress("gathering data", 0.02)
    data = split_records(config, root, extra_train)
    clock.lap("gathering_data")
    progress("featurising", 0.10)
    features = featurise(config, data.train)
    clock.lap("featurising")
    settings = candidate_grid(config.candidates)
    progress(f"cross-validating {len(settings)} candidate settings × {len(features.folds)} folds", 0.2)
    candidates, out_of_fold, finals = cross_validate(config, settings, features, data.labels, search_backend)
    clock.lap("candidate_search")
    best_index = max(range(len(settings)), key=lambda s: candidates[s]["cv_macro_f1"])
    best_kind, best_params = settings[best_index]
    thresholds = choose_thresholds(
        list(features.y_train),
        out_of_fold[best_index],
        data.labels,
        target_precision=config.thresholds.target_precision,
        target_recall=config.thresholds.target_recall,
        min_support=config.thresholds.min_support,
    )
    progress(f"fitting {best_kind}", 0.6)
    pipeline: Any = fit_pipeline(features, best_kind, best_params, config.seed, finals.get(best_index))
    clock.lap("thresholds_and_final_fit")
    head_evidence: dict[str, Any] | None = None
    if config.abuse.enabled and ABUSIVE in data.labels:
        head = abuse_head(config, data, progress)
        clock.lap("abuse_head")
        if head is not None:
            pipeline = ComposedClassifier(base=pipeline, heads={ABUSIVE: head.pipeline})
            thresholds["review_at"][ABUSIVE] = head.review_at
            thresholds["reject_at"][ABUSIVE] = head.reject_at
            head_evidence = head.evidence
    relevance_evidence: dict[str, Any] | None = None
    if config.relevance.enabled and OFF_TOPIC in data.labels:
        component = train_relevance(
            config.relevance,
            [*data.train, *data.head_only],
            config.seed,
            progress=lambda message: progress(message, 0.8),
            background=config.n_jobs != 1,
        )
        clock.lap("relevance")
        if component is not None:
            if not isinstance(pipeline, ComposedClassifier):
                pipeline = ComposedClassifier(base=pipeline, heads={})
            pipeline.relevance = component.model
            # The component's own thresholds (chosen out of fold per context) sit at REVIEW_AT on
            # the off_topic score; an off-topic comment goes to a moderator, never auto-rejected.
            thresholds["review_at"][OFF_TOPIC] = REVIEW_AT
            thresholds["reject_at"][OFF_TOPIC] = NEVER_REJECT
            relevance_evidence = component.evidence | {"table_markdown": relevance_table(component.evidence)}
    train_seconds = time.perf_counter() - started
    progress("evaluating on the frozen set", 0.85)
    metrics: dict[str, Any] = {"cv": candidates[best_index]}
    if head_evidence is not None:
        metrics["abuse_head"] = head_metrics(head_evidence)
    if relevance_evidence is not None:
        metrics["relevance"] = relevance_evidence
    if data.frozen:
        metrics |= frozen_metrics(pipeline, data.frozen, data.labels, thresholds)
    clock.lap("frozen_evaluation")
    progress("checking for corpus leakage", 0.93)
    metrics["leakage"] = corpus_leakage(
        features.featurizer, data.train, config.seed, features=features.x_train, n_jobs=config.n_jobs
    )
    tweets = tweet_accounts_check(pipeline, config, root, data.tweet_accounts)
    if tweets:
        metrics["leakage"]["tweet_accounts"] = tweets
    clock.lap("leakage_checks")
    metrics["train_seconds"] = round(train_seconds, 2)
    metrics["stage_seconds"] = clock.seconds
    progress("done", 1.0)
    return TrainResult(
        pipeline=pipeline,
        labels=data.labels,
        thresholds=thresholds,
        best={"kind": best_kind, "params": best_params},
        candidates=candidates,
        metrics=metrics,
        fingerprint=fingerprint(data.train),
        frozen_fingerprint=fingerprint(data.frozen),
        notes=data.notes,
        config=config,
        frozen_records=data.frozen,
        train_seconds=train_seconds,
    )


def abuse_head(config: ExperimentConfig, data: SplitData, progress: Progress) -> AbuseHead | None:
    """The abusive head from the training split and the head-only corpora (never the frozen set)."""

    def in_distribution_rule(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        chosen = choose_thresholds(
            [ABUSIVE if v else ACCEPTABLE_LABEL for v in y.tolist()],
            np.column_stack([1.0 - p, p]),
            [ACCEPTABLE_LABEL, ABUSIVE],
            target_precision=config.thresholds.target_precision,
            target_recall=config.thresholds.target_recall,
            min_support=config.thresholds.min_support,
        )
        return {"review_at": chosen["review_at"][ABUSIVE], "reject_at": chosen["reject_at"][ABUSIVE]}

    return train_abuse_head(
        config.abuse,
        [*data.train, *data.head_only],
        in_distribution_rule,
        config.seed,
        progress=lambda message: progress(message, 0.7),
    )


def head_metrics(evidence: dict[str, Any]) -> dict[str, Any]:
    """The head's evidence with its table keyed by source, so MLflow logs every figure as a metric."""
    out = {k: v for k, v in evidence.items() if k != "table"}
    if "table" in evidence:
        out["left_out"] = {
            row["source"]: {k: v for k, v in row.items() if k != "source"} for row in evidence["table"]
        }
        out["table_markdown"] = table_markdown(evidence["table"])
    return out


@dataclass
class SplitData:
    """The records of one experiment: training side, frozen evaluation set, labels, input notes."""

    train: list[LabeledRecord]
    frozen: list[LabeledRecord]
    labels: list[str]
    notes: dict[str, str]
    head_only: list[LabeledRecord] = field(default_factory=list)
    # The never-trained-on tweets of `tweet_accounts_check`, read with the rest (None: not read).
    tweet_accounts: list[LabeledRecord] | None = None


def split_records(config: ExperimentConfig, root: Path, extra_train: Sequence[LabeledRecord]) -> SplitData:
    """Gather the configured records and split off the frozen set; `extra_train` joins training only."""
    set_aside: dict[str, list[LabeledRecord]] = {
        source: [] for source in (TWEET_ACCOUNTS,) if source in config.data.exclude_sources
    }
    gathered, notes = gather(config.data, config.labels, root, set_aside)
    head_only_sources = set(config.data.head_only_sources)
    records = [r for r in gathered if r.source not in head_only_sources]
    head_only = [r for r in gathered if r.source in head_only_sources]
    if head_only:
        notes["head_only"] = f"{len(head_only)} records for the label heads only"
    if extra_train:
        notes["feedback"] = f"{len(extra_train)} feedback records (training only)"
    if not records and not extra_train:
        raise ValueError("no training records: check the data section of the experiment config")
    labels = learned_labels(config, [*records, *extra_train])
    train, frozen = split_frozen(records)
    train = [*train, *(with_comment_id(r) for r in extra_train)]
    if len({r.label for r in train}) < 2:
        raise ValueError("training split has fewer than two labels; add data")
    return SplitData(train, frozen, labels, notes, head_only, set_aside.get(TWEET_ACCOUNTS))


@dataclass
class Features:
    """The featurised training data, shared by every candidate and fold.

    The fit rows are the training records followed by their augmented copies; `fit_fold[i]` is the
    cross-validation fold whose validation part holds fit row i's article (copies follow their
    original), so a fold's classifier never sees its validation articles, not even as a copy.
    """

    featurizer: Pipeline
    x_fit: Any
    y_fit: np.ndarray
    w_fit: np.ndarray
    x_train: Any  # the first rows of x_fit: augment_context keeps the originals first, in order
    y_train: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    fit_fold: np.ndarray


def featurise(config: ExperimentConfig, train: Sequence[LabeledRecord]) -> Features:
    """Augment, featurise and cut into article-grouped folds.

    Unsupervised parts (vocabulary, IDF, LSA) are fitted once on the augmented training texts;
    only the classifiers are refitted per fold, so the search costs one featurisation.
    """
    fit_records = augment_context(train, config.augment, config.seed)
    featurizer = _featurizer(config)
    x_fit = featurizer.fit_transform(to_frame(fit_records))
    y_fit = np.array(gold_labels(fit_records))
    w_fit = sample_weights(fit_records, config.data.source_weights)
    base_groups = [record_group(r) for r in train]
    # Augmented copies follow their original into the same fold.
    origin = {r.comment_id: record_group(r) for r in train}
    fit_groups = [origin.get((r.comment_id or "").split("#")[0], record_group(r)) for r in fit_records]
    x_train, y_train = x_fit[: len(train)], y_fit[: len(train)]
    n_splits = max(2, min(config.cv_folds, len(set(base_groups))))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=config.seed)
    folds = list(splitter.split(np.zeros(len(train)), y_train, base_groups))
    group_to_fold = {}
    for fold, (_, val_idx) in enumerate(folds):
        for i in val_idx:
            group_to_fold[base_groups[i]] = fold
    fit_fold = np.array([group_to_fold.get(g, -1) for g in fit_groups])
    return Features(featurizer, x_fit, y_fit, w_fit, x_train, y_train, folds, fit_fold)


def cross_validate(
    config: ExperimentConfig,
    settings: Sequence[tuple[str, dict[str, Any]]],
    features: Features,
    labels: list[str],
    search_backend: str | None,
) -> tuple[list[dict[str, Any]], dict[int, np.ndarray], dict[int, Any]]:
    """Every candidate setting on every fold: CV metrics per setting, its out-of-fold probabilities
    and, when the search runs in parallel, its classifier fitted on every row.

    In parallel, each setting's fit on every row is one more job of the same search: whichever
    setting wins, its final fit has then run beside the fold fits instead of after them, alone on
    one core (the logistic regression's was ~18 s of a public training run). The losing settings'
    final fits are the price, a few seconds of the other core. Alone (`n_jobs` 1) nothing is fitted
    ahead: `fit_pipeline` fits the winner.
    """
    folds = features.folds
    n_jobs = config.n_jobs
    search: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if search_backend is not None:
        search = parallel_config(backend=search_backend)
        # config.n_jobs counts this machine's cores; on a cluster every worker thread takes fits.
        n_jobs = -1
    ahead = n_jobs != 1
    # A setting's final fit first, then its folds: the costliest jobs start first.
    jobs: list[tuple[int, int | None]] = [
        (s, fold)
        for s in range(len(settings))
        for fold in ([None] if ahead else []) + list(range(len(folds)))
    ]

    def job(s: int, fold: int | None) -> Any:
        kind, params = settings[s]
        if fold is None:
            return delayed(_fit_all)(
                kind, params, config.seed, features.x_fit, features.y_fit, features.w_fit
            )
        return delayed(_fit_fold)(
            kind,
            params,
            config.seed,
            features.x_fit,
            features.y_fit,
            features.w_fit,
            features.fit_fold != fold,
            features.x_train[folds[fold][1]],
        )

    with search:
        fitted = Parallel(n_jobs=n_jobs, prefer="processes")(job(s, fold) for s, fold in jobs)
    if search_backend is None and n_jobs != 1:
        # joblib keeps its worker processes for reuse, each holding a copy of the search's matrices;
        # nothing after the search uses them, and they count against training's memory until it ends.
        get_reusable_executor().shutdown(wait=True)
    finals = {s: result for (s, fold), result in zip(jobs, fitted, strict=True) if fold is None}
    y_train = [str(y) for y in features.y_train]
    candidates: list[dict[str, Any]] = []
    out_of_fold: dict[int, np.ndarray] = {}
    for s, (kind, params) in enumerate(settings):
        oof = np.zeros((len(y_train), len(labels)))
        seconds = 0.0
        for (job_setting, fold), result in zip(jobs, fitted, strict=True):
            if job_setting != s or fold is None:
                continue
            classes, proba, elapsed = result
            val_idx = folds[fold][1]
            seconds += elapsed
            for k, label in enumerate(classes):
                oof[val_idx, labels.index(label)] = proba[:, k]
        metrics = classification_metrics(y_train, oof, labels)
        candidates.append(
            {
                "kind": kind,
                "params": params,
                "cv_macro_f1": metrics["macro_f1"],
                "cv_accuracy": metrics["accuracy"],
                "cv_ece": metrics["ece"],
                "seconds": round(seconds, 2),
            }
        )
        out_of_fold[s] = oof
    return candidates, out_of_fold, finals


def fit_pipeline(
    features: Features, kind: str, params: dict[str, Any], seed: int, fitted: Any = None
) -> Pipeline:
    """The chosen classifier fitted on all training rows (`fitted`: already so, by the search),
    behind the already fitted featurizer."""
    classifier = fitted
    if classifier is None:
        classifier = _fit_all(kind, params, seed, features.x_fit, features.y_fit, features.w_fit)
    return Pipeline(
        [
            (PREPROCESS_STEP, features.featurizer.named_steps[PREPROCESS_STEP]),
            (FEATURES_STEP, features.featurizer.named_steps[FEATURES_STEP]),
            (CLASSIFIER_STEP, classifier),
        ]
    )


def frozen_metrics(
    pipeline: Pipeline,
    frozen: Sequence[LabeledRecord],
    labels: list[str],
    thresholds: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """Metrics on the frozen set: overall, per source, off-topic AUCs, and false off-topic rates."""
    model_labels = [str(c) for c in pipeline.classes_]
    proba = _aligned_proba(pipeline, frozen, model_labels, labels)
    truth = gold_labels(frozen)
    policy = Thresholds(thresholds["reject_at"], thresholds["review_at"])

    def predict(frame: Any) -> np.ndarray:
        return _reorder(pipeline.predict_proba(frame), model_labels, labels)

    return {
        "frozen": classification_metrics(truth, proba, labels),
        "frozen_per_source": per_source_metrics(frozen, proba, labels),
        "frozen_off_topic_auc": {
            name: off_topic_auc(frozen, proba, labels, sources)
            for name, sources in (
                ("aoc_constructed", ("aoc", "aoc_repaired")),
                ("semeval2015", ("semeval2015",)),
                ("starter", ("starter",)),
            )
        },
        "false_off_topic": false_off_topic_rates(predict, frozen, labels, policy),
    }


def _fit_all(
    kind: str, params: dict[str, Any], seed: int, x_fit: Any, y_fit: np.ndarray, w_fit: np.ndarray
) -> Any:
    """One candidate fitted on every training row."""
    classifier = build_classifier(kind, params, seed)
    classifier.fit(x_fit, y_fit, sample_weight=w_fit)
    return classifier


def _fit_fold(
    kind: str,
    params: dict[str, Any],
    seed: int,
    x_fit: Any,
    y_fit: np.ndarray,
    w_fit: np.ndarray,
    fit_mask: np.ndarray,
    x_val: Any,
) -> tuple[list[str], np.ndarray, float]:
    """Fit one candidate on one fold's training part; out-of-fold probabilities and seconds."""
    started = time.perf_counter()
    clf = build_classifier(kind, params, seed)
    clf.fit(x_fit[fit_mask], y_fit[fit_mask], sample_weight=w_fit[fit_mask])
    return [str(c) for c in clf.classes_], clf.predict_proba(x_val), time.perf_counter() - started


def _reorder(proba: np.ndarray, model_labels: list[str], labels: list[str]) -> np.ndarray:
    out = np.zeros((proba.shape[0], len(labels)))
    for k, label in enumerate(model_labels):
        out[:, labels.index(label)] = proba[:, k]
    return out


def _aligned_proba(
    pipeline: Pipeline, records: Sequence[LabeledRecord], model_labels: list[str], labels: list[str]
) -> np.ndarray:
    return _reorder(pipeline.predict_proba(to_frame(records)), model_labels, labels)


def corpus_leakage(
    featurizer: Pipeline,
    records: Sequence[LabeledRecord],
    seed: int,
    features: Any = None,
    n_jobs: int | None = None,
) -> dict[str, Any]:
    """Can the same features tell which corpus a comment came from? (High = shortcut risk.)

    Fits a linear (log-loss SGD) classifier predicting `source` from the model's own features with
    article-grouped folds, and reports its accuracy beside the majority-class baseline.
    `features`: the records' rows already made by `featurizer` (training has them), else they are
    made here; `n_jobs`: threads for the one-vs-rest fits (the same fits, in any number of threads).
    """
    sources = [r.source or "unknown" for r in records]
    counts: dict[str, int] = {}
    for s in sources:
        counts[s] = counts.get(s, 0) + 1
    if len(counts) < 2:
        return {"note": "one source only; nothing to check"}
    x = features if features is not None else featurizer.transform(to_frame(records))
    y = np.array(sources)
    groups = [record_group(r) for r in records]
    n_splits = max(2, min(3, len(set(groups))))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    predicted = np.empty(len(y), dtype=object)
    for fit_idx, val_idx in splitter.split(x, y, groups):
        clf = SGDClassifier(
            loss="log_loss", alpha=1e-5, max_iter=30, tol=1e-3, random_state=seed, n_jobs=n_jobs
        )
        if len(set(y[fit_idx])) < 2:
            predicted[val_idx] = y[fit_idx][0]
            continue
        with warnings.catch_warnings():
            # A few epochs are enough to see whether sources separate; convergence is beside the point.
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x[fit_idx], y[fit_idx])
        predicted[val_idx] = clf.predict(x[val_idx])
    accuracy = float((predicted == y).mean())
    majority = max(counts.values()) / len(y)
    off_topic_sources = {r.source for r in records if r.label == OFF_TOPIC}
    return {
        "source_accuracy": accuracy,
        "majority_baseline": majority,
        "n_sources": len(counts),
        "sources": counts,
        "off_topic_sources": sorted(s for s in off_topic_sources if s),
    }


def tweet_accounts_check(
    pipeline: Pipeline,
    config: ExperimentConfig,
    root: Path,
    rows: Sequence[LabeledRecord] | None = None,
) -> dict[str, Any] | None:
    """Does the model call Arabic tweets spam just for being tweets?

    `ar_tweet_accounts` holds genuine and spam accounts' tweets from the same platform and is
    never trained on. If the model had learned "tweet ⇒ spam" from the spam-only tweet corpus,
    it would flag the genuine accounts about as often as the spam ones. `rows`: those records when
    the caller has read them already (`split_records` sets them aside); else they are read here.
    """
    if not config.data.public or TWEET_ACCOUNTS not in config.data.exclude_sources:
        return None
    if rows is None:
        path = root / config.data.public
        if not path.is_file():
            return None
        # Only these rows are validated: the whole public build is ~300k lines.
        rows = [
            validate_record(row, path=path, line=line)
            for line, row in iter_raw_rows(path)
            if row.get("source") == TWEET_ACCOUNTS
        ]
    if not rows or len({r.label for r in rows}) < 2:
        return None
    labels = [str(c) for c in pipeline.classes_]
    if SPAM not in labels:
        return None
    p_spam = pipeline.predict_proba(to_frame(rows))[:, labels.index(SPAM)]
    is_spam = np.array([r.label == SPAM for r in rows])
    return {
        "n": len(rows),
        "genuine_accounts_called_spam": float((p_spam[~is_spam] >= 0.5).mean()),
        "spam_accounts_called_spam": float((p_spam[is_spam] >= 0.5).mean()),
        "auc_spam_vs_genuine": float(roc_auc_score(is_spam, p_spam)),
    }
