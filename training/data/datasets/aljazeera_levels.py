"""Aljazeera.net deleted comments (Mubarak et al. 2017) with BOTH language levels, for comparison.

Origin: `aljazeera_deleted_comments_mubarak2017/` (the same files as the product's
`aljazeera_deleted`, which keeps only the abusive levels). Every row was deleted by Aljazeera's
moderators; there is no kept comment from that site. Crowd workers then labelled the language.
Label: -1 (offensive) and -2 (obscene) → `abusive`; 0 ("clean": deleted, but not for its
language) → `on_topic`, which here only means "not abusive language". Those clean deletions are
the only same-site negatives that exist; they let the model see Aljazeera-style political
commentary on both sides of the label instead of only on the abusive side.
Whether to use this source at all (and at what weight) was measured by the abuse bench section
(experiments/RESULTS.md, "Abuse: leave-one-source-out"); the public config leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from serving.schema import ABUSIVE, ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets import aljazeera_deleted
from training.data.datasets.common import finalize, require

SOURCE = "aljazeera_levels"
FILES = aljazeera_deleted.FILES
LABELS = {"-1": ABUSIVE, "-2": ABUSIVE, "0": ON_TOPIC}


def load_aljazeera_levels(root: Path) -> Iterator[LabeledRecord]:
    """All rows of the three files with their language level mapped."""
    paths = require(root, *FILES)
    yield from finalize(aljazeera_deleted.level_records(paths, SOURCE, LABELS))
