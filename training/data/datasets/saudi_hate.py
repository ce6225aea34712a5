"""Hate Speech Dataset for the Saudi Dialect (Alhazmi 2023, Mendeley c2jpnv9yk6): tweets, hate or not.

Origin: the Vanetik collection's ID16 sheet (23,537 tweets; the header is on the sheet's second
row). The text was stored as Windows-1256 bytes read as Windows-1252 (mojibake such as
"ÇáÐßæÑ"); `repair` re-encodes each character to its byte and decodes as cp1256. Five bytes
(0x81 پ, 0x8D چ, 0x8F ڈ, 0x90 گ, 0x9D ZWNJ) are undefined in cp1252 and were kept as C1 control
characters, which a strict `.encode("cp1252")` rejects (165 rows); they are mapped byte-for-byte.
Characters outside both code pages (emoji) pass through unchanged.
Label: 1 (hate: insults and attacks on a person or group) → `abusive`; 0 → `on_topic`, which here
only means "not abusive". 21 texts labelled both ways are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from serving.schema import ABUSIVE, ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require
from training.data.datasets.vanetik import collection_file, collection_records, offensive_label

SOURCE = "saudi_hate"
FILES = (collection_file(16),)
LABELS = {"1": ABUSIVE, "0": ON_TOPIC}
SITE = "twitter"
HEADER_ROW = 1


def _byte_of(ch: str) -> bytes | None:
    try:
        return ch.encode("cp1252")
    except UnicodeEncodeError:
        code = ord(ch)
        return bytes([code]) if 0x80 <= code <= 0x9F else None


def repair(text: str) -> str:
    """Undo the cp1256→cp1252 mojibake; a character with no byte is kept as it is."""
    out: list[str] = []
    pending = bytearray()
    for ch in text:
        b = _byte_of(ch)
        if b is None:
            if pending:
                out.append(pending.decode("cp1256", errors="replace"))
                pending.clear()
            out.append(ch)
        else:
            pending.extend(b)
    if pending:
        out.append(pending.decode("cp1256", errors="replace"))
    return "".join(out)


_label = offensive_label(SOURCE, LABELS)


def load_saudi_hate(root: Path) -> Iterator[LabeledRecord]:
    """Every labelled tweet, text repaired."""
    (path,) = require(root, *FILES)
    yield from finalize(
        collection_records(
            path, source=SOURCE, site=SITE, label_of=_label, header_row=HEADER_ROW, text_of=repair
        )
    )
