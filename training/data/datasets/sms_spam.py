"""SMS Spam Collection v.1 (English text messages).

Label: `spam` → `spam`, `ham` → `on_topic`. There is no parent text. The mirror added a header
line (`Label<TAB>SMS`); it is skipped. Texts are de-duplicated. The comment id is the line number
in the file. SMS is not comment spam: it only adds spam vocabulary, so weight it low.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from serving.schema import ON_TOPIC, SPAM
from training.data.contract import LabeledRecord
from training.data.datasets.common import dedupe_by, finalize, require, unescape_html

SOURCE = "sms_spam"
FILES = ("sms_spam_collection/SMSSpamCollection",)
LABELS = {"spam": SPAM, "ham": ON_TOPIC}
HEADER = ("label", "sms")


def load_sms_spam(root: Path) -> Iterator[LabeledRecord]:
    """One record per distinct message text (first occurrence kept)."""
    (path,) = require(root, *FILES)

    def raw() -> Iterator[LabeledRecord]:
        with path.open(encoding="utf-8", newline="") as handle:
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                label, sep, text = line.partition("\t")
                label = label.strip().lstrip("\ufeff")
                if number == 1 and (label.lower(), text.strip().lower()) == HEADER:
                    continue
                if not sep or label not in LABELS:
                    raise ValueError(f"{path}:{number}: expected 'ham|spam<TAB>text'")
                yield LabeledRecord(
                    text=unescape_html(text),
                    label=LABELS[label],
                    comment_id=f"{SOURCE}:{number}",
                    source=SOURCE,
                )

    yield from dedupe_by(finalize(raw()), lambda r: r.text)
