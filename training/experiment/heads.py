"""The `abusive` head: its training rows, its Pipeline, its left-out evaluation and its thresholds.

Why a head of its own: the base model learned "Arabic political commentary ⇒ abusive" from a
class made of one site's deleted comments. The head is trained on corpora that carry BOTH classes
from the same source, across dialects, plus real published comments as the non-abusive side, and
it is judged the way a new site will meet it: every evaluated source is scored by a model that
never trained on it (or on any source of its family). Its thresholds come from those left-out
predictions, not from in-distribution cross-validation.

Training rows (`head_rows`):
- label 1 = `abusive`, 0 = every other label; sources in `exclude_sources` are left out;
- non-abusive rows with an insult-lexicon hit are dropped (training.data.insults), except from
  trusted sources (the authored starter corpus, moderators' feedback): sentiment corpora were
  never checked for insults and hate-only corpora keep plain insults on their negative side;
- at most `max_per_cell` rows per (source, class), `max_rows` per source where given;
- each (source, class) cell weighs the same in total (mass 1, or `source_mass`), so no corpus's
  size or base rate defines the class; inside a published sentiment corpus the negative half
  weighs `noisy_weight` of the positive half.

Left-out predictions (`left_out_predictions`): the evaluated families are split into
`source_folds` groups; each group is scored by a head trained on every other row. The vocabulary
and IDF (unsupervised) are learned once from all training rows; labels never cross a fold.
The rows scored are the family's rows BEFORE cleaning and capping (a sample of
`max_scored_per_source` per source in `raqib train`; all of them in the bench).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from serving.features.agreement import CrossSourceScaling
from serving.features.ngrams import HashedNgrams
from serving.features.prepare import CommentPreprocessor, SequentialFeatureUnion
from serving.model.decisions import NEVER_REJECT
from serving.model.moderation import CLASSIFIER_STEP, FEATURES_STEP, PREPROCESS_STEP
from serving.schema import ABUSIVE
from serving.text.normalize import normalize
from training.data.contract import LabeledRecord
from training.data.gather import to_frame
from training.data.insults import has_insult
from training.experiment.config import AbuseHeadConfig

# Sentiment halves that nobody checked for insults (the polarity is kept in the comment id).
NOISY_POLARITIES = frozenset({"neg", "negative", "mixed", "-1"})
# Where a head's thresholds came from, when they are final (serving never overrides them).
FROM_LEFT_OUT = "left-out predictions"
THRESHOLD_GRID = np.round(np.arange(0.05, 0.996, 0.005), 3)

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


def is_noisy(record: LabeledRecord) -> bool:
    """A published comment from the negative half of a sentiment corpus (`myc:neg_12`)."""
    comment_id = record.comment_id or ""
    if ":" not in comment_id:
        return False
    polarity = comment_id.split(":", 1)[1].split("_", 1)[0]
    return polarity in NOISY_POLARITIES


@dataclass
class HeadRows:
    """The head's training rows and, per row, its class, source, family and weight."""

    records: list[LabeledRecord]
    y: np.ndarray
    sources: np.ndarray
    families: np.ndarray
    weights: np.ndarray
    dropped_insult_negatives: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)


def family_of(config: AbuseHeadConfig, source: str | None) -> str:
    """The family a source belongs to (itself unless `families` groups it with others)."""
    name = source or "unknown"
    return config.families.get(name, name)


