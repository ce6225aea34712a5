"""Aref et al. (2020): Arabic tweets about Sunni/Shia sectarian topics, sectarian hate or not.

Origin: the Vanetik collection's ID12 sheet (3,236 tweets, mostly Gulf and Iraqi context).
Label: offensive 1 (sectarian hate: slurs such as رافضي/مجوس/ناصبي used as insults, calls to harm
a sect) → `abusive`, because sectarian slurs are abuse whatever the article; 0 → `on_topic`, which
here only means "not abusive": religious and political argument about the same sects, which the
model must learn is publishable. 4 rows have no label and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from serving.schema import ABUSIVE, ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require
from training.data.datasets.vanetik import collection_file, collection_records, offensive_label

SOURCE = "sectarian"
FILES = (collection_file(12),)
LABELS = {"1": ABUSIVE, "0": ON_TOPIC}
SITE = "twitter"


_label = offensive_label(SOURCE, LABELS, skip_unlabelled=True)


def load_sectarian(root: Path) -> Iterator[LabeledRecord]:
    """Every labelled tweet."""
    (path,) = require(root, *FILES)
    yield from finalize(collection_records(path, source=SOURCE, site=SITE, label_of=_label))
