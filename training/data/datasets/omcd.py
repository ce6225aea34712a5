"""OMCD: Offensive Moroccan Comments Dataset, YouTube comments in Darija (Essefar et al. 2023).

Origin: `omcd_moroccan_youtube/` train.csv + test.csv (8,024 comments, Arabic script). The same
corpus is also in the Vanetik collection as ID10; that copy is NOT read (one copy only).
Label: off=1 (insult, vulgarity, hate, threats) → `abusive`; off=0 → `on_topic`, which here only
means "not abusive". The videos are about crime and vice news, so the non-abusive side is full of
heated Moroccan commentary: exactly the negatives the old model lacked.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from serving.schema import ABUSIVE, ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require

SOURCE = "omcd"
FOLDER = "omcd_moroccan_youtube"
SPLITS = ("train", "test")
FILES = tuple(f"{FOLDER}/{split}.csv" for split in SPLITS)
LABELS = {"1": ABUSIVE, "0": ON_TOPIC}
SITE = "youtube"


def load_omcd(root: Path) -> Iterator[LabeledRecord]:
    """Both splits; a text labelled both ways is dropped."""
    paths = require(root, *FILES)
    rows: list[tuple[str, str, str]] = []
    for split, path in zip(SPLITS, paths, strict=True):
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                label = (row["off"] or "").strip()
                if label not in LABELS:
                    raise ValueError(f"{path}: index {row['']}: unknown label {label!r}")
                rows.append((f"{split}_{row[''].strip()}", row["comment"] or "", label))
    labels_of: dict[str, set[str]] = {}
    for _, text, label in rows:
        labels_of.setdefault(text.strip(), set()).add(label)

    def raw() -> Iterator[LabeledRecord]:
        for row_id, text, label in rows:
            if len(labels_of[text.strip()]) > 1:
                continue
            yield LabeledRecord(
                text=text,
                label=LABELS[label],
                comment_id=f"{SOURCE}:{row_id}",
                site=SITE,
                source=SOURCE,
            )

    yield from finalize(raw())
