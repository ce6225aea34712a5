"""One Million Posts (DER STANDARD, German): posts that moderators annotated for OffTopic.

Optional and excluded by default: the data is German and licensed CC BY-NC-SA 4.0, and the
article text is missing. Build it only with `--include omp`.
Label: OffTopic 1 → `off_topic`, 0 → `on_topic`. Posts that were not annotated for OffTopic are
skipped. text = Headline + Body. The article id is `omp:<ID_Article>`, with no title or text.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from serving.schema import OFF_TOPIC, ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, iso_datetime, require

SOURCE = "omp"
FILES = ("omp_one_million_posts_labeled/posts_labeled_wide.csv",)
LABELS = {"1": OFF_TOPIC, "0": ON_TOPIC}
SITE = "derstandard"


def load_omp(root: Path) -> Iterator[LabeledRecord]:
    """Posts annotated for OffTopic (user ids are never read)."""
    (path,) = require(root, *FILES)

    def raw() -> Iterator[LabeledRecord]:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                value = (row.get("OffTopic") or "").strip()
                if value not in LABELS:
                    continue
                parts = [(row.get("Headline") or "").strip(), (row.get("Body") or "").strip()]
                yield LabeledRecord(
                    text="\n".join(p for p in parts if p),
                    label=LABELS[value],
                    comment_id=f"{SOURCE}:{row['ID_Post'].strip()}",
                    article_id=f"omp:{row['ID_Article'].strip()}",
                    site=SITE,
                    source=SOURCE,
                    created_at=iso_datetime(row.get("CreatedAt")),
                )

    yield from finalize(raw())
