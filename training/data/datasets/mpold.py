"""MPOLD: Arabic reader comments on news outlets' Twitter/Facebook/YouTube posts (offensive or not).

Label: `Offensive` → `abusive`, `Non-Offensive` → `on_topic`. There is no parent post or article.
Note that `on_topic` here only means "not offensive": nobody checked relevance.
The corpus authors replaced links with `<url>` and users with `@User.IDX`. These placeholders
become the serving masks (`xxurl`, `xxuser`), which is what `normalize` makes of a real link or
mention. They would otherwise be an MPOLD marker: `@User.IDX` is in almost every Twitter row.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from serving.schema import ABUSIVE, ON_TOPIC
from serving.text.normalize import MENTION_TOKEN, URL_TOKEN
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require

SOURCE = "mpold"
FILES = ("mpold_arabic_news_comments/mpold_4000.csv",)
LABELS = {"Offensive": ABUSIVE, "Non-Offensive": ON_TOPIC}
PLACEHOLDERS = {"<url>": URL_TOKEN, "@User.IDX": MENTION_TOKEN}


def unmask(text: str) -> str:
    """Corpus anonymisation placeholders → the serving mask tokens."""
    for placeholder, token in PLACEHOLDERS.items():
        text = text.replace(placeholder, token)
    return text


def load_mpold(root: Path) -> Iterator[LabeledRecord]:
    """All 4,000 comments; site is the platform, lower-cased."""
    (path,) = require(root, *FILES)

    def raw() -> Iterator[LabeledRecord]:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                label = row["Majority_Label"].strip()
                if label not in LABELS:
                    raise ValueError(f"{path}: unknown Majority_Label {label!r}")
                yield LabeledRecord(
                    text=unmask(row["Comment"]),
                    label=LABELS[label],
                    comment_id=f"{SOURCE}:{row['Id'].strip()}",
                    site=row["Platform"].strip().lower() or None,
                    source=SOURCE,
                )

    yield from finalize(raw())
