"""Gather training records (starter, public build, labelled imports) and shape them for fitting."""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from serving.schema import CANONICAL_COLUMNS, OFF_TOPIC
from training.data.config import AugmentConfig, DataConfig
from training.data.contract import (
    ContractError,
    LabeledRecord,
    iter_raw_rows,
    read_records,
    records_fingerprint,
)
from training.data.labeled import resolved_labeled_records
from training.data.splits import FROZEN_EVAL_BUCKETS, group_key, split_bucket

STARTER_ARTICLES = "articles.jsonl"
STARTER_COMMENTS = "comments.jsonl"


def load_starter(directory: str | Path, allowed_labels: Sequence[str] | None = None) -> list[LabeledRecord]:
    """The authored starter corpus with each comment joined to its article."""
    directory = Path(directory)
    articles_path = directory / STARTER_ARTICLES
    articles: dict[str, dict[str, str]] = {}
    if not articles_path.is_file():
        raise ContractError(articles_path, None, None, "starter articles file not found")
    for number, row in iter_raw_rows(articles_path):
        for key in ("article_id", "title", "text"):
            value = row.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ContractError(articles_path, number, key, "missing or empty")
        articles[str(row["article_id"])] = {"title": str(row["title"]), "text": str(row["text"])}
    comments_path = directory / STARTER_COMMENTS
    records = []
    for index, record in enumerate(read_records(comments_path, allowed_labels=allowed_labels), 1):
        if record.article_id:
            article = articles.get(record.article_id)
            if article is None:
                raise ContractError(
                    comments_path, index, "article_id", f"unknown article {record.article_id!r}"
                )
            record = replace(record, article_title=article["title"], article_text=article["text"])
        records.append(record)
    return records


def load_labeled_dir(
    directory: str | Path, allowed_labels: Sequence[str] | None = None
) -> list[LabeledRecord]:
    """Every canonical JSONL file under data/labeled/, de-duplicated with the import rule.

    Imports are append-only, so the same comment can sit in several files; the importer's rule
    (latest moderator decision wins) resolves them, and superseded records are not trained on.
    """
    return resolved_labeled_records(directory, allowed_labels)


def gather(
    config: DataConfig,
    labels: Sequence[str],
    root: Path = Path("."),
    set_aside: dict[str, list[LabeledRecord]] | None = None,
) -> tuple[list[LabeledRecord], dict[str, str]]:
    """All records the config names, and a note per input on what was used or skipped.

    `set_aside`: for each source it names (keys, among the excluded ones), the public build's records
    of that source are put in its list, as read, from the same pass over the file (the build is
    ~300k lines; a check on an excluded source would otherwise read it all again)."""
    notes: dict[str, str] = {}
    records: list[LabeledRecord] = []
    if config.starter:
        starter = load_starter(root / config.starter, allowed_labels=labels)
        records += starter
        notes["starter"] = f"{len(starter)} records from {config.starter}"
    if config.public:
        public_path = root / config.public
        if public_path.is_file():
            public = []
            for r in read_records(public_path):
                if r.source not in config.exclude_sources:
                    if r.label in labels:
                        public.append(r)
                elif set_aside is not None and r.source in set_aside:
                    set_aside[r.source].append(r)
            records += public
            notes["public"] = f"{len(public)} records from {config.public}"
        elif config.require_public:
            raise ContractError(
                public_path, None, None, "public build not found (run `raqib datasets build` first)"
            )
        else:
            notes["public"] = f"skipped: {config.public} not found (run `raqib datasets build`)"
    if config.labeled_dir:
        labeled = load_labeled_dir(root / config.labeled_dir, allowed_labels=labels)
        records += labeled
        notes["labeled"] = f"{len(labeled)} records from {config.labeled_dir}"
    return cap_sources([with_comment_id(r) for r in records], config, seed=13), notes


def with_comment_id(record: LabeledRecord) -> LabeledRecord:
    # Folds and augmentation track rows by comment_id; imports without one get a stable id.
    if record.comment_id:
        return record
    digest = hashlib.sha1(f"{record.article_id}\x00{record.text}".encode()).hexdigest()[:16]
    return replace(record, comment_id=f"anon:{digest}")


