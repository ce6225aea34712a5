"""The article cache on its own: keys, least-recently-used order, replacement by article key, and
memory bounded under 100k distinct articles (small items). Scores with and without the cache are
compared in tests/unit/test_relevance.py, where a model with every article-side block is at hand."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from serving.features.article_cache import ArticleCache, ArticleEntry, approximate_bytes, content_digest

pytestmark = pytest.mark.unit


def visit(cache: ArticleCache, title: str, body: str, key: str | None = None, size: int = 16) -> ArticleEntry:
    """One batch meeting one article: the entry, filled by a 'component' on first use, then settled."""
    (entry,), created = cache.entries([title], [body], [key])
    assert entry is not None
    entry.part("block", lambda: np.zeros(size))
    cache.settle(created)
    return entry


def test_rows_of_one_article_share_an_entry_and_rows_without_one_have_none() -> None:
    cache = ArticleCache()
    entries, created = cache.entries(["t", "", "t", "t"], ["b", "", "b", "other"])
    assert entries[0] is entries[2] and entries[1] is None and entries[3] is not entries[0]
    assert len(created) == 2
    assert entries[0] is not None and entries[0].title == "t"


def test_the_digest_tells_title_and_body_apart() -> None:
    assert content_digest("ab", "") != content_digest("a", "b")
    assert content_digest("عنوان", "نص") == content_digest("عنوان", "نص")


def test_a_hit_returns_the_filled_entry_and_the_least_recently_used_goes_first() -> None:
    cache = ArticleCache(max_entries=3)
    first = [visit(cache, f"title {i}", "body") for i in range(3)]
    (again,), created = cache.entries(["title 0"], ["body"])
    assert again is first[0] and created == [] and "block" in again.parts
    visit(cache, "title 3", "body")  # evicts "title 1", the least recently used
    (entry,), created = cache.entries(["title 1"], ["body"])
    assert created == [entry] and "block" not in entry.parts
    assert cache.stats().evictions == 1 and len(cache) == 3


def test_a_new_text_under_a_known_article_key_replaces_the_old_entry() -> None:
    cache = ArticleCache()
    old = visit(cache, "title", "old text", key="site/1")
    new = visit(cache, "title", "new text", key="site/1")
    assert new is not old and len(cache) == 1 and cache.stats().replaced == 1
    (again,), _ = cache.entries(["title"], ["new text"], ["site/1"])
    assert again is new
    # the same text under another key is another article
    visit(cache, "title", "new text", key="site/2")
    assert len(cache) == 2


def test_an_entry_bigger_than_the_whole_budget_is_used_but_not_kept() -> None:
    cache = ArticleCache(max_bytes=10_000)
    visit(cache, "title", "body", size=100_000)
    assert len(cache) == 0 and cache.stats().bytes == 0


def test_a_cache_of_no_entries_keeps_nothing() -> None:
    cache = ArticleCache(max_entries=0)
    visit(cache, "title", "body")
    (entry,), created = cache.entries(["title"], ["body"])
    assert created == [entry] and len(cache) == 0


def test_the_byte_estimate_counts_arrays_strings_and_shared_parts_once() -> None:
    array = np.zeros(1000)
    assert approximate_bytes(array) >= 8000
    assert approximate_bytes((array, array)) < 2 * approximate_bytes(array)
    entry = ArticleEntry("k", b"d", "عنوان" * 100, "")
    entry.parts["block"] = {"vector": array, "words": ["كلمة"] * 10}
    assert approximate_bytes(entry) > 8000 + len("عنوان" * 100)


def test_memory_stays_bounded_under_100k_distinct_articles() -> None:
    budget = 2 * 1024 * 1024
    cache = ArticleCache(max_entries=50_000, max_bytes=budget)
    for i in range(80_000):
        visit(cache, f"عنوان {i}", f"نص {i}", key=f"site/{i % 30_000}")
    # The last 20k articles are traced: by then everything the cache holds was allocated in that
    # window, so what is still allocated is what the cache keeps (plus the tracer's own records).
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(80_000, 100_000):
            visit(cache, f"عنوان {i}", f"نص {i}", key=f"site/{i % 30_000}")
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stats = cache.stats()
    assert stats.bytes <= budget and stats.entries < 20_000
    assert stats.misses == 100_000 and stats.evictions + stats.replaced + stats.entries == 100_000
    assert held < 2 * budget, f"{held / 2**20:.1f} MB held for a {budget / 2**20:.0f} MB budget"


def test_the_server_sizes_each_model_cache_from_its_settings(tiny_bundle: Path) -> None:
    from serving.runtime.holder import ModelHolder
    from serving.settings import Settings

    settings = Settings(model_dir=tiny_bundle, article_cache_entries=7, article_cache_mb=0.5)
    loaded = ModelHolder(settings).load()
    cache = loaded.model.article_cache
    assert (cache.max_entries, cache.max_bytes) == (7, 512 * 1024)
    # what the warm-up scored with its article is kept, within those bounds
    assert 0 < len(cache) <= 7
