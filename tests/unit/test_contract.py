"""The data contract: good records load, bad ones name file, line and field."""

import json
from pathlib import Path

import pytest

from serving.schema import DEFAULT_LABELS
from training.data.contract import (
    ContractError,
    LabeledRecord,
    read_records,
    records_fingerprint,
    write_jsonl,
)

pytestmark = pytest.mark.unit


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_reads_jsonl_and_csv_alike(tmp_path: Path) -> None:
    rows = [
        {"text": "تعليق جيد", "label": "on_topic", "article_id": "a1"},
        {"text": "buy now", "label": "spam"},
    ]
    from_jsonl = read_records(_jsonl(tmp_path / "x.jsonl", rows))
    (tmp_path / "x.csv").write_text(
        "text,label,article_id\nتعليق جيد,on_topic,a1\nbuy now,spam,\n", encoding="utf-8"
    )
    from_csv = read_records(tmp_path / "x.csv")
    assert from_jsonl == from_csv
    assert from_jsonl[0].article_id == "a1" and from_jsonl[1].article_id is None


def test_extra_labels_are_allowed_unless_restricted(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "x.jsonl", [{"text": "بيع عقار", "label": "promo"}])
    assert read_records(path)[0].label == "promo"
    with pytest.raises(ContractError) as info:
        read_records(path, allowed_labels=DEFAULT_LABELS)
    assert info.value.line == 1 and info.value.field == "label" and "unknown label" in str(info.value)


@pytest.mark.parametrize(
    ("content", "line", "field", "message"),
    [
        ('{"text": "ok", "label": "spam"}\n{"text": "", "label": "spam"}\n', 2, "text", "empty text"),
        ('{"text": "ok"}\n', 1, "label", "missing label"),
        ('{"text": "ok", "label": "Spam!"}\n', 1, "label", "lower_snake_case"),
        ('{"body": "ok", "label": "spam"}\n', 1, "body", "unknown column"),
        ('{"text": "ok", "label": "spam", "site": ["x"]}\n', 1, "site", "expected a string"),
        ('{"text": "ok", "label": "spam"}\n{not json\n', 2, None, "invalid JSON"),
        ('{"text": 5, "label": "spam"}\n', 1, "text", "not a string"),
    ],
)
def test_bad_jsonl_records_are_located(
    tmp_path: Path, content: str, line: int, field: str | None, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ContractError) as info:
        read_records(path)
    assert info.value.line == line
    assert info.value.field == field
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_broken_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "ok", "label": "spam"}\n{"text": "\xff\xfe", "label": "spam"}\n')
    with pytest.raises(ContractError, match="UTF-8") as info:
        read_records(path)
    assert info.value.line == 2


def test_csv_without_text_column_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("body,label\nhello,spam\n", encoding="utf-8")
    with pytest.raises(ContractError) as info:
        read_records(path)
    assert info.value.field == "text" and info.value.line == 1


def test_csv_line_numbers_count_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text('text,label\n"two\nlines",spam\n"",spam\n', encoding="utf-8")
    with pytest.raises(ContractError) as info:
        read_records(path)
    assert info.value.line == 4 and info.value.field == "text"


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(ContractError, match="unsupported file type"):
        read_records(path)


def test_write_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    records = [LabeledRecord(text="نص", label="on_topic", comment_id="c1", source="t")]
    first = write_jsonl(records, tmp_path / "a.jsonl")
    second = write_jsonl(read_records(tmp_path / "a.jsonl"), tmp_path / "b.jsonl")
    assert first == second == records_fingerprint(records)
