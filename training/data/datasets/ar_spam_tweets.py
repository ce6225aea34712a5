"""Arabic low-quality / spam tweets (Alharthi et al., 2018 collection): positives only.

Label: every tweet → `spam`. What is changed:
- The retweet marker `RT @name:` is removed, and so is the `…` that the API added when it
  truncated a retweet. Both mark the corpus (a tweet), not spam. No genuine comment has them, so
  a model would learn "looks like a retweet" instead of "is spam". Links and hashtags are kept:
  they are real spam signals.
- A few rows of the CSV hold further rows glued into their text by broken quoting
  (`…\r\n<tweet id>,<date>,<text>`). Those are split back into separate tweets.
- Tweets are de-duplicated on their normalised text (most are retweets of the same advert).
The upstream ids went through a spreadsheet (`9.89E+17`), so ids are row numbers instead.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from serving.schema import SPAM
from serving.text.normalize import normalize
from training.data.contract import LabeledRecord
from training.data.datasets.common import dedupe_by, finalize, iso_datetime, require, unescape_html

SOURCE = "ar_spam_tweets"
FILES = ("arabic_lowquality_spam_tweets/2018_low-quality Tweets..csv",)
SITE = "twitter"
DATE_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S")

_RT_PREFIX = re.compile(r"^\s*RT\s+@\w+\s*:\s*")
_TRUNCATION = re.compile(r"\s*…\s*$")
# A row swallowed into the previous text: newline, 15–20 digit tweet id, date, then the text.
_GLUED_ROW = re.compile(r"\r?\n(\d{15,20}),(\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)?),")


def strip_retweet(text: str) -> str:
    """Drop a leading `RT @user:` and, on retweets, the API's trailing truncation `…`."""
    stripped = _RT_PREFIX.sub("", text, count=1)
    if stripped != text:
        stripped = _TRUNCATION.sub("", stripped)
    return stripped


def split_glued(text: str, created_at: str | None) -> list[tuple[str, str | None]]:
    """The row's own text plus any rows glued into it, each with its own timestamp."""
    parts: list[tuple[str, str | None]] = []
    pieces = _GLUED_ROW.split(text)
    # split() with 2 groups → [text, id, date, text, id, date, text, ...]
    parts.append((pieces[0], created_at))
    for i in range(1, len(pieces), 3):
        parts.append((pieces[i + 2], iso_datetime(pieces[i + 1], DATE_FORMATS)))
    return parts


def _clean(text: str) -> str:
    text = unescape_html(text).strip()
    # A glued row leaves the closing quote of the text before it.
    if text.endswith('"') and text.count('"') % 2 == 1:
        text = text[:-1]
    return strip_retweet(text)


def load_ar_spam_tweets(root: Path) -> Iterator[LabeledRecord]:
    """Distinct spam tweets (after RT stripping), in file order."""
    (path,) = require(root, *FILES)

    def raw() -> Iterator[LabeledRecord]:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for row_number, row in enumerate(csv.DictReader(handle), start=1):
                created_at = iso_datetime(row.get("created_at"), DATE_FORMATS)
                for k, (text, when) in enumerate(split_glued(row["text"] or "", created_at)):
                    suffix = "" if k == 0 else f"-{k + 1}"
                    yield LabeledRecord(
                        text=_clean(text),
                        label=SPAM,
                        comment_id=f"{SOURCE}:{row_number}{suffix}",
                        site=SITE,
                        source=SOURCE,
                        created_at=when,
                    )

    yield from dedupe_by(finalize(raw()), lambda r: normalize(r.text))
