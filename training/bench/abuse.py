"""Abuse: leave-one-source-out. Does `abusive` hold on a site the head has never seen?

For every abuse corpus with both classes and every published-comment corpus, a head trained
without that source (and without any source of its family) scores all of its rows; the table
gives ROC-AUC, the share of non-abusive rows held at the product's thresholds, and the share of
abuse caught. Beside it:
- the simplest baseline (character TF-IDF + logistic regression on the abuse corpora, the same
  left-out protocol), which a learned model must beat;
- the previous model's figures (experiments/abuse_before.json: the champion before this head,
  scoring the same sources with no article);
- Aljazeera's deleted comments dropped (the product) against kept with both language levels at a
  quarter of a cell's mass.

Thresholds chosen on these very predictions meet their own rule by construction, so the table
also gives, for each threshold source, the share held at a review_at chosen WITHOUT that source
("nested"): what a new site gets.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from serving.schema import ABUSIVE
from training.bench.quality import PUBLIC_CONFIG
from training.bench.report import Goal, Section, measured_on, missed_by, record_before_main
from training.experiment.config import AbuseHeadConfig, load_config
from training.experiment.heads import (
    LeftOut,
    featurise_head,
    head_rows,
    held_share,
    left_out_predictions,
    left_out_table,
    left_out_thresholds,
    scored_rows,
    table_markdown,
)
from training.experiment.train import split_records

BEFORE = Path("experiments/abuse_before.json")
GOAL_AUC, GOAL_HELD, GOAL_PUBLISHED = 0.90, 0.05, 0.02
PUBLISHED_GOAL = ("aoc_sentences", "myc", "msac")


def _variant_down_weighted(config: AbuseHeadConfig) -> AbuseHeadConfig:
    return config.model_copy(
        update={
            "exclude_sources": tuple(s for s in config.exclude_sources if s != "aljazeera_levels"),
            "source_mass": {**config.source_mass, "aljazeera_levels": 0.25},
        }
    )


def _left_out(config: AbuseHeadConfig, training: Sequence[Any], seed: int) -> LeftOut:
    rows = head_rows(config, training, seed)
    featurised = featurise_head(config, rows)
    scored = scored_rows(config, training, seed, per_source=None)
    left_out = left_out_predictions(
        config, rows, featurised, scored, seed, n_folds=0, progress=lambda m: print("  ", m, flush=True)
    )
    if left_out is None:
        raise RuntimeError("fewer than two source families to hold out")
    return left_out


def _nested_held(config: AbuseHeadConfig, left_out: LeftOut) -> dict[str, float]:
    """Per threshold source: held share at a review_at chosen without that source."""
    out = {}
    for source in config.threshold_sources:
        others = config.model_copy(
            update={"threshold_sources": tuple(s for s in config.threshold_sources if s != source)}
        )
        chosen = left_out_thresholds(others, left_out)
        negatives = left_out.p[(left_out.sources == source) & (left_out.y == 0)]
        if chosen is not None and len(negatives):
            out[source] = held_share(negatives, chosen["review_at"])
    return out


def _baseline(
    config: AbuseHeadConfig, training: Sequence[Any], scored: LeftOut
) -> dict[str, dict[str, float]]:
    """Character TF-IDF (char_wb 2-5, raw text) + logistic regression, abuse corpora only, left out."""
    abuse = [r for r in training if r.source in config.evaluated_sources and r.label]
    texts = [r.text for r in abuse]
    y = np.array([r.label == ABUSIVE for r in abuse])
    sources = np.array([r.source for r in abuse], dtype=object)
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)
    matrix = vectorizer.fit_transform(texts)
    scored_texts = vectorizer.transform([r.text for r in scored.records])
    out: dict[str, dict[str, float]] = {}
    for source in [*config.evaluated_sources, *config.published_sources]:
        target = scored.sources == source
        if not target.any():
            continue
        keep = sources != source
        classifier = LogisticRegression(C=1.0, max_iter=1000)
        classifier.fit(matrix[keep], y[keep])
        p = classifier.predict_proba(scored_texts[np.flatnonzero(target)])[:, 1]
        truth = scored.y[target]
        out[source] = {
            "roc_auc": float(roc_auc_score(truth, p)) if 0 < truth.sum() < len(truth) else float("nan"),
            "held_at_0.5": held_share(p[truth == 0], 0.5),
        }
        print(f"   baseline {source}: {out[source]}", flush=True)
    return out


def abuse_section(config_path: Path = PUBLIC_CONFIG, root: Path = Path(".")) -> Section:
    """The leave-one-source-out comparison (about 10 minutes on 2 cores)."""
    started = time.perf_counter()
    config = load_config(config_path)
    data = split_records(config, root, ())
    training = [*data.train, *data.head_only]
    product = _left_out(config.abuse, training, config.seed)
    chosen = left_out_thresholds(config.abuse, product)
    if chosen is None:
        raise RuntimeError("no threshold source among the left-out predictions")
    table = left_out_table(config.abuse, product, chosen["review_at"], chosen["reject_at"])
    nested = _nested_held(config.abuse, product)
    down = _variant_down_weighted(config.abuse)
    down_left_out = _left_out(down, training, config.seed)
    down_chosen = left_out_thresholds(down, down_left_out) or chosen
    down_table = {
        row["source"]: row
        for row in left_out_table(down, down_left_out, down_chosen["review_at"], down_chosen["reject_at"])
    }
    baseline = _baseline(config.abuse, training, product)
    before = json.loads(BEFORE.read_text(encoding="utf-8")) if BEFORE.is_file() else {"sources": {}}

    def pct(value: float | None) -> str:
        return "" if value is None or value != value else f"{100 * value:.1f} %"

    def auc(value: float | None) -> str:
        return "" if value is None or value != value else f"{value:.3f}"

    review, reject = chosen["review_at"], chosen["reject_at"]
    protocol = (
        f"Protocol: `{config_path}`'s abuse head (training/experiment/heads.py), strict "
        "leave-one-source-out: every source below is scored, all its rows, by a head trained on every "
        "other source (and no source of its family: AOC's joined comments and published sentences are "
        "one family). Vocabulary and IDF are learned once from all training rows (no labels); labels "
        f"never cross. Thresholds for `abusive` from these predictions: review_at **{review}**, "
        f"reject_at **{reject}** (rule: at most {config.abuse.max_held:.0%} of every insult-defined "
        f"source's non-abusive rows and {config.abuse.max_published_held:.0%} of AOC and MYC held). "
        f"`raqib train` uses {config.abuse.source_folds} groups of sources instead of one fit per source, "
        "to stay quick, and logs the same table to its MLflow run."
    )
    columns = (
        "source",
        "kind",
        "n",
        "ROC-AUC",
        "before",
        "baseline",
        "held at review_at",
        "held, no insult word",
        "nested held",
        "held at 0.5",
        "before: held",
        "baseline: held at 0.5",
        "abuse caught at review_at",
    )
    lines = [
        f"{measured_on()} Took {time.perf_counter() - started:.0f} s.",
        "",
        *textwrap.wrap(protocol, 100),
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in table:
        source = row["source"]
        old = before["sources"].get(source, {})
        base = baseline.get(source, {})
        cells = (
            source,
            row["kind"],
            f"{row['n']:,}",
            f"**{auc(row['roc_auc'])}**" if row["roc_auc"] is not None else "",
            auc(old.get("roc_auc")),
            auc(base.get("roc_auc")),
            f"**{pct(row['held_at_review'])}**",
            pct(row["held_at_review_without_insult_words"]),
            pct(nested.get(source)),
            pct(row["held_at_0.5"]),
            pct(old.get("held_non_abusive")),
            pct(base.get("held_at_0.5")),
            pct(row["caught_at_review"]),
        )
        lines.append("| " + " | ".join(cells) + " |")
    notes = (
        f"*before*: {before.get('model', 'the previous champion')} ({before.get('protocol', '')}); it had "
        "trained on MPOLD, so its MPOLD figure is not left out. *baseline*: character TF-IDF (char_wb 2–5) "
        "+ logistic regression C = 1 on the ten abuse corpora, each left out in turn; held at 0.5 (it has "
        "no thresholds). *hate-only* corpora (sectarian, MLMA, Saudi hate) were labelled for hate: their "
        "non-hateful side still holds plain insults, which the product holds on purpose; they train the "
        "head but are not used for thresholds. *nested held*: held at a review_at chosen without the "
        "source. *held, no insult word*: the same share among the non-abusive rows without a hit in the "
        "insult lexicon (training/data/insults.py): nobody checked the sentiment corpora for abuse, and "
        "most of what the head holds there is plain insult."
    )
    comparison = (
        "source",
        "ROC-AUC dropped",
        "ROC-AUC down-weighted",
        "held, dropped",
        "held, down-weighted",
    )
    lines += [
        "",
        *textwrap.wrap(notes, 100),
        "",
        "Aljazeera's deleted comments dropped (the product) vs kept with both language levels at a quarter",
        "of a cell's mass; held at each variant's own review_at:",
        "",
        "| " + " | ".join(comparison) + " |",
        "|" + "---|" * len(comparison),
    ]
    for row in table:
        other = down_table.get(row["source"], {})
        lines.append(
            f"| {row['source']} | {auc(row['roc_auc'])} | {auc(other.get('roc_auc'))} | "
            f"{pct(row['held_at_review'])} | {pct(other.get('held_at_review'))} |"
        )
    insult = [r for r in table if r["kind"] == "insult"]
    published = [r for r in table if r["source"] in PUBLISHED_GOAL]
    worst_auc = min(insult, key=lambda r: r["roc_auc"] or 0.0)
    worst_held = max(insult, key=lambda r: nested.get(r["source"], r["held_at_review"]))
    worst_pub = max(published, key=lambda r: r["held_at_review"]) if published else None
    worst_nested = nested.get(worst_held["source"], worst_held["held_at_review"])
    mean_auc = float(np.mean([r["roc_auc"] for r in insult]))
    lines += [
        "",
        f"Mean ROC-AUC over the insult-defined sources: {mean_auc:.3f} (baseline "
        f"{np.nanmean([baseline.get(r['source'], {}).get('roc_auc', np.nan) for r in insult]):.3f}).",
    ]
    goals = [
        Goal(
            "abuse, leave-one-source-out ROC-AUC (worst insult-defined source)",
            f"{worst_auc['roc_auc']:.3f} ({worst_auc['source']})",
            f"≥ {GOAL_AUC} on every source",
            missed_by(worst_auc["roc_auc"], GOAL_AUC, higher_is_better=True),
        ),
        Goal(
            "abuse, non-offensive held at review_at chosen without the source (worst)",
            f"{100 * worst_nested:.1f} % ({worst_held['source']})",
            f"≤ {GOAL_HELD:.0%}",
            missed_by(worst_nested, GOAL_HELD),
        ),
    ]
    if worst_pub is not None:
        goals.append(
            Goal(
                "published comments, no article, held as abusive (worst of AOC, MYC, MSAC)",
                f"{100 * worst_pub['held_at_review']:.1f} % ({worst_pub['source']})",
                f"≤ {GOAL_PUBLISHED:.0%}",
                missed_by(worst_pub["held_at_review"], GOAL_PUBLISHED),
            )
        )
    if published:
        worst_clean = max(published, key=lambda r: r["held_at_review_without_insult_words"])
        goals.append(
            Goal(
                "same, counting only comments without an insult word (worst of AOC, MYC, MSAC)",
                f"{100 * worst_clean['held_at_review_without_insult_words']:.1f} % ({worst_clean['source']})",
                f"≤ {GOAL_PUBLISHED:.0%}",
                missed_by(worst_clean["held_at_review_without_insult_words"], GOAL_PUBLISHED),
            )
        )
    figures = {
        "review_at": chosen["review_at"],
        "reject_at": chosen["reject_at"],
        "table": table,
        "nested_held": nested,
        "baseline": baseline,
        "down_weighted": list(down_table.values()),
        "markdown": table_markdown(table),
    }
    return Section("abuse", "Abuse: leave-one-source-out", lines, goals, figures)


def record_before(
    bundle: Path, config_path: Path = PUBLIC_CONFIG, per_source: int = 5000, seed: int = 13
) -> dict[str, Any]:
    """Score every evaluated and published source with an earlier bundle, as `abuse_before.json`.

    The comparison column "before" comes from here: e.g. `raqib export --version 1 -o /tmp/v1` then
    `python -m training.bench.abuse --record-before /tmp/v1`. Rows have no article; held = review
    or reject for any label.
    """
    import random

    from serving.model.moderation import CommentInput, ModerationModel
    from training.data.contract import read_records

    config = load_config(config_path)
    wanted = [*config.abuse.evaluated_sources, *config.abuse.published_sources]
    model = ModerationModel.from_bundle(bundle)
    public = Path(config.data.public or "data/build/public.jsonl")
    by_source: dict[str, list[Any]] = {name: [] for name in wanted}
    for record in read_records(public):
        if record.source in by_source:
            by_source[record.source].append(record)
    trained = set(model.metadata.get("training_data", {}).get("by_source", {}))
    out: dict[str, Any] = {
        "model": f"{model.name} v{model.version}",
        "sha256": model.metadata.get("sha256"),
        "protocol": (
            f"each source's rows (up to {per_source:,}, seed {seed}) with no article; held = action review "
            "or reject for any label"
        ),
        "sources": {},
    }
    for name, rows in by_source.items():
        if len(rows) > per_source:
            rows = random.Random(seed).sample(rows, per_source)
        results = []
        for start in range(0, len(rows), 256):
            batch = [CommentInput(r.text) for r in rows[start : start + 256]]
            results += model.score(batch, explain=False)
        truth = np.array([r.label == ABUSIVE for r in rows])
        p = np.array([r.scores.get(ABUSIVE, 0.0) for r in results])
        held = np.array([r.action != "approve" for r in results])
        out["sources"][name] = {
            "n": len(rows),
            "roc_auc": float(roc_auc_score(truth, p)) if 0 < truth.sum() < len(truth) else None,
            "held_non_abusive": float(held[~truth].mean()) if (~truth).any() else None,
            "trained_on": name in trained,
        }
    return out


if __name__ == "__main__":
    record_before_main("training.bench.abuse", __doc__, record_before, BEFORE)
