"""Fox News comments under 10 articles, labelled hateful or not (Gao & Huang 2017), English.

Label: 1 → `abusive`, 0 → `on_topic`. The article title becomes article_title and the one-line
meta summary becomes article_text. The article id is a hash of the title. `user`, `mentions`,
`prev` and `succ` are never read, because they hold commenter screen names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from serving.schema import ABUSIVE, ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require

SOURCE = "fox_news"
FILES = ("fox_news_comments_hateful/fox-news-comments.json",)
LABELS = {1: ABUSIVE, 0: ON_TOPIC}
SITE = "foxnews"


def fox_article_id(title: str) -> str:
    return "fox:" + hashlib.sha1(title.strip().encode("utf-8")).hexdigest()[:10]


def load_fox_news(root: Path) -> Iterator[LabeledRecord]:
    """One record per JSON line; the comment id is the line number."""
    (path,) = require(root, *FILES)

    def raw() -> Iterator[LabeledRecord]:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                row = json.loads(line)
                label = row.get("label")
                if isinstance(label, str) and label.strip().lstrip("-").isdigit():
                    label = int(label)
                if label not in LABELS:
                    raise ValueError(f"{path}:{number}: unknown label {label!r}")
                title = row.get("title") or ""
                yield LabeledRecord(
                    text=row.get("text") or "",
                    label=LABELS[label],
                    comment_id=f"{SOURCE}:{number}",
                    article_id=fox_article_id(title),
                    article_title=title,
                    article_text=row.get("meta"),
                    site=SITE,
                    source=SOURCE,
                )

    yield from finalize(raw())
