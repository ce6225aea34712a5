"""aoc_repaired: CONSTRUCTED off-topic pairs — real AOC comments re-paired with another article.

These labels are not human judgements. For a seeded ~50 % subset of the AOC comments, the
comment is paired with a DIFFERENT AOC article and labelled `off_topic`. How the partner is chosen:

1. Same split bucket. The partner lies in the same `split_bucket(group_key(article_id=...))` as the
   comment's own article. Evaluation groups records by the bucket of their article, and the
   repaired record carries the partner's article_id. So the comment text (on_topic under its own
   article in `aoc`) and the partner article both stay on the same side of any train/test split.
   No article and no comment can then appear on both sides.
2. Same site when possible. Candidates come from the same newspaper when that bucket has any.
   Otherwise the newspaper's style alone would tell the model "this pair is repaired".
   Preferences 2 and 3 each fall back to the whole bucket when nothing in it qualifies.
3. Commented articles first. Candidates are articles that have comments of their own, so every
   partner article also shows up in on_topic pairs. An article seen only in off_topic pairs would
   let a model learn the article instead of the comment–article relation.
4. Topically unrelated. From a few seeded candidates, take the one with the smallest overlap of
   normalised content words (tokens of length >= 3) with the comment's own article. The overlap is
   the overlap coefficient |A∩B| / min(|A|, |B|), so short articles are not favoured.

Everything is keyed on the seed and the comment's docid (never on iteration order), so the output
does not change from run to run.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from serving.schema import OFF_TOPIC
from serving.text.normalize import normalize
from training.data.contract import LabeledRecord
from training.data.datasets.aoc import FILES, AocArticle, load_aoc, load_articles
from training.data.datasets.common import finalize, require
from training.data.splits import group_key, split_bucket

SOURCE = "aoc_repaired"
DEFAULT_SEED = 13
FRACTION = 0.5
N_CANDIDATES = 3
MIN_TOKEN_LEN = 3


def article_bucket(article_id: str) -> int:
    """The split bucket evaluation assigns to records of this article."""
    return split_bucket(group_key(article_id, None, ""))


@lru_cache(maxsize=4096)
def _content_words(text: str) -> frozenset[str]:
    return frozenset(t for t in normalize(text).split() if len(t) >= MIN_TOKEN_LEN)


def content_words(article: AocArticle) -> frozenset[str]:
    return _content_words(f"{article.title or ''} {article.text}")


def overlap(a: frozenset[str], b: frozenset[str]) -> float:
    """Overlap coefficient of two word sets (0 when either is empty)."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def choose_partner(
    own: AocArticle,
    pool: list[AocArticle],
    rng: random.Random,
    n_candidates: int = N_CANDIDATES,
    commented_ids: frozenset[str] = frozenset(),
) -> AocArticle | None:
    """The least-overlapping of a few seeded candidates from `pool` (never `own`).

    Candidates are narrowed to articles in `commented_ids` and then to `own`'s site. Each
    narrowing step is skipped when nothing would be left.
    """
    others = [a for a in pool if a.article_id != own.article_id]
    commented = [a for a in others if a.article_id in commented_ids] if commented_ids else others
    commented = commented or others
    same_site = [a for a in commented if a.site == own.site]
    choices = same_site or commented
    if not choices:
        return None
    candidates = rng.sample(choices, min(n_candidates, len(choices)))
    own_words = content_words(own)
    # min() keeps the first of equal scores, and the candidate order comes from the seeded RNG.
    return min(candidates, key=lambda a: overlap(own_words, content_words(a)))


def load_aoc_repaired(root: Path, *, seed: int = DEFAULT_SEED) -> Iterator[LabeledRecord]:
    """AOC comments paired with a different, same-bucket article; label off_topic (constructed)."""
    require(root, *FILES)
    articles = load_articles(root)
    by_id = {a.article_id: a for a in articles.values()}
    by_bucket: dict[int, list[AocArticle]] = defaultdict(list)
    for article in sorted(by_id.values(), key=lambda a: a.article_id):
        by_bucket[article_bucket(article.article_id)].append(article)

    comments = list(load_aoc(root))
    commented_ids = frozenset(r.article_id for r in comments if r.article_id)

    def raw() -> Iterator[LabeledRecord]:
        for record in comments:
            assert record.comment_id is not None and record.article_id is not None
            docid = record.comment_id.split(":", 1)[1]
            rng = random.Random(f"{seed}:{SOURCE}:{docid}")
            if rng.random() >= FRACTION:
                continue
            own = by_id[record.article_id]
            pool = by_bucket[article_bucket(own.article_id)]
            partner = choose_partner(own, pool, rng, commented_ids=commented_ids)
            if partner is None:
                continue
            yield replace(
                record,
                label=OFF_TOPIC,
                comment_id=f"{SOURCE}:{docid}",
                article_id=partner.article_id,
                article_title=partner.title,
                article_text=partner.text,
                site=partner.site,
                source=SOURCE,
            )

    yield from finalize(raw())
