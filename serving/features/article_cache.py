"""Article features computed once per article, not once per comment.

Many comments share one article, and an article's side of the relation features (its normalised
title and body, their TF-IDF, LSA and concept vectors, reference statistics, script) costs far more
than a comment's. `ArticleCache` keeps that side per article, in the model runtime, so `/v1/score`,
batch scoring, the integrations and `raqib score` compute it once:

- the key is (article key, content digest): the article key names the article when the caller
  knows it (site and id), the digest is of its raw title and text, so a changed text is never
  served stale features, and a new text under a known article key replaces the old entry at once;
- entries are bounded by count and by an estimate of their bytes, least recently used first out;
- each feature component fills its own slot of an entry (`ArticleEntry.parts`) the first time it
  meets the article; the cache measures the entry once those are filled (`settle`).
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.text.normalize import normalize

DEFAULT_MAX_ENTRIES = 4096
DEFAULT_MAX_BYTES = 128 * 1024 * 1024


def content_digest(title: str, body: str) -> bytes:
    """Digest of an article's raw title and text (the separator keeps ("ab", "") apart from ("a", "b"))."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(title.encode("utf-8", "surrogatepass"))
    digest.update(b"\x00")
    digest.update(body.encode("utf-8", "surrogatepass"))
    return digest.digest()


class ArticleEntry:
    """One article's normalised parts and every component's article-side features."""

    __slots__ = ("body", "digest", "key", "nbytes", "parts", "title")

    def __init__(self, key: str, digest: bytes, title: str, body: str) -> None:
        self.key = key
        self.digest = digest
        self.title = title  # normalised
        self.body = body  # normalised
        self.parts: dict[str, Any] = {}  # component name → that component's article side
        self.nbytes = 0

    def part(self, name: str, compute: Callable[[], Any]) -> Any:
        """The component `name`'s side of this article, computed on first use."""
        value = self.parts.get(name)
        if value is None:
            value = self.parts[name] = compute()
        return value


@dataclass(frozen=True)
class CacheStats:
    """What the cache did since it was made."""

    entries: int
    bytes: int
    hits: int
    misses: int
    evictions: int
    replaced: int


class ArticleCache:
    """Bounded LRU of `ArticleEntry` by (article key, content digest); thread-safe.

    `max_entries=0` keeps nothing: every batch computes its articles afresh (the reference the
    cache is tested against).
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES):
        if max_entries < 0 or max_bytes < 0:
            raise ValueError("article cache bounds must be >= 0")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, bytes], ArticleEntry] = OrderedDict()
        self._digest_of_key: dict[str, bytes] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = self._replaced = 0

    def __len__(self) -> int:
        return len(self._entries)

    def entries(
        self, titles: Sequence[str], bodies: Sequence[str], keys: Sequence[str | None] | None = None
    ) -> tuple[list[ArticleEntry | None], list[ArticleEntry]]:
        """Per row, its article's entry (None for a row without title and text), and the entries this
        call created (pass them to `settle` once the components have filled them). Rows with the same
        article share one entry object."""
        out: list[ArticleEntry | None] = []
        created: list[ArticleEntry] = []
        seen: dict[tuple[str, bytes], ArticleEntry] = {}
        for i, (title, body) in enumerate(zip(titles, bodies, strict=True)):
            if not title and not body:
                out.append(None)
                continue
            key = (keys[i] if keys is not None else None) or ""
            cache_key = (key, content_digest(title, body))
            entry = seen.get(cache_key)
            if entry is None:
                entry = self._lookup(cache_key)
                if entry is None:
                    entry = ArticleEntry(key, cache_key[1], _normalized(title), _normalized(body))
                    created.append(entry)
                seen[cache_key] = entry
            out.append(entry)
        return out, created

    def _lookup(self, cache_key: tuple[str, bytes]) -> ArticleEntry | None:
        with self._lock:
            entry = self._entries.get(cache_key)
            if entry is None:
                self._misses += 1
                return None
            self._hits += 1
            self._entries.move_to_end(cache_key)
            return entry

    def settle(self, created: Sequence[ArticleEntry]) -> None:
        """Keep the entries a batch created, now filled: measure them, replace an older text of the
        same article key, and evict the least recently used beyond the bounds."""
        if self.max_entries == 0:
            return
        for entry in created:
            entry.nbytes = approximate_bytes(entry)
        with self._lock:
            for entry in created:
                cache_key = (entry.key, entry.digest)
                if cache_key in self._entries or entry.nbytes > self.max_bytes:
                    continue  # kept by another thread meanwhile, or too big to keep at all
                if entry.key:
                    old_digest = self._digest_of_key.get(entry.key)
                    if old_digest is not None and old_digest != entry.digest:
                        self._drop((entry.key, old_digest))
                        self._replaced += 1
                    self._digest_of_key[entry.key] = entry.digest
                self._entries[cache_key] = entry
                self._bytes += entry.nbytes
            while self._entries and (len(self._entries) > self.max_entries or self._bytes > self.max_bytes):
                oldest = next(iter(self._entries))
                self._drop(oldest)
                self._evictions += 1

    def _drop(self, cache_key: tuple[str, bytes]) -> None:
        entry = self._entries.pop(cache_key, None)
        if entry is None:
            return
        self._bytes -= entry.nbytes
        if entry.key and self._digest_of_key.get(entry.key) == entry.digest:
            del self._digest_of_key[entry.key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._digest_of_key.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                len(self._entries), self._bytes, self._hits, self._misses, self._evictions, self._replaced
            )


def _normalized(text: str) -> str:
    return normalize(text) if text else ""


def approximate_bytes(value: Any, _seen: set[int] | None = None) -> int:
    """Bytes held by `value` and what it refers to: arrays, scipy matrices, strings, containers and
    objects with __slots__ or __dict__, each object counted once (an article's "article" part is
    often its title or body part itself)."""
    seen = _seen if _seen is not None else set()
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return value.nbytes + 112
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return sys.getsizeof(value)
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        return size + sum(approximate_bytes(k, seen) + approximate_bytes(v, seen) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return size + sum(approximate_bytes(item, seen) for item in value)
    for attribute in ("data", "indices", "indptr"):  # scipy sparse matrices
        array = getattr(value, attribute, None)
        if isinstance(array, np.ndarray):
            size += approximate_bytes(array, seen)
    for name in getattr(type(value), "__slots__", ()):
        if hasattr(value, name):
            size += approximate_bytes(getattr(value, name), seen)
    if hasattr(value, "__dict__") and not hasattr(value, "indptr"):
        size += approximate_bytes(vars(value), seen)
    return size
