"""Shared reader for the spreadsheets of the Vanetik et al. offensive-language collection.

`arabic_offensive_collection_vanetik/` re-publishes several earlier Arabic abuse corpora in one
layout: one sheet per corpus, a `text` column, an `offensive` column (0/1, blank when the
collection authors had no label) and sparse taxonomy columns ('null' = not annotated). Each corpus
gets its own loader module (alakrot_youtube, darija_offensive, letmi, egyptian_tweets, sectarian,
mlma, saudi_hate, osact2020); this module only reads rows, it decides no label.

Not loaded from the collection on purpose: ID10 (a second copy of OMCD, loaded from its own
folder by `omcd`), ID9/ID15 (copies of MPOLD and OSACT), ID3/ID6/ID8 (not in the shared folder).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from training.data.contract import LabeledRecord
from training.data.datasets.xlsx import read_table

FOLDER = "arabic_offensive_collection_vanetik"


def collection_file(dataset_id: int) -> str:
    """Path of one corpus of the collection, relative to the datasets root."""
    return f"{FOLDER}/arabic_off_lang_dataset_ID{dataset_id}.xlsx"


@dataclass(frozen=True, slots=True)
class CollectionRow:
    """One spreadsheet row: its 1-based data row number, text, 0/1 label and other columns."""

    number: int
    text: str
    offensive: str | None
    extra: dict[str, str | None]


def read_collection(path: Path, header_row: int = 0) -> Iterator[CollectionRow]:
    """Rows with a non-blank text; `offensive` is '0', '1' or None (blank / unlabelled)."""
    header, rows = read_table(path, header_row=header_row)
    try:
        text_col, label_col = header.index("text"), header.index("offensive")
    except ValueError as exc:
        raise ValueError(f"{path}: expected 'text' and 'offensive' columns, got {header}") from exc
    for number, row in enumerate(rows, start=1):
        text = row[text_col]
        if text is None or not text.strip():
            continue  # ID7 has ~1,700 blank trailing rows; ID2/ID14 a handful
        label = (row[label_col] or "").strip() or None
        if label is not None and label.endswith(".0"):
            label = label[:-2]
        extra = {name: row[i] for i, name in enumerate(header) if name and i not in (text_col, label_col)}
        yield CollectionRow(number=number, text=text, offensive=label, extra=extra)


def conflicting_texts(rows: list[CollectionRow]) -> set[str]:
    """Texts (stripped) that appear with both labels in one corpus: dropped, not guessed."""
    seen: dict[str, set[str | None]] = {}
    for row in rows:
        seen.setdefault(row.text.strip(), set()).add(row.offensive)
    return {text for text, labels in seen.items() if len(labels - {None}) > 1}


def offensive_label(
    source: str, labels: dict[str, str], *, skip_unlabelled: bool = False
) -> Callable[[CollectionRow], str | None]:
    """`label_of` for a sheet whose `offensive` column maps through `labels`.

    An unknown value is an error naming the row; an empty one is skipped when the sheet has
    unlabelled rows (`skip_unlabelled`), an error otherwise.
    """

    def label_of(row: CollectionRow) -> str | None:
        if row.offensive is None and skip_unlabelled:
            return None
        if row.offensive not in labels:
            raise ValueError(f"{source}: row {row.number}: unknown label {row.offensive!r}")
        return labels[row.offensive]

    return label_of


def collection_records(
    path: Path,
    *,
    source: str,
    site: str | None,
    label_of: Callable[[CollectionRow], str | None],
    header_row: int = 0,
    text_of: Callable[[str], str] = lambda text: text,
) -> Iterator[LabeledRecord]:
    """Canonical records of one corpus (before `finalize`).

    `label_of` maps a row to a canonical label or None to skip it; a text the corpus labels both
    ways is skipped too. `text_of` repairs or unmasks the text.
    """
    rows = list(read_collection(path, header_row=header_row))
    conflicts = conflicting_texts(rows)
    for row in rows:
        if row.text.strip() in conflicts:
            continue
        label = label_of(row)
        if label is None:
            continue
        yield LabeledRecord(
            text=text_of(row.text),
            label=label,
            comment_id=f"{source}:{row.number}",
            site=site,
            source=source,
        )
