"""Moroccan Darija Offensive Language Detection Dataset (Ibrahimi & Mourhir 2023): tweets + YouTube.

Origin: the Vanetik collection's ID11 sheet (20,402 rows). The collection README calls this sheet
OMCD; it is not (OMCD is `omcd`). Texts are Darija in Arabic AND Latin script, plus some French
and a few Spanish rows; emojis were verbalised by the authors as `*...*`.
Label: offensive 1 → `abusive`; 0 → `on_topic`, which here only means "not abusive".
The set is noisy: 3,911 texts repeat and 313 of them carry both labels. Those 313 are dropped;
the remaining repeats collapse in `finalize`. Latin-script rows are kept (Arabizi is in scope).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from serving.schema import ABUSIVE, ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require
from training.data.datasets.vanetik import collection_file, collection_records, offensive_label

SOURCE = "darija_offensive"
FILES = (collection_file(11),)
LABELS = {"1": ABUSIVE, "0": ON_TOPIC}


_label = offensive_label(SOURCE, LABELS)


def load_darija_offensive(root: Path) -> Iterator[LabeledRecord]:
    """Every labelled row whose text is not labelled both ways (site unknown: Twitter or YouTube)."""
    (path,) = require(root, *FILES)
    yield from finalize(collection_records(path, source=SOURCE, site=None, label_of=_label))
