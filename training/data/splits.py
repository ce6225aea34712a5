"""Deterministic, article-grouped split buckets shared by the dataset build and evaluation."""

from __future__ import annotations

import hashlib

N_BUCKETS = 10
# Buckets whose records form the frozen evaluation set; never trained on by `raqib train`.
FROZEN_EVAL_BUCKETS = frozenset({0, 1})


def split_bucket(group_key: str, n_buckets: int = N_BUCKETS) -> int:
    """Stable bucket in [0, n_buckets) for a group key (an article id, else a comment id)."""
    digest = hashlib.sha256(group_key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n_buckets


def group_key(article_id: str | None, comment_id: str | None, text: str) -> str:
    """The unit that must never straddle train and test: the article, else the comment."""
    if article_id:
        return f"article:{article_id}"
    if comment_id:
        return f"comment:{comment_id}"
    return "text:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
