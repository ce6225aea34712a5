"""SemEval-2015 Task 3 Arabic cQA (shared half of the dev set): answers scored against a question.

Label: `direct` / `related` → `on_topic`; `irrelevant` → `off_topic`. Irrelevant answers were
taken from other questions, so they are off-topic relative to this question. That is real data,
but it is not a reader comment. Parent = the question (subject as title, body as text).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from serving.schema import OFF_TOPIC, ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require

SOURCE = "semeval2015"
FILES = ("semeval2015_t3_arabic_cqa_half/pairs.shared-half.csv",)
LABELS = {"direct": ON_TOPIC, "related": ON_TOPIC, "irrelevant": OFF_TOPIC}
SITE = "islamweb"


def load_semeval2015(root: Path) -> Iterator[LabeledRecord]:
    """Question–answer pairs of the shared half; unknown labels raise ValueError."""
    (path,) = require(root, *FILES)

    def raw() -> Iterator[LabeledRecord]:
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                label = row["label"].strip()
                if label not in LABELS:
                    raise ValueError(f"{path}: unknown SemEval label {label!r}")
                qid, cid = row["qid"].strip(), row["cid"].strip()
                yield LabeledRecord(
                    text=row["answer_text"],
                    label=LABELS[label],
                    comment_id=f"{SOURCE}:{qid}_{cid}",
                    article_id=f"semeval:{qid}",
                    article_title=row["qsubject"],
                    article_text=row["qbody"],
                    site=SITE,
                    source=SOURCE,
                )

    yield from finalize(raw())
