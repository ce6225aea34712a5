"""Training and evaluation data for the relevance component, all from real text.

Three kinds, each saying which labels are human and which are CONSTRUCTED:

1. `comment_corpus`: AOC's published comment sentences (108,173; ids name site, article and
   comment), re-joined into comments, each with the article it was posted under. No label at all:
   the relevance features learn from it which words readers use under the same story (topical
   space, genericness). Articles of the AOC sample are left out, so the pairs below stay unseen.
2. `article_pairs`: AOC's comments joined to their article (title and body). Each comment three
   times: under its own article (real, label 0 = about this article); under a *hard* partner — an
   article of the same site with the nearest id, i.e. published at about the same time, usually
   in the same section — and under a *random* other article (both CONSTRUCTED: label 1 = about
   something else, nobody judged them; a generic reaction re-paired still fits its new article,
   so these labels are noisy by construction, and `constructed` says so on every row). Articles
   are assigned to folds first (balanced by comment count) and partners are chosen inside the
   fold, so no article is on both sides of a split; partners that near-duplicate the own article
   (sites republished some stories under two ids) are skipped.
3. `labelled_pairs`: SemEval-2015 Arabic cQA (shared half): human relevance labels. The question is
   the "article" (subject = title, body = body); `irrelevant` answers are label 1 (the task's
   organisers drew them from other questions), `direct`/`related` label 0. Folds by question.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pandas as pd

from serving.schema import OFF_TOPIC
from serving.text.normalize import normalize
from training.data.contract import LabeledRecord

PAIR_COLUMNS = (
    "pair_id",
    "comment_id",
    "text",
    "article_id",
    "own_article_id",
    "site",
    "article_title",
    "article_text",
    "label",
    "kind",
    "constructed",
    "fold",
    "source",
)
REAL, HARD, RANDOM = "real", "hard", "random"


def _stable_hash(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()


def balanced_folds(sizes: dict[str, int], n_folds: int) -> dict[str, int]:
    """Groups to folds, largest first into the smallest fold so far (ties by hash): folds of similar
    row counts even when one article has hundreds of comments. Deterministic."""
    totals = [0] * n_folds
    out: dict[str, int] = {}
    for key in sorted(sizes, key=lambda k: (-sizes[k], _stable_hash(k))):
        fold = min(range(n_folds), key=lambda i: (totals[i], i))
        out[key] = fold
        totals[fold] += sizes[key]
    return out


def _shingles(text: str, n: int = 4) -> frozenset[str]:
    t = normalize(text or "")
    return frozenset(t[i : i + n] for i in range(max(0, len(t) - n + 1)))


def _near_duplicate(a: frozenset[str], b: frozenset[str], limit: float) -> bool:
    return bool(a and b) and len(a & b) / min(len(a), len(b)) >= limit


def _article_number(article_id: str) -> int:
    tail = article_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def article_pairs(
    records: Sequence[LabeledRecord], n_folds: int = 5, seed: int = 13, source: str = "aoc"
) -> pd.DataFrame:
    """Real (comment, own article) pairs of `source` plus a hard and a random CONSTRUCTED partner each."""
    comments = [
        r for r in records if r.source == source and r.article_id and (r.article_title or r.article_text)
    ]
    articles: dict[str, dict[str, str]] = {}
    for r in comments:
        assert r.article_id is not None
        articles.setdefault(
            r.article_id,
            {"title": r.article_title or "", "text": r.article_text or "", "site": r.site or ""},
        )
    sizes: dict[str, int] = defaultdict(int)
    for r in comments:
        sizes[str(r.article_id)] += 1
    fold = balanced_folds(dict(sizes), n_folds)
    shingles = {a: (_shingles(v["title"]), _shingles(v["text"][:2000])) for a, v in articles.items()}

    def duplicate(a: str, b: str) -> bool:
        return _near_duplicate(shingles[a][0], shingles[b][0], 0.8) or _near_duplicate(
            shingles[a][1], shingles[b][1], 0.6
        )

    ids = sorted(articles)
    same_fold = {o: [a for a in ids if a != o and fold[a] == fold[o] and not duplicate(a, o)] for o in ids}
    nearest = {
        o: sorted(
            (a for a in same_fold[o] if articles[a]["site"] == articles[o]["site"]),
            key=lambda a: (abs(_article_number(a) - _article_number(o)), a),
        )
        for o in ids
    }
    rows = []
    for r in comments:
        own = str(r.article_id)
        comment_id = r.comment_id or _stable_hash(r.text)[:16]
        rng = random.Random(f"{seed}:{comment_id}")
        # one of the two nearest, so that one neighbour is not every comment's partner
        hard = rng.choice(nearest[own][:2]) if nearest[own] else None
        rand = rng.choice(same_fold[own]) if same_fold[own] else None
        for kind, partner, label in ((REAL, own, 0), (HARD, hard, 1), (RANDOM, rand, 1)):
            if partner is None:
                continue
            rows.append(
                {
                    "pair_id": f"{comment_id}|{kind}",
                    "comment_id": comment_id,
                    "text": r.text,
                    "article_id": partner,
                    "own_article_id": own,
                    "site": articles[own]["site"],
                    "article_title": articles[partner]["title"],
                    "article_text": articles[partner]["text"],
                    "label": label,
                    "kind": kind,
                    "constructed": kind != REAL,
                    "fold": fold[own],
                    "source": source,
                }
            )
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def labelled_pairs(
    records: Sequence[LabeledRecord], n_folds: int = 5, source: str = "semeval2015"
) -> pd.DataFrame:
    """Human-labelled (answer, question) pairs: label 1 where the answer is off_topic (irrelevant)."""
    rows = [r for r in records if r.source == source and r.article_id]
    sizes: dict[str, int] = defaultdict(int)
    for r in rows:
        sizes[str(r.article_id)] += 1
    fold = balanced_folds(dict(sizes), n_folds)
    frame = pd.DataFrame(
        [
            {
                "pair_id": r.comment_id or _stable_hash(r.text)[:16],
                "comment_id": r.comment_id or _stable_hash(r.text)[:16],
                "text": r.text,
                "article_id": r.article_id,
                "own_article_id": r.article_id,
                "site": r.site or "",
                "article_title": r.article_title or "",
                "article_text": r.article_text or "",
                "label": int(r.label == OFF_TOPIC),
                "kind": "irrelevant" if r.label == OFF_TOPIC else "relevant",
                "constructed": False,
                "fold": fold[str(r.article_id)],
                "source": source,
            }
            for r in rows
        ],
        columns=list(PAIR_COLUMNS),
    )
    return frame


def comment_corpus(
    records: Sequence[LabeledRecord],
    source: str = "aoc_sentences",
    exclude_articles: frozenset[str] = frozenset(),
) -> tuple[list[str], list[str]]:
    """(normalised comments, article ids) re-joined from the sentence records of `source`.

    A sentence's comment id is `aoc_sentences:{site}_{article}_{comment}_{sentence}_{variety}`; a
    comment's sentences are split between the MSA and dialect files and are put back in order.
    """
    parts: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for r in records:
        if r.source != source or not r.article_id or r.article_id in exclude_articles:
            continue
        name = (r.comment_id or "").split(":", 1)[-1]
        pieces = name.split("_")
        if len(pieces) < 4 or not pieces[-2].isdigit():
            continue
        comment_key = "_".join(pieces[:-2])  # site_article_comment
        parts[(r.article_id, comment_key)].append((int(pieces[-2]), r.text))
    texts, groups = [], []
    for (article_id, _), sentences in sorted(parts.items()):
        text = normalize(" ".join(t for _, t in sorted(sentences) if t))
        if text.strip():
            texts.append(text)
            groups.append(article_id)
    return texts, groups


def training_subset(pairs: pd.DataFrame) -> pd.DataFrame:
    """Rows to train on: every real pair plus ONE constructed partner per comment, hard or random by a
    hash of the comment id (the other when the comment has only one; the same AUC as both in the
    prototype's measurement, with 2/3 of the rows). Evaluation always uses every real, hard and
    random row."""
    constructed = pairs["constructed"].to_numpy().astype(bool)
    kind = pairs["kind"].to_numpy()
    comment = pairs["comment_id"].astype(str).to_numpy()
    kinds_of: dict[str, set[str]] = defaultdict(set)
    for c, k, made in zip(comment, kind, constructed, strict=True):
        if made:
            kinds_of[c].add(str(k))

    def chosen(c: str) -> str:
        available = kinds_of[c]
        preferred = HARD if int(_stable_hash(c), 16) % 2 == 0 else RANDOM
        return preferred if preferred in available else next(iter(sorted(available)), "")

    picks = {c: chosen(c) for c in kinds_of}
    keep = ~constructed | np.array(
        [made and picks.get(c) == k for c, k, made in zip(comment, kind, constructed, strict=True)],
        dtype=bool,
    )
    return pairs[keep]


def with_context(pairs: pd.DataFrame, context: str) -> pd.DataFrame:
    """The same pairs as a CMS would send them: 'title_body', 'title' (body blanked) or 'none'."""
    out = pairs.copy()
    if context in ("title", "none"):
        out["article_text"] = ""
    if context == "none":
        out["article_title"] = ""
    if context not in ("title_body", "title", "none"):
        raise ValueError(f"unknown context {context!r}")
    return out
