"""Why a comment scored as it did: reasons a moderator reads and spans of the original text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from serving.features.prepare import PreparedComments
from serving.features.relation import article_script
from serving.text.normalize import (
    EMAIL_TOKEN,
    MASK_TOKENS,
    PHONE_TOKEN,
    URL_TOKEN,
    dominant_script,
    normalize_with_offsets,
)


@dataclass(frozen=True)
class Reason:
    """Why the model leaned one way: an n-gram, a signal or the article relation."""

    kind: str
    detail: str
    weight: float


@dataclass(frozen=True)
class Span:
    """A flagged stretch of the ORIGINAL comment text, [begin, end) in code points."""

    begin: int
    end: int
    score: float


def linear_view(classifier: Any, n_classes: int) -> np.ndarray | None:
    """Per-class feature weights of a linear classifier, for explanations (None if unknown)."""
    if hasattr(classifier, "calibrated_classifiers_"):
        parts = [linear_view(c.estimator, n_classes) for c in classifier.calibrated_classifiers_]
        parts_ok = [p for p in parts if p is not None]
        return np.mean(parts_ok, axis=0) if parts_ok else None
    if hasattr(classifier, "coef_"):
        coef = np.asarray(classifier.coef_, dtype=np.float32)
        if coef.shape[0] == 1 and n_classes == 2:
            coef = np.vstack([-coef[0], coef[0]])
        return coef
    if hasattr(classifier, "feature_log_prob_"):
        flp = np.asarray(classifier.feature_log_prob_, dtype=np.float32)
        # ComplementNB's log-probs are of the complement: lower means more of the class.
        return -(flp - flp.mean(axis=0, keepdims=True))
    return None


_MASK_NAMES = {URL_TOKEN: "a link", PHONE_TOKEN: "a phone number", EMAIL_TOKEN: "an e-mail address"}


@lru_cache(maxsize=8192)
def display_gram(gram: str) -> str | None:
    """How an n-gram reads to a moderator (masks by name); None for fragments too short to mean much."""
    for token, name in _MASK_NAMES.items():
        if token in gram or (len(gram) >= 3 and gram in token):
            return f"<{name}>"
    if gram.startswith("xx") or any(gram in token for token in MASK_TOKENS):
        return None  # a fragment of a mask token that names nothing by itself
    if len(gram) < 3 and " " not in gram:
        return None
    return gram


def signal_reasons(prepared: PreparedComments, row: int) -> list[Reason]:
    text = prepared.text[row]
    tokens = text.split()
    reasons = []
    for token, name in _MASK_NAMES.items():
        if token in tokens:
            reasons.append(Reason(kind="signal", detail=f"contains {name}", weight=1.0))
    parts = [part for part in (prepared.title[row], prepared.body[row]) if part]
    if parts:
        comment_script = dominant_script(text)
        scripts = {article_script(part) for part in parts}
        names = {"latin": "English/Latin-script", "arabic": "Arabic"}
        article = next(iter(scripts)) if len(scripts) == 1 else "mixed"
        if comment_script in names and article in names and comment_script != article:
            reasons.append(
                Reason(
                    kind="context",
                    detail=f"comment is {names[comment_script]}, article is {names[article]}",
                    weight=0.5,
                )
            )
    return reasons


_WORD = re.compile(r"\S+")


def character_heat(text: str, ngram_weights: Sequence[tuple[str, float]]) -> np.ndarray | None:
    """Per character of `text`, the sum of the weights of the n-gram occurrences covering it (every
    occurrence, overlapping ones too), in float32; None when no n-gram occurs.

    Every covered character and its gram's weight are listed, then added by one np.add.at: the same
    float32 additions, in the same order per character, as adding occurrence by occurrence (a numpy
    call per occurrence was most of a span's cost)."""
    positions: list[int] = []
    weights: list[float] = []
    for gram, weight in ngram_weights:
        needle = gram.strip()
        if not needle:
            continue
        width = len(needle)
        start = text.find(needle)
        while start != -1:
            positions.extend(range(start, start + width))
            weights.extend([weight] * width)
            start = text.find(needle, start + 1)
    if not positions:
        return None
    heat = np.zeros(len(text), dtype=np.float32)
    np.add.at(heat, positions, np.asarray(weights, dtype=np.float32))
    return heat


def spans_from_ngrams(
    original: str, ngram_weights: Sequence[tuple[str, float]], probability: float
) -> list[Span]:
    """Project the n-grams that pushed the score onto whole words of the original text."""
    if not ngram_weights or not original:
        return []
    normalized = normalize_with_offsets(original)
    text = normalized.text
    heat = character_heat(text, ngram_weights)
    if heat is None or not heat.any():
        return []
    # Score words, not characters: a moderator reads "واتساب", not "تسا".
    bounds = [match.span() for match in _WORD.finditer(text)]
    starts = np.fromiter((b for b, _ in bounds), dtype=np.int64, count=len(bounds))
    ends = np.fromiter((e for _, e in bounds), dtype=np.int64, count=len(bounds))
    cumulative = np.concatenate([[0.0], np.cumsum(heat, dtype=np.float64)])
    means = ((cumulative[ends] - cumulative[starts]) / (ends - starts)).tolist()
    words = [(b, e, score) for (b, e), score in zip(bounds, means, strict=True)]
    top = max(score for _, _, score in words)
    cutoff = 0.4 * top
    spans: list[Span] = []
    run: list[tuple[int, int, float]] = []
    for word in [*words, (len(text), len(text), -1.0)]:
        if word[2] >= cutoff:
            run.append(word)
            continue
        if run:
            begin, end = normalized.original_span(run[0][0], run[-1][1])
            peak = max(score for _, _, score in run) / top
            spans.append(Span(begin=begin, end=end, score=round(peak * probability, 4)))
            run = []
    return spans[:10]
