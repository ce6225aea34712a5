"""Shared helpers for the public-corpus loaders: scrubbing, clean-up, de-duplication, dates.

Every loader yields its records through `finalize`, so all sources get the same treatment:
e-mail addresses masked in every text field, surrounding whitespace stripped, empty texts
dropped, exact (text, article_id, label) duplicates removed and comment ids made unique.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from serving.text.normalize import EMAIL_TOKEN
from training.data.contract import LabeledRecord

ENV_VAR = "RAQIB_DATASETS"
DEFAULT_RELATIVE_ROOT = Path("..") / "shared" / "datasets"

# The plain form with any word characters in the domain (so Arabic-script addresses go too) and
# the "name [at] host . com" obfuscation. A bare " @ " is left alone: readers write it for "at".
_EMAIL_LOOSE = re.compile(r"[\w.+\-]+\s*(?:\[at\]|\(at\))\s*[\w\-]+(?:\s*\.\s*[a-z]{2,})+", re.IGNORECASE)
_EMAIL_PLAIN = re.compile(r"[\w.+\-]+@[\w\-]+\.[\w.]+")
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_INVISIBLE_EDGES = "\ufeff\u200b\u200e\u200f"


def default_root() -> Path:
    """`$RAQIB_DATASETS`, else `../shared/datasets` relative to the working directory."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_RELATIVE_ROOT


def scrub(value: str | None) -> str | None:
    """Mask e-mail addresses with the serving token and strip surrounding whitespace."""
    if value is None:
        return None
    return _scrub(value)


@lru_cache(maxsize=8192)  # article bodies repeat once per comment
def _scrub(value: str) -> str | None:
    if "@" in value:
        value = _EMAIL_PLAIN.sub(EMAIL_TOKEN, value)
    lowered = value.lower()
    if "[at]" in lowered or "(at)" in lowered:
        value = _EMAIL_LOOSE.sub(EMAIL_TOKEN, value)
    value = value.strip().strip(_INVISIBLE_EDGES).strip()
    return value or None


def unescape_html(value: str) -> str:
    """Undo HTML entities and drop inline tags (`&amp;`, `<br />`) left by web exports."""
    return html.unescape(_HTML_TAG.sub(" ", value))


def iso_datetime(value: str | None, formats: Iterable[str] = ()) -> str | None:
    """ISO 8601 `YYYY-MM-DDTHH:MM:SS` from ISO text or one of `formats`; None if unparseable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    for fmt in formats:
        try:
            return datetime.strptime(value, fmt).isoformat(timespec="seconds")
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(value).isoformat(timespec="seconds")
    except ValueError:
        return None


def finalize(records: Iterable[LabeledRecord]) -> Iterator[LabeledRecord]:
    """Scrub, drop empty texts, de-duplicate (text, article_id, label), keep comment ids unique.

    `author` is forced to None: commenter names and addresses are personal data.
    Order is preserved (first occurrence wins), so output depends only on input order.
    """
    seen: set[tuple[str, str | None, str | None]] = set()
    used_ids: set[str] = set()
    for record in records:
        text = scrub(record.text)
        if text is None:
            continue
        key = (text, record.article_id, record.label)
        if key in seen:
            continue
        seen.add(key)
        comment_id = record.comment_id
        if comment_id is not None and comment_id in used_ids:
            # Upstream id reused for a different text (e.g. YouTube): suffix, deterministically.
            n = 2
            while f"{comment_id}~{n}" in used_ids:
                n += 1
            comment_id = f"{comment_id}~{n}"
        if comment_id is not None:
            used_ids.add(comment_id)
        yield replace(
            record,
            text=text,
            comment_id=comment_id,
            article_title=scrub(record.article_title),
            article_text=scrub(record.article_text),
            author=None,
        )


def dedupe_by(
    records: Iterable[LabeledRecord], key: Callable[[LabeledRecord], object]
) -> Iterator[LabeledRecord]:
    """Keep the first record for each value of `key` (used for normalised-text de-duplication)."""
    seen: set[object] = set()
    for record in records:
        k = key(record)
        if k in seen:
            continue
        seen.add(k)
        yield record


class CorpusFileMissing(FileNotFoundError):
    """A corpus file the loader needs is not under the datasets root."""


def require(root: Path, *relative: str) -> list[Path]:
    """The paths under `root`, or CorpusFileMissing naming the first one that is absent."""
    paths = [Path(root) / r for r in relative]
    for path in paths:
        if not path.is_file():
            raise CorpusFileMissing(str(path))
    return paths