def head_rows(config: AbuseHeadConfig, records: Sequence[LabeledRecord], seed: int) -> HeadRows:
    """Clean, cap and weigh the rows the head trains on (see the module doc)."""
    cells: dict[tuple[str, int], list[LabeledRecord]] = defaultdict(list)
    for record in records:
        source = record.source or "unknown"
        if source in config.exclude_sources or not record.label:
            continue
        cells[(source, int(record.label == ABUSIVE))].append(record)
    dropped: dict[str, int] = defaultdict(int)
    kept: list[LabeledRecord] = []
    y: list[int] = []
    weights: list[float] = []
    for (source, positive), group in sorted(cells.items()):
        cap = config.max_rows.get(source, config.max_per_cell)
        if cap is not None and len(group) > cap:
            # Sampled before cleaning (the lexicon check is the slow part): a cleaned cell
            # keeps a little under its cap.
            rng = random.Random(f"{seed}:{source}:{positive}")
            group = sorted(rng.sample(group, cap), key=lambda r: r.comment_id or r.text)
        if not positive and config.drop_insult_negatives and source not in config.trusted_sources:
            clean = [r for r in group if not has_insult(normalize(r.text))]
            dropped[source] = len(group) - len(clean)
            group = clean
        if not group:
            continue
        base = np.array([config.noisy_weight if is_noisy(r) else 1.0 for r in group])
        mass = config.source_mass.get(source, 1.0)
        weights.extend((mass * base / base.sum()).tolist())
        kept.extend(group)
        y.extend([positive] * len(group))
    w = np.asarray(weights, dtype=np.float64)
    if len(w):
        w /= w.mean()
    sources = np.array([r.source or "unknown" for r in kept], dtype=object)
    families = np.array([family_of(config, s) for s in sources], dtype=object)
    return HeadRows(kept, np.asarray(y, dtype=np.int8), sources, families, w, dict(dropped))


def head_union(config: AbuseHeadConfig) -> SequentialFeatureUnion:
    """Char and word n-grams of the comment alone: abuse does not depend on the article.

    Same analyzers and bucket counts as the base model's n-grams, so a scored comment is hashed
    once for both (serving/features/ngrams.py shares the grams); kept columns and IDF are the head's.
    """
    blocks = (
        ("char", "char_wb", config.char_ngrams, 19, config.char_max_features),
        ("word", "word", config.word_ngrams, 18, config.word_max_features),
    )
    return SequentialFeatureUnion(
        [
            (name, HashedNgrams(analyzer, ngram_range, bits, min_df=config.min_df, max_features=most))
            for name, analyzer, ngram_range, bits, most in blocks
        ],
        transformer_weights={"char": 1.0, "word": config.word_weight},
    )


def head_classifier(config: AbuseHeadConfig, seed: int) -> SGDClassifier:
    """Log-loss SGD: probabilities without calibration folds, and fast on 100k rows."""
    return SGDClassifier(loss="log_loss", alpha=config.alpha, max_iter=50, tol=1e-3, random_state=seed)


@dataclass
class FeaturisedHead:
    """The head's preprocessor and fitted union, and the unscaled features of its training rows."""

    preprocessor: CommentPreprocessor
    union: SequentialFeatureUnion
    train: sp.csr_matrix


def featurise_head(config: AbuseHeadConfig, rows: HeadRows) -> FeaturisedHead:
    """Fit the union's vocabulary and IDF on the training rows (no labels involved)."""
    preprocessor = CommentPreprocessor()
    union = head_union(config)
    prepared = preprocessor.transform(_text_frame(rows.records))
    return FeaturisedHead(preprocessor, union, sp.csr_matrix(union.fit_transform(prepared)))


def _text_frame(records: Sequence[LabeledRecord]) -> Any:
    # Abuse is judged on the comment alone; dropping the article keeps featurising cheap.
    frame = to_frame(records)
    frame["article_title"] = None
    frame["article_text"] = None
    return frame


def _fit_on(
    config: AbuseHeadConfig, featurised: FeaturisedHead, rows: HeadRows, mask: np.ndarray, seed: int
) -> tuple[CrossSourceScaling, SGDClassifier]:
    """Scaling and classifier fitted on the rows in `mask` (a left-out fold, or every row)."""
    matrix = featurised.train[mask]
    features = CrossSourceScaling(featurised.union, floor=config.scaling_floor)
    features.fit_from_matrix(matrix, rows.y[mask], rows.sources[mask])
    classifier = head_classifier(config, seed)
    classifier.fit(features.scale_matrix(matrix), rows.y[mask], sample_weight=rows.weights[mask])
    return features, classifier


def fit_head(config: AbuseHeadConfig, rows: HeadRows, featurised: FeaturisedHead, seed: int) -> Pipeline:
    """The head Pipeline fitted on every training row."""
    features, classifier = _fit_on(config, featurised, rows, np.ones(len(rows), dtype=bool), seed)
    return Pipeline(
        [
            (PREPROCESS_STEP, featurised.preprocessor),
            (FEATURES_STEP, features),
            (CLASSIFIER_STEP, classifier),
        ]
    )


