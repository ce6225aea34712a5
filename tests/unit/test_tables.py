"""serving/tables.py, the one reader behind the contract, batch scoring, label import and the queue upload."""

from __future__ import annotations

import pytest

from serving.tables import (
    Lines,
    Row,
    TableError,
    csv_header,
    csv_rows,
    decode_text,
    json_document,
    jsonl_rows,
)

pytestmark = pytest.mark.unit


def _csv(data: bytes, **options: bool) -> list[Row | TableError]:
    lines = Lines.of_bytes(data)
    header = csv_header(lines)
    return list(csv_rows(lines, header, **options))


def test_a_csv_record_is_numbered_by_the_line_it_starts_on_and_the_bom_is_dropped() -> None:
    data = '\ufefftext,label\n"سطر أول\nوسطر ثان",spam\n\nok,on_topic\n'.encode()
    rows = _csv(data)
    assert [(r.line, r.values) for r in rows if isinstance(r, Row)] == [
        (2, {"text": "سطر أول\nوسطر ثان", "label": "spam"}),
        (5, {"text": "ok", "label": "on_topic"}),
    ]


def test_a_bad_row_is_an_error_in_its_place_and_reading_goes_on() -> None:
    data = b"text,label\na,b,c\n\xff\xfe,spam\nfine,on_topic\n"
    rows = _csv(data)
    assert [(type(r).__name__, r.line) for r in rows] == [("TableError", 2), ("TableError", 3), ("Row", 4)]
    wide, undecodable = rows[0], rows[1]
    assert isinstance(wide, TableError) and wide.code == "invalid_csv" and "3 fields" in wide.message
    assert isinstance(undecodable, TableError) and undecodable.code == "invalid_encoding"


def test_short_rows_are_refused_unless_allowed() -> None:
    data = b"text,label,site\nonly-text,spam\n"
    (strict,) = _csv(data)
    assert isinstance(strict, TableError)
    (lenient,) = _csv(data, short_rows=True)
    assert isinstance(lenient, Row) and lenient.values == {"text": "only-text", "label": "spam"}


def test_an_empty_file_has_no_header() -> None:
    with pytest.raises(TableError) as raised:
        csv_header(Lines.of_bytes(b""))
    assert raised.value.code == "missing_header" and raised.value.line == 1


def test_jsonl_rows_keep_objects_and_name_bad_lines() -> None:
    data = b'{"text": "a"}\n\n[1, 2]\n{"text": \n{"text": "b"}\n'
    rows = list(jsonl_rows(Lines.of_bytes(data)))
    assert [(type(r).__name__, r.line) for r in rows] == [
        ("Row", 1),
        ("TableError", 3),
        ("TableError", 4),
        ("Row", 5),
    ]
    assert [r.code for r in rows if isinstance(r, TableError)] == ["invalid_type", "invalid_json"]


def test_a_lone_carriage_return_ends_a_line_only_when_asked() -> None:
    data = b'{"a": 1}\r{"a": 2}\n'
    assert len(list(jsonl_rows(Lines.of_bytes(data, universal_newlines=True)))) == 2
    (joined,) = list(jsonl_rows(Lines.of_bytes(data)))
    assert isinstance(joined, TableError)


def test_whole_documents_name_the_line_of_their_first_problem() -> None:
    assert json_document('\ufeff[{"text": "نص"}]'.encode()) == [{"text": "نص"}]
    with pytest.raises(TableError) as raised:
        decode_text(b"ok\nstill ok\n\xff bad\n")
    assert (raised.value.code, raised.value.line) == ("invalid_encoding", 3)
    with pytest.raises(TableError) as raised:
        json_document(b'[\n{"text": 1},\n{oops}\n]')
    assert (raised.value.code, raised.value.line) == ("invalid_json", 3)
