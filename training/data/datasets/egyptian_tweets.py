"""Mubarak, Darwish & Magdy (2017): Egyptian tweets from accounts that use obscene words, and replies.

Origin: the Vanetik collection's ID7 sheet (1,100 labelled rows after ~1,700 blank ones).
Label: offensive 1 (obscene or offensive in the original) → `abusive`; 0 (clean) → `on_topic`,
which here only means "not abusive". The 2 texts labelled both ways are dropped.
Small, but the only Egyptian-dialect tweet set with both classes from the same accounts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from serving.schema import ABUSIVE, ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require
from training.data.datasets.vanetik import collection_file, collection_records, offensive_label

SOURCE = "egyptian_tweets"
FILES = (collection_file(7),)
LABELS = {"1": ABUSIVE, "0": ON_TOPIC}
SITE = "twitter"


_label = offensive_label(SOURCE, LABELS)


def load_egyptian_tweets(root: Path) -> Iterator[LabeledRecord]:
    """Every labelled tweet."""
    (path,) = require(root, *FILES)
    yield from finalize(collection_records(path, source=SOURCE, site=SITE, label_of=_label))