@dataclass
class LeftOut:
    """p(abusive) for rows of evaluated sources, each from a head that never saw the row's family."""

    records: list[LabeledRecord]
    y: np.ndarray
    sources: np.ndarray
    p: np.ndarray
    protocol: str
    seconds: float


def scored_rows(
    config: AbuseHeadConfig, records: Sequence[LabeledRecord], seed: int, per_source: int | None
) -> list[LabeledRecord]:
    """The evaluated and published sources' rows as they are (uncleaned), sampled per source."""
    wanted = set(config.evaluated_sources) | set(config.published_sources)
    by_source: dict[str, list[LabeledRecord]] = defaultdict(list)
    for record in records:
        if record.source in wanted and record.label:
            by_source[record.source].append(record)
    out: list[LabeledRecord] = []
    for source, group in sorted(by_source.items()):
        if per_source is not None and len(group) > per_source:
            rng = random.Random(f"{seed}:scored:{source}")
            group = rng.sample(group, per_source)
        out.extend(group)
    return out


def scored_matrix(
    featurised: FeaturisedHead, rows: HeadRows, scored: Sequence[LabeledRecord]
) -> sp.csr_matrix:
    """The head's feature rows of `scored`, in its order. A scored record the head also trains on
    already has its row in `featurised.train` (a row depends on its own text alone), so only the
    others are featurised (in the public build about two thirds of ~57k scored rows are reused)."""
    at = {id(record): i for i, record in enumerate(rows.records)}
    index = np.array([at.get(id(record), -1) for record in scored], dtype=np.int64)
    known = np.flatnonzero(index >= 0)
    new = np.flatnonzero(index < 0)
    parts = [featurised.train[index[known]]]
    if len(new):
        prepared = featurised.preprocessor.transform(_text_frame([scored[i] for i in new.tolist()]))
        parts.append(sp.csr_matrix(featurised.union.transform(prepared), dtype=featurised.train.dtype))
    stacked = sp.vstack(parts, format="csr")
    # Row k of `stacked` is scored row order[k]; put them back in scored order.
    order = np.concatenate([known, new])
    return stacked[np.argsort(order, kind="stable")]


def left_out_predictions(
    config: AbuseHeadConfig,
    rows: HeadRows,
    featurised: FeaturisedHead,
    scored: Sequence[LabeledRecord],
    seed: int,
    n_folds: int | None = None,
    progress: Progress = _quiet,
) -> LeftOut | None:
    """Score every row of `scored` with a head trained without its family.

    `n_folds` groups of families (default `config.source_folds`; 0 = one family per fit, the
    strict leave-one-source-out). None when fewer than two families can be held out.
    """
    started = time.perf_counter()
    families = sorted({family_of(config, r.source) for r in scored})
    if len(families) < 2 or not scored:
        return None
    folds = n_folds if n_folds is not None else config.source_folds
    groups = [families] if folds == 1 else _family_groups(families, folds, seed)
    matrix = scored_matrix(featurised, rows, scored)
    scored_family = np.array([family_of(config, r.source) for r in scored], dtype=object)
    p = np.full(len(scored), np.nan)
    for number, group in enumerate(groups, 1):
        progress(f"abuse head: left-out fit {number}/{len(groups)} ({', '.join(group)})")
        train_mask = ~np.isin(rows.families, group)
        if len(set(rows.y[train_mask].tolist())) < 2:
            continue
        features, classifier = _fit_on(config, featurised, rows, train_mask, seed)
        target = np.isin(scored_family, group)
        p[target] = classifier.predict_proba(features.scale_matrix(matrix[target]))[:, 1]
    keep = ~np.isnan(p)
    return LeftOut(
        records=[r for r, k in zip(scored, keep, strict=True) if k],
        y=np.array([int(r.label == ABUSIVE) for r in scored], dtype=np.int8)[keep],
        sources=np.array([r.source or "unknown" for r in scored], dtype=object)[keep],
        p=p[keep],
        protocol=(
            "leave-one-source-out"
            if len(groups) == len(families)
            else f"leave-sources-out: {len(families)} families in {len(groups)} groups"
        ),
        seconds=round(time.perf_counter() - started, 1),
    )


