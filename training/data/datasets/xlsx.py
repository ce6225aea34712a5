"""Read the first worksheet of an .xlsx file with the standard library only (zipfile + XML).

The project does not depend on openpyxl, and the abuse corpora that ship as spreadsheets only need
their cell values: strings (shared or inline) and numbers. Formulas, styles and dates are not
interpreted; a numeric cell comes back as the text Excel stored ("1", "0", "1.0").
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from pathlib import Path

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_COLUMN = re.compile(r"^([A-Z]+)")
# Excel escapes control characters it cannot store in XML as _xHHHH_ (e.g. _x000D_ for a CR).
_EXCEL_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def column_index(ref: str) -> int:
    """'A1' -> 0, 'B7' -> 1, 'AA3' -> 26."""
    match = _COLUMN.match(ref)
    if match is None:
        raise ValueError(f"bad cell reference {ref!r}")
    index = 0
    for letter in match.group(1):
        index = index * 26 + (ord(letter) - ord("A") + 1)
    return index - 1


def unescape_excel(value: str) -> str:
    """Undo Excel's `_xHHHH_` escapes (a literal `_x000D_` left in text is a carriage return)."""
    if "_x" not in value:
        return value
    return _EXCEL_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)


def _text_of(element: ET.Element) -> str:
    """All <t> text under a shared-string or inline-string item (rich text runs concatenated)."""
    return "".join(t.text or "" for t in element.iter(f"{_NS}t"))


def _first_sheet_path(archive: zipfile.ZipFile) -> str:
    workbook = ET.fromstring(archive.read("xl/workbook.xml"))
    sheet = workbook.find(f"{_NS}sheets/{_NS}sheet")
    if sheet is None:
        raise ValueError("workbook has no sheet")
    rel_id = sheet.attrib[f"{_REL_NS}id"]
    rels = ET.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    for rel in rels:
        if rel.attrib.get("Id") == rel_id:
            target = rel.attrib["Target"].lstrip("/")
            return target if target.startswith("xl/") else f"xl/{target}"
    raise ValueError(f"workbook relation {rel_id} not found")


def read_rows(path: Path) -> Iterator[list[str | None]]:
    """Every row of the first sheet as a list of cell texts (None for an empty cell), in order.

    Rows keep their column positions (gaps are None); a row Excel did not store is skipped.
    """
    with zipfile.ZipFile(path) as archive:
        shared: list[str] = []
        if "xl/sharedStrings.xml" in archive.namelist():
            root = ET.fromstring(archive.read("xl/sharedStrings.xml"))
            shared = [_text_of(item) for item in root.iter(f"{_NS}si")]
        with archive.open(_first_sheet_path(archive)) as handle:
            for _event, element in ET.iterparse(handle, events=("end",)):
                if element.tag != f"{_NS}row":
                    continue
                cells: dict[int, str | None] = {}
                for cell in element.iter(f"{_NS}c"):
                    kind = cell.attrib.get("t")
                    if kind == "inlineStr":
                        value: str | None = _text_of(cell)
                    else:
                        raw = cell.find(f"{_NS}v")
                        value = raw.text if raw is not None else None
                        if kind == "s" and value is not None:
                            value = shared[int(value)]
                    if value is not None:
                        value = unescape_excel(value)
                    cells[column_index(cell.attrib["r"])] = value
                element.clear()
                width = max(cells) + 1 if cells else 0
                yield [cells.get(i) for i in range(width)]


def read_table(path: Path, header_row: int = 0) -> tuple[list[str], list[list[str | None]]]:
    """(header, data rows) with the header taken from row `header_row` (0-based) of the sheet."""
    rows = list(read_rows(path))
    if len(rows) <= header_row:
        raise ValueError(f"{path}: no header row {header_row}")
    header = [(h or "").strip() for h in rows[header_row]]
    data = [r + [None] * (len(header) - len(r)) for r in rows[header_row + 1 :]]
    return header, data
