"""YouTube Spam Collection (English comments under five music videos).

Label: CLASS 1 → `spam`, 0 → `on_topic` (ham). There is no parent text: only the video, and it
becomes the article id (`youtube:Psy`), so one video is one group. Commenter names are never read.
The CSVs hold HTML entities and `<br />`. These are decoded, because they come from the web export
and a real comment would not contain them.

One row of the Eminem file opens a quote it never closes. The CSV reader then reads the next five
rows, author names included, as that row's CONTENT, and gives the row the CLASS of the last one.
`split_glued` cuts such a row back into its comments, each with its own id, date and label.
The author field of every glued row is thrown away.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from serving.schema import ON_TOPIC, SPAM
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, iso_datetime, require, unescape_html

SOURCE = "youtube_spam"
FOLDER = "youtube_spam_collection"
FILES = tuple(
    f"{FOLDER}/Youtube0{i}-{name}.csv"
    for i, name in enumerate(("Psy", "KatyPerry", "LMFAO", "Eminem", "Shakira"), start=1)
)
LABELS = {"1": SPAM, "0": ON_TOPIC}
SITE = "youtube"
_VIDEO = re.compile(r"^Youtube\d+-(.+)\.csv$")
# A whole CSV row inside a CONTENT: newline, comment id, author, optional ISO date, comma.
_GLUED_ROW = re.compile(r"\n[\w\-]{20,},[^,\n]*,(?:\d{4}-\d\d-\d\dT[\d:.]+)?,")
_TRAILING_CLASS = re.compile(r"^(.*),([01])\s*$", re.DOTALL)


def split_glued(row: dict[str, str]) -> list[dict[str, str]]:
    """The row itself, or, when later rows were swallowed into CONTENT, each of them."""
    content = row["CONTENT"]
    if not _GLUED_ROW.search(content):
        return [row]
    lines = content.split("\n")
    first = _TRAILING_CLASS.match(lines[0])
    if not first:
        return [row]
    rows = [{**row, "CONTENT": first.group(1), "CLASS": first.group(2)}]
    for i, line in enumerate(lines[1:], start=1):
        parts = line.split(",", 3)
        if len(parts) < 4:
            rows[-1]["CONTENT"] += "\n" + line
            continue
        comment_id, _author, date, rest = parts
        last = i == len(lines) - 1
        match = None if last else _TRAILING_CLASS.match(rest)
        text, label = (match.group(1), match.group(2)) if match else (rest, row["CLASS"])
        rows.append({"COMMENT_ID": comment_id, "DATE": date, "CONTENT": text.strip('"'), "CLASS": label})
    return rows


def video_name(path: Path) -> str:
    """`Youtube01-Psy.csv` → `Psy`."""
    match = _VIDEO.match(path.name)
    if not match:
        raise ValueError(f"unexpected YouTube file name {path.name!r}")
    return match.group(1)


def load_youtube_spam(root: Path) -> Iterator[LabeledRecord]:
    """All five videos' comments, in file order."""
    paths = require(root, *FILES)

    def raw() -> Iterator[LabeledRecord]:
        for path in paths:
            video = video_name(path)
            with path.open(encoding="utf-8", newline="") as handle:
                for row in (r for raw_row in csv.DictReader(handle) for r in split_glued(raw_row)):
                    label = row["CLASS"].strip()
                    if label not in LABELS:
                        raise ValueError(f"{path}: unknown CLASS {label!r}")
                    yield LabeledRecord(
                        text=unescape_html(row["CONTENT"]),
                        label=LABELS[label],
                        comment_id=f"{SOURCE}:{row['COMMENT_ID'].strip()}",
                        article_id=f"youtube:{video}",
                        site=SITE,
                        source=SOURCE,
                        created_at=iso_datetime(row.get("DATE")),
                    )

    yield from finalize(raw())
