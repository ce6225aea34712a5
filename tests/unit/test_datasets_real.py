"""The public-corpus build on the real corpora: exact counts, no e-mail, joins, stable hash.

Skipped when the corpora are absent. They are looked up in $RAQIB_DATASETS, else in
../shared/datasets next to the repository. The counts below were measured on the shared
snapshot. A change in them means the corpora or a mapping changed, so update MAPPING.md too.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pytest

from training.data.datasets.aoc import COMMENTS_FILE, load_articles, parse_docs
from training.data.datasets.aoc_repaired import article_bucket
from training.data.datasets.registry import DEFAULT_SOURCES, BuildResult, build
from training.experiment.config import load_config

pytestmark = pytest.mark.datasets

ROOT = Path(
    os.environ.get("RAQIB_DATASETS") or Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
)
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")

EXPECTED = {
    "aljazeera_deleted": {"abusive": 26033},
    "aoc": {"on_topic": 2781},
    "aoc_repaired": {"off_topic": 1420},
    "ar_spam_tweets": {"spam": 5284},
    "ar_tweet_accounts": {"on_topic": 482, "spam": 358},
    "fox_news": {"abusive": 432, "on_topic": 1088},
    "mpold": {"abusive": 675, "on_topic": 3325},
    "semeval2015": {"off_topic": 265, "on_topic": 190},
    "sms_spam": {"on_topic": 4518, "spam": 642},
    "youtube_spam": {"on_topic": 924, "spam": 845},
}


# The abusive head's corpora (300,000 rows, over a minute to build) have their own count tests in
# test_datasets_abuse.py; this build leaves them out to stay quick.
HEAD_ONLY = tuple(
    load_config(Path(__file__).resolve().parents[2] / "experiments" / "public.toml").data.head_only_sources
)


@pytest.fixture(scope="module")
def real_build(tmp_path_factory) -> tuple[BuildResult, BuildResult]:
    if not ROOT.is_dir():
        pytest.skip(f"public corpora not found at {ROOT} (set RAQIB_DATASETS)")
    out = tmp_path_factory.mktemp("public")
    return build(ROOT, out / "a.jsonl", exclude=HEAD_ONLY), build(ROOT, out / "b.jsonl", exclude=HEAD_ONLY)


def test_counts_per_source_and_label(real_build):
    first, _ = real_build
    assert first.skipped == {}
    assert first.counts() == EXPECTED
    assert set(EXPECTED) == set(DEFAULT_SOURCES) - set(HEAD_ONLY)


def test_hash_is_stable_across_builds(real_build):
    first, second = real_build
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes()


def test_no_email_and_no_author_anywhere(real_build):
    first, _ = real_build
    for record in first.records:
        assert record.author is None
        for value in (record.text, record.article_title, record.article_text):
            assert not (value and EMAIL_RE.search(value)), record.comment_id


def test_every_aoc_comment_joins_to_an_article(real_build):
    articles = load_articles(ROOT)
    comments = parse_docs(ROOT / COMMENTS_FILE)
    assert len(comments) == 2815 and len(articles) == 211
    assert all(doc.attrs["articleURL"].strip() in articles for doc in comments)
    first, _ = real_build
    aoc = [r for r in first.records if r.source == "aoc"]
    assert all(r.article_id and r.article_title and r.article_text for r in aoc)
    assert len({r.article_id for r in aoc}) == 136


def test_repaired_pairs_on_real_data(real_build):
    first, _ = real_build
    own = {r.comment_id.split(":", 1)[1]: r.article_id for r in first.records if r.source == "aoc"}
    repaired = [r for r in first.records if r.source == "aoc_repaired"]
    for r in repaired:
        mine = own[r.comment_id.split(":", 1)[1]]
        assert r.article_id != mine
        assert article_bucket(r.article_id) == article_bucket(mine)


def test_ids_unique_and_retweet_markers_gone(real_build):
    first, _ = real_build
    keys = [(r.source, r.comment_id) for r in first.records]
    assert len(keys) == len(set(keys))
    tweets = [r.text for r in first.records if r.source == "ar_spam_tweets"]
    assert not any(t.startswith("RT @") for t in tweets)
    scripts = Counter(r.site for r in first.records if r.source == "mpold")
    assert scripts == {"twitter": 1624, "youtube": 1592, "facebook": 784}
