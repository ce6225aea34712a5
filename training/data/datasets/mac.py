"""MAC (Garouani & Kharroubi 2022): 18,087 Moroccan tweets with sentiment and an MSA/dialect flag.

Origin: `mac_moroccan_tweets/MAC corpus.csv` (columns tweets, type, class). `type` is the sentiment
(positive, neutral, negative, mixed), `class` is standard/dialectal (12 rows misspell it
"diatectal"). Tweets rather than comments, so the least news-like of the published sources.
Label: every tweet → `on_topic`, meaning only "published, not labelled abusive". Negative and mixed
tweets stay on the non-abusive side (criticism is not abuse) but nobody checked them for insults:
they are noisy negatives (training/experiment/heads.py).
Sentiment is kept in `comment_id` (`mac:negative_17`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from serving.schema import ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require

SOURCE = "mac"
FILES = ("mac_moroccan_tweets/MAC corpus.csv",)
LABELS = {"positive": ON_TOPIC, "neutral": ON_TOPIC, "negative": ON_TOPIC, "mixed": ON_TOPIC}
SITE = "twitter"


def load_mac(root: Path) -> Iterator[LabeledRecord]:
    """Every tweet; sentiment only in the comment id."""
    (path,) = require(root, *FILES)

    def raw() -> Iterator[LabeledRecord]:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=1):
                sentiment = (row["type"] or "").strip()
                if sentiment not in LABELS:
                    raise ValueError(f"{path}: row {number}: unknown sentiment {sentiment!r}")
                yield LabeledRecord(
                    text=row["tweets"] or "",
                    label=LABELS[sentiment],
                    comment_id=f"{SOURCE}:{sentiment}_{number}",
                    site=SITE,
                    source=SOURCE,
                )

    yield from finalize(raw())
