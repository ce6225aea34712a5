"""Alakrot et al. (2018): YouTube comments on videos of Arab celebrities, offensive or not.

Origin: the Vanetik collection's ID4 sheet (15,050 comments, Iraqi, Gulf, Egyptian and Levantine
dialects; the only sizeable Iraqi/Gulf abuse data we have).
Label: offensive 1 (insults, vulgarity, abuse of the person in the video) → `abusive`;
0 → `on_topic`, which here only means "not abusive" (comments are about the video, nothing checked
relevance). 295 texts repeat; the 2 labelled both ways are dropped, other repeats by `finalize`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from serving.schema import ABUSIVE, ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require
from training.data.datasets.vanetik import collection_file, collection_records, offensive_label

SOURCE = "alakrot_youtube"
FILES = (collection_file(4),)
LABELS = {"1": ABUSIVE, "0": ON_TOPIC}
SITE = "youtube"


_label = offensive_label(SOURCE, LABELS)


def load_alakrot_youtube(root: Path) -> Iterator[LabeledRecord]:
    """Every labelled comment."""
    (path,) = require(root, *FILES)
    yield from finalize(collection_records(path, source=SOURCE, site=SITE, label_of=_label))