def cap_sources(records: Sequence[LabeledRecord], config: DataConfig, seed: int) -> list[LabeledRecord]:
    """Keep at most the configured number of rows per (source, label), sampled with a seed."""
    buckets: dict[tuple[str, str], list[LabeledRecord]] = defaultdict(list)
    for record in records:
        buckets[(record.source or "unknown", record.label or "")].append(record)
    kept: list[LabeledRecord] = []
    for (source, label), group in sorted(buckets.items()):
        cap = config.max_per_source_label.get(
            f"{source}:{label}", config.max_per_source_label.get(source, config.default_max_per_source_label)
        )
        if cap is not None and len(group) > cap:
            rng = random.Random(f"{seed}:{source}:{label}")
            group = sorted(rng.sample(group, cap), key=lambda r: r.comment_id or r.text)
        kept.extend(group)
    return kept


def record_group(record: LabeledRecord) -> str:
    """The grouping key for splits (article, else comment)."""
    return group_key(record.article_id, record.comment_id, record.text)


def split_frozen(records: Sequence[LabeledRecord]) -> tuple[list[LabeledRecord], list[LabeledRecord]]:
    """(train, frozen evaluation) by article-grouped hash buckets; no article on both sides."""
    train: list[LabeledRecord] = []
    frozen: list[LabeledRecord] = []
    for record in records:
        (frozen if split_bucket(record_group(record)) in FROZEN_EVAL_BUCKETS else train).append(record)
    return train, frozen


def augment_context(
    records: Sequence[LabeledRecord], config: AugmentConfig, seed: int
) -> list[LabeledRecord]:
    """Add copies with partial or no article, and article-less spam/abuse under some article.

    CMSs send full articles, titles only or nothing; the model must see every label in every
    situation, or it learns "no article means spam" from which corpora lack articles. Copies:
    - on_topic with an article → a title-only copy and an article-less copy (still on_topic);
    - off_topic → a title-only copy (an off-topic label needs some article, so never article-less);
    - any label without an article except off_topic → sometimes placed under a random article
      from the same records (CONSTRUCTED context: spam and abuse do not depend on the story).
    """
    rng = random.Random(seed)
    pool = sorted(
        {
            (r.article_id, r.article_title or "", r.article_text or "")
            for r in records
            if r.article_id and (r.article_title or r.article_text)
        }
    )
    out = list(records)
    for record in records:
        has_article = bool(record.article_title or record.article_text)
        if has_article:
            if record.article_title and record.article_text and rng.random() < config.title_only_rate:
                out.append(replace(record, article_text=None, comment_id=f"{record.comment_id}#title_only"))
            if record.label != OFF_TOPIC and rng.random() < config.no_article_rate:
                out.append(
                    replace(
                        record,
                        article_title=None,
                        article_text=None,
                        comment_id=f"{record.comment_id}#no_article",
                    )
                )
        elif record.label != OFF_TOPIC and pool and rng.random() < config.attach_article_rate:
            article_id, title, text = pool[rng.randrange(len(pool))]
            out.append(
                replace(
                    record,
                    article_id=article_id,
                    article_title=title or None,
                    article_text=text or None,
                    comment_id=f"{record.comment_id}#attached",
                )
            )
    return out


def to_frame(records: Iterable[LabeledRecord]) -> pd.DataFrame:
    """Records as a DataFrame with exactly the canonical columns."""
    return pd.DataFrame([r.to_dict() for r in records], columns=list(CANONICAL_COLUMNS))


def fingerprint(records: Sequence[LabeledRecord]) -> dict[str, object]:
    """sha256 plus counts per source and label: what exactly a model was trained on."""
    by_source: Counter[str] = Counter(r.source or "unknown" for r in records)
    by_label: Counter[str] = Counter(r.label or "" for r in records)
    by_pair: Counter[str] = Counter(f"{r.source or 'unknown'}:{r.label}" for r in records)
    return {
        "sha256": records_fingerprint(records),
        "rows": len(records),
        "by_source": dict(sorted(by_source.items())),
        "by_label": dict(sorted(by_label.items())),
        "by_source_label": dict(sorted(by_pair.items())),
    }
