"""OSACT2020 / OffensEval-2020 Arabic: 10,000 tweets sampled with the vocative "يا", OFF or NOT_OFF.

Origin: Mubarak et al. (OSACT4 shared task, LREC 2020) = the Arabic part of OffensEval-2020. The
data is in two shared folders; we read ONE copy: the collection's ID5 sheet, which holds all
10,000 tweets (train 7,000 + dev 1,000 + the 2,000 test tweets the `osact2020_offenseval2020_arabic`
folder does not have). We checked it against that folder before choosing it: every one of the
7,966 texts present in both carries the same label in both (0 disagreements). Reading the OSACT
folder as well would only add duplicates. The 6 rows without a label are skipped.

Label: offensive 1 (OFF: insults, attacks, vulgar language; includes the hate-speech subset)
→ `abusive`; 0 (NOT_OFF) → `on_topic`, which here only means "not abusive" (no relevance was
judged). Because every tweet contains "يا", both classes address someone: this is the set that
teaches "يا فلان" alone is not abuse.
The corpus placeholders `@USER`, `URL` and `<LF>` become the serving masks and a newline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from serving.schema import ABUSIVE, ON_TOPIC
from serving.text.normalize import MENTION_TOKEN, URL_TOKEN
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require
from training.data.datasets.vanetik import collection_file, collection_records, offensive_label

SOURCE = "osact2020"
FILES = (collection_file(5),)
LABELS = {"1": ABUSIVE, "0": ON_TOPIC}
SITE = "twitter"
_URL_PLACEHOLDER = re.compile(r"(?<![A-Za-z])URL(?![A-Za-z])")


def unmask(text: str) -> str:
    """OSACT placeholders → serving masks (`@USER` → xxuser, `URL` → xxurl, `<LF>` → newline)."""
    text = text.replace("<LF>", "\n").replace("@USER", MENTION_TOKEN)
    return _URL_PLACEHOLDER.sub(URL_TOKEN, text)


_label = offensive_label(SOURCE, LABELS, skip_unlabelled=True)


def load_osact2020(root: Path) -> Iterator[LabeledRecord]:
    """All labelled tweets; texts labelled both ways are dropped."""
    (path,) = require(root, *FILES)
    yield from finalize(collection_records(path, source=SOURCE, site=SITE, label_of=_label, text_of=unmask))
