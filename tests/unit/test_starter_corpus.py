"""Sanity checks on the authored starter corpus in data/starter/ (see its README)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from serving.schema import CANONICAL_COLUMNS, DEFAULT_LABELS

pytestmark = pytest.mark.unit

STARTER = Path(__file__).resolve().parents[2] / "data" / "starter"
LABELS = DEFAULT_LABELS
COMMENT_KEYS = set(CANONICAL_COLUMNS)
ARTICLE_KEYS = {"article_id", "site", "title", "text"}
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")

# Exact counts as authored; an accidental edit to comments.jsonl shows up here.
# If you change the corpus on purpose, update these numbers and the README table.
EXPECTED_LABEL_COUNTS = {"on_topic": 296, "off_topic": 108, "spam": 104, "abusive": 100}
EXPECTED_ARTICLES = 18


def _load(name: str) -> list[dict]:
    path = STARTER / name
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module")
def articles() -> list[dict]:
    return _load("articles.jsonl")


@pytest.fixture(scope="module")
def comments() -> list[dict]:
    return _load("comments.jsonl")


def test_sizes(articles: list[dict], comments: list[dict]) -> None:
    assert len(comments) >= 400
    assert len(articles) >= 12
    assert len(articles) == EXPECTED_ARTICLES


def test_article_records(articles: list[dict]) -> None:
    ids = [a["article_id"] for a in articles]
    assert len(ids) == len(set(ids))
    for article in articles:
        assert set(article) == ARTICLE_KEYS, article["article_id"]
        assert article["article_id"].startswith("starter-a")
        assert article["title"].strip() and article["site"].strip()
        words = len(article["text"].split())
        assert 60 <= words <= 150, (article["article_id"], words)


def test_comment_records_have_canonical_keys(comments: list[dict]) -> None:
    for comment in comments:
        assert set(comment) == COMMENT_KEYS, comment.get("comment_id")
        assert isinstance(comment["text"], str) and comment["text"].strip()
        assert comment["article_title"] is None and comment["article_text"] is None
        assert comment["created_at"].startswith("2026-11-")


def test_article_ids_resolve(articles: list[dict], comments: list[dict]) -> None:
    known = {a["article_id"]: a["site"] for a in articles}
    for comment in comments:
        article_id = comment["article_id"]
        if article_id is not None:
            assert article_id in known, comment["comment_id"]
            assert comment["site"] == known[article_id], comment["comment_id"]


def test_comments_without_article_are_never_off_topic(comments: list[dict]) -> None:
    orphans = [c for c in comments if c["article_id"] is None]
    assert orphans
    assert all(c["label"] != "off_topic" for c in orphans)


def test_label_coverage(comments: list[dict]) -> None:
    counts = Counter(c["label"] for c in comments)
    assert set(counts) == set(LABELS)
    for label in LABELS:
        assert counts[label] >= 60, label
    assert counts["off_topic"] >= 80


def test_source_is_starter(comments: list[dict]) -> None:
    assert {c["source"] for c in comments} == {"starter"}


def test_comment_ids_unique(comments: list[dict]) -> None:
    ids = [c["comment_id"] for c in comments]
    assert len(ids) == len(set(ids))


def test_no_email_addresses(articles: list[dict], comments: list[dict]) -> None:
    for record in [*articles, *comments]:
        for value in record.values():
            if isinstance(value, str):
                assert not EMAIL.search(value), value


def test_no_duplicate_text_per_article(comments: list[dict]) -> None:
    keys = [(c["text"], c["article_id"]) for c in comments]
    duplicates = [k for k, n in Counter(keys).items() if n > 1]
    assert not duplicates


def test_every_article_has_on_and_off_topic_comments(articles: list[dict], comments: list[dict]) -> None:
    per_article = {a["article_id"]: Counter() for a in articles}
    for comment in comments:
        if comment["article_id"] is not None:
            per_article[comment["article_id"]][comment["label"]] += 1
    for article_id, counts in per_article.items():
        assert counts["on_topic"] >= 8, (article_id, counts)
        assert counts["off_topic"] >= 3, (article_id, counts)


def test_paired_texts_carry_both_topic_labels(comments: list[dict]) -> None:
    """Some texts appear on-topic under one article and off-topic under another."""
    labels_by_text: dict[str, set[str]] = {}
    for comment in comments:
        labels_by_text.setdefault(comment["text"], set()).add(comment["label"])
    paired = [t for t, labels in labels_by_text.items() if {"on_topic", "off_topic"} <= labels]
    assert len(paired) >= 20


def test_stable_label_counts(comments: list[dict]) -> None:
    assert dict(Counter(c["label"] for c in comments)) == EXPECTED_LABEL_COUNTS