def _family_groups(families: Sequence[str], n_folds: int, seed: int) -> list[list[str]]:
    if n_folds <= 0 or n_folds >= len(families):
        return [[f] for f in families]
    shuffled = list(families)
    random.Random(seed).shuffle(shuffled)
    return [sorted(shuffled[k::n_folds]) for k in range(n_folds)]


def held_share(p: np.ndarray, threshold: float) -> float:
    """Share of scores at or above the threshold (nan for none)."""
    return float((p >= threshold).mean()) if len(p) else float("nan")


def _held_curve(p: np.ndarray) -> np.ndarray:
    ordered = np.sort(p)
    return 1.0 - np.searchsorted(ordered, THRESHOLD_GRID, side="left") / max(len(ordered), 1)


def left_out_thresholds(config: AbuseHeadConfig, left_out: LeftOut) -> dict[str, float] | None:
    """review_at / reject_at for `abusive` from the left-out predictions.

    review_at: the lowest grid value at which at most `max_held` of the non-abusive rows of EVERY
    threshold source, and at most `max_published_held` of every published goal source, score at
    or above it. reject_at: the same with `reject_max_held` for both. None without such sources.
    """
    curves = []
    for source in config.threshold_sources:
        negatives = left_out.p[(left_out.sources == source) & (left_out.y == 0)]
        if len(negatives):
            curves.append((_held_curve(negatives), config.max_held))
    published = []
    for source in config.published_goal_sources:
        rows = left_out.p[(left_out.sources == source) & (left_out.y == 0)]
        if len(rows):
            published.append((_held_curve(rows), config.max_published_held))
    if not curves:
        return None

    def lowest(limits: list[tuple[np.ndarray, float]]) -> float:
        ok = np.ones(len(THRESHOLD_GRID), dtype=bool)
        for curve, limit in limits:
            ok &= curve <= limit
        hits = np.flatnonzero(ok)
        return float(THRESHOLD_GRID[hits[0]]) if len(hits) else NEVER_REJECT

    review = lowest(curves + published)
    reject = lowest([(c, config.reject_max_held) for c, _ in curves + published])
    return {"review_at": round(min(review, reject), 4), "reject_at": round(reject, 4)}


def left_out_table(
    config: AbuseHeadConfig, left_out: LeftOut, review_at: float, reject_at: float
) -> list[dict[str, Any]]:
    """One row per evaluated source: size, ROC-AUC, share of non-abusive rows held, abuse caught."""
    table = []
    # Rows nobody labelled abusive that still hold an obvious insult (sentiment corpora were never
    # checked): held shares are also given without them.
    insult_word = np.array([has_insult(normalize(r.text)) for r in left_out.records], dtype=bool)
    for source in [*config.evaluated_sources, *config.published_sources]:
        mask = left_out.sources == source
        if not mask.any():
            continue
        y, p = left_out.y[mask], left_out.p[mask]
        negatives, positives = p[y == 0], p[y == 1]
        clean_negatives = p[(y == 0) & ~insult_word[mask]]
        table.append(
            {
                "source": source,
                "kind": (
                    "published"
                    if source in config.published_sources
                    else "insult"
                    if source in config.threshold_sources
                    else "hate-only"
                ),
                "n": int(mask.sum()),
                "abusive": len(positives),
                "roc_auc": float(roc_auc_score(y, p)) if len(positives) and len(negatives) else None,
                "held_at_review": held_share(negatives, review_at),
                "held_at_reject": held_share(negatives, reject_at),
                "held_at_0.5": held_share(negatives, 0.5),
                "held_at_review_without_insult_words": held_share(clean_negatives, review_at),
                "caught_at_review": held_share(positives, review_at) if len(positives) else None,
            }
        )
    return table


@dataclass
class AbuseHead:
    """The fitted head, its thresholds and the evidence they came from."""

    pipeline: Pipeline
    review_at: float
    reject_at: float
    evidence: dict[str, Any]


