"""MYC (Jbel et al. 2023): Moroccan YouTube comments from 50 channels, positive or negative sentiment.

Origin: `myc_moroccan_youtube/DATA_CLEANED.csv` (UTF-16 with BOM, columns sentence, polarity;
19,991 rows, about a quarter in Latin-script Darija). DATA_RAW.csv is not read (broken quoting).
Label: every comment → `on_topic`, meaning only "published, not labelled abusive". The corpus has
SENTIMENT labels, not abuse labels: polarity -1 (negative) is kept on the non-abusive side, because
an angry or critical comment is not abuse, but nobody checked those rows for insults, so the
negative half is a noisy negative. Training should filter and down-weight it (training/experiment/heads.py);
the polarity is kept in `comment_id` (`myc:neg_123`) so training can weigh the halves apart.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from serving.schema import ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require

SOURCE = "myc"
FILES = ("myc_moroccan_youtube/DATA_CLEANED.csv",)
LABELS = {"1": ON_TOPIC, "-1": ON_TOPIC}
POLARITY = {"1": "pos", "-1": "neg"}
SITE = "youtube"


def load_myc(root: Path) -> Iterator[LabeledRecord]:
    """Every comment of the cleaned file; polarity only in the comment id."""
    (path,) = require(root, *FILES)

    def raw() -> Iterator[LabeledRecord]:
        with path.open(encoding="utf-16", newline="") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=1):
                polarity = (row["polarity"] or "").strip()
                if polarity not in LABELS:
                    raise ValueError(f"{path}: row {number}: unknown polarity {polarity!r}")
                yield LabeledRecord(
                    text=row["sentence"] or "",
                    label=LABELS[polarity],
                    comment_id=f"{SOURCE}:{POLARITY[polarity]}_{number}",
                    site=SITE,
                    source=SOURCE,
                )

    yield from finalize(raw())
