"""Arabic tweet ACCOUNTS labelled low-quality or not (Alharthi et al.): for leakage checks only.

Each row holds up to 15 cleaned tweets of ONE account, joined into one string. The label belongs
to the ACCOUNT, not to any tweet: 1 (spam/low-quality account) → `spam`, 0 → `on_topic`.
It is here to check corpus leakage: does a model flag Arabic tweets as spam just because they
are tweets? It is not comment training data, so exclude it from training.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from serving.schema import ON_TOPIC, SPAM
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require

SOURCE = "ar_tweet_accounts"
FILES = ("arabic_lowquality_spam_tweets/Users_Dataset_15Tweets.csv",)
LABELS = {"1": SPAM, "0": ON_TOPIC}
SITE = "twitter"


def load_ar_tweet_accounts(root: Path) -> Iterator[LabeledRecord]:
    """One record per distinct (account text, label); the file has no header row."""
    (path,) = require(root, *FILES)

    def raw() -> Iterator[LabeledRecord]:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for row_number, row in enumerate(csv.reader(handle), start=1):
                if not row:
                    continue
                if len(row) != 2 or row[1].strip() not in LABELS:
                    raise ValueError(f"{path}: row {row_number}: expected 'text,0|1'")
                yield LabeledRecord(
                    text=row[0],
                    label=LABELS[row[1].strip()],
                    comment_id=f"{SOURCE}:{row_number}",
                    site=SITE,
                    source=SOURCE,
                )

    yield from finalize(raw())