def train_abuse_head(
    config: AbuseHeadConfig,
    training: Sequence[LabeledRecord],
    threshold_rule: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    seed: int,
    progress: Progress = _quiet,
) -> AbuseHead | None:
    """Rows → features → left-out predictions → thresholds → the head fitted on every row.

    `training` is every record the head may learn from (the base model's training split and the
    head-only corpora; never the frozen set). Without two families to hold out (the starter
    corpus alone), thresholds fall back to `threshold_rule(y, p)` on in-distribution 3-fold
    predictions, and the evidence says so. None when the rows lack one of the classes.
    """
    started = time.perf_counter()
    rows = head_rows(config, training, seed)
    if len(set(rows.y.tolist())) < 2:
        return None
    progress(f"abuse head: featurising {len(rows):,} rows")
    featurised = featurise_head(config, rows)
    scored = scored_rows(config, training, seed, config.max_scored_per_source)
    left_out = left_out_predictions(config, rows, featurised, scored, seed, progress=progress)
    chosen = left_out_thresholds(config, left_out) if left_out is not None else None
    evidence: dict[str, Any] = {
        "rows": len(rows),
        "rows_per_source": _counts(rows),
        "dropped_insult_negatives": rows.dropped_insult_negatives,
    }
    if left_out is not None and chosen is not None:
        evidence |= {
            "protocol": left_out.protocol,
            "thresholds_from": FROM_LEFT_OUT,
            "table": left_out_table(config, left_out, chosen["review_at"], chosen["reject_at"]),
        }
    else:
        y, p = _in_distribution_predictions(config, rows, featurised, seed)
        chosen = threshold_rule(y, p)
        evidence |= {
            "protocol": "in-distribution 3-fold (no second source family to hold out)",
            "thresholds_from": "in-distribution cross-validation",
        }
    progress("abuse head: final fit")
    pipeline = fit_head(config, rows, featurised, seed)
    evidence |= {"review_at": chosen["review_at"], "reject_at": chosen["reject_at"]}
    evidence["seconds"] = round(time.perf_counter() - started, 1)
    return AbuseHead(pipeline, chosen["review_at"], chosen["reject_at"], evidence)


def _counts(rows: HeadRows) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = defaultdict(lambda: {"abusive": 0, "not_abusive": 0})
    for source, positive in zip(rows.sources.tolist(), rows.y.tolist(), strict=True):
        table[source]["abusive" if positive else "not_abusive"] += 1
    return {k: dict(v) for k, v in sorted(table.items())}


def _in_distribution_predictions(
    config: AbuseHeadConfig, rows: HeadRows, featurised: FeaturisedHead, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import StratifiedKFold

    n_splits = int(min(3, np.bincount(rows.y).min()))
    p = np.zeros(len(rows))
    if n_splits < 2:
        return rows.y, p
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for fit_idx, val_idx in splitter.split(np.zeros(len(rows)), rows.y):
        mask = np.zeros(len(rows), dtype=bool)
        mask[fit_idx] = True
        features, classifier = _fit_on(config, featurised, rows, mask, seed)
        p[val_idx] = classifier.predict_proba(features.scale_matrix(featurised.train[val_idx]))[:, 1]
    return rows.y, p


def table_markdown(table: Sequence[dict[str, Any]]) -> str:
    """The left-out table as Markdown (RESULTS.md, the MLflow run, the model card)."""

    def pct(value: float | None) -> str:
        return "" if value is None else f"{100 * value:.1f} %"

    columns = (
        "source",
        "kind",
        "n",
        "abusive",
        "ROC-AUC",
        "non-abusive held at review_at",
        "held at reject_at",
        "abusive caught at review_at",
    )
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table:
        auc = "" if row["roc_auc"] is None else f"{row['roc_auc']:.3f}"
        lines.append(
            f"| {row['source']} | {row['kind']} | {row['n']:,} | {row['abusive']:,} | {auc} | "
            f"{pct(row['held_at_review'])} | {pct(row['held_at_reject'])} | {pct(row['caught_at_review'])} |"
        )
    return "\n".join(lines)
