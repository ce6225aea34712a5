"""`raqib score` on tiny inline exports: formats, column mapping, risk sort, located errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.conftest import POLITICS_BODY, POLITICS_TITLE, SPORT_TITLE
from training.cli.main import app

pytestmark = pytest.mark.unit

runner = CliRunner()

COMMENTS = [
    "الحكومة العراقية ضعيفة أمام الفصائل المسلحة",
    "للتواصل واتساب 0551234567 ربح مضمون يوميا",
    "يا حمار يا جاهل اسكت",
    "الهلال بطل الدوري هذا الموسم",
    "free followers visit bit.ly/abc123 now",
    "متى يكون الانسحاب من قواعد الأنبار؟",
]
ADDED = ["label", "action", "reasons", "model_version"]


def _rows() -> list[dict[str, str]]:
    return [
        {
            "comment_id": f"c{i}",
            "text": text,
            "article_id": "pol" if i % 2 else "sport",
            "article_title": POLITICS_TITLE if i % 2 else SPORT_TITLE,
            "article_text": POLITICS_BODY if i % 2 else "",
        }
        for i, text in enumerate(COMMENTS)
    ]


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _score(*args: str):
    return runner.invoke(app, ["score", *args])


def _labels(bundle: Path) -> list[str]:
    return json.loads((bundle / "metadata.json").read_text(encoding="utf-8"))["labels"]


def _check_scored(rows: list[dict], labels: list[str], inputs: list[dict]) -> None:
    assert len(rows) == len(inputs)
    for row, source in zip(rows, inputs, strict=True):
        assert row["comment_id"] == source["comment_id"] and row["text"] == source["text"]
        assert all(column in row for column in ADDED)
        probabilities = [float(row[f"p_{label}"]) for label in labels]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
        assert row["label"] in labels and row["action"] in ("approve", "review", "reject")
        assert row["model_version"] == "0-test"


def test_csv_round_trip_adds_the_columns_beside_the_input(tiny_bundle, tmp_path) -> None:
    export = _write_csv(tmp_path / "export.csv", _rows())
    result = _score(str(export), "--model", str(tiny_bundle))
    assert result.exit_code == 0, result.output
    scored = tmp_path / "export.scored.csv"
    rows = _read_csv(scored)
    _check_scored(rows, _labels(tiny_bundle), _rows())
    header = next(csv.reader(scored.open(encoding="utf-8")))
    labels = _labels(tiny_bundle)
    assert header == [*_rows()[0], "label", *[f"p_{x}" for x in labels], "action", "reasons", "model_version"]
    spam = rows[1]
    assert spam["label"] == "spam" and spam["action"] != "approve" and "phone number" in spam["reasons"]
    assert "action × predicted label" in result.output and "rows/s" in result.output


def test_jsonl_round_trip_keeps_each_rows_keys(tiny_bundle, tmp_path) -> None:
    inputs = _rows()
    inputs[0]["likes"] = 3  # a column only some rows have, of another type
    export = _write_jsonl(tmp_path / "export.jsonl", inputs)
    out = tmp_path / "out" / "scored.jsonl"
    result = _score(str(export), "-o", str(out), "--model", str(tiny_bundle), "--no-explain")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    _check_scored(rows, _labels(tiny_bundle), inputs)
    assert rows[0]["likes"] == 3 and "likes" not in rows[1]
    assert rows[1]["reasons"].startswith("p(spam) = ")  # --no-explain: the deciding probability


def test_jsonl_to_csv_collects_every_column_first(tiny_bundle, tmp_path) -> None:
    inputs = _rows()
    inputs[-1]["likes"] = 7  # appears only on the last line
    export = _write_jsonl(tmp_path / "export.jsonl", inputs)
    out = tmp_path / "scored.csv"
    result = _score(str(export), "-o", str(out), "--model", str(tiny_bundle), "--chunk-size", "2")
    assert result.exit_code == 0, result.output
    rows = _read_csv(out)
    assert [r["likes"] for r in rows] == ["", "", "", "", "", "7"]


def test_parquet_round_trip_keeps_types_and_adds_float_probabilities(tiny_bundle, tmp_path) -> None:
    inputs = _rows()
    table = pa.Table.from_pylist([r | {"likes": i} for i, r in enumerate(inputs)])
    export = tmp_path / "export.parquet"
    pq.write_table(table, export, row_group_size=2)
    result = _score(str(export), "--model", str(tiny_bundle), "--chunk-size", "4")
    assert result.exit_code == 0, result.output
    scored = pq.read_table(tmp_path / "export.scored.parquet")
    assert scored.schema.field("likes").type == pa.int64()
    labels = _labels(tiny_bundle)
    assert all(scored.schema.field(f"p_{x}").type == pa.float64() for x in labels)
    _check_scored(scored.to_pylist(), labels, inputs)


def test_csv_to_parquet_and_parquet_to_jsonl(tiny_bundle, tmp_path) -> None:
    export = _write_csv(tmp_path / "export.csv", _rows())
    as_parquet = tmp_path / "scored.parquet"
    assert _score(str(export), "-o", str(as_parquet), "--model", str(tiny_bundle)).exit_code == 0
    back = tmp_path / "again.jsonl"
    result = _score(str(as_parquet), "-o", str(back), "--model", str(tiny_bundle), "--prefix", "v2_")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in back.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(COMMENTS) and rows[0]["v2_label"] == rows[0]["label"]


def test_added_columns_may_not_overwrite_input_columns(tiny_bundle, tmp_path) -> None:
    rows = [r | {"label": "on_topic"} for r in _rows()]
    export = _write_csv(tmp_path / "labelled.csv", rows)
    result = _score(str(export), "--model", str(tiny_bundle))
    assert result.exit_code == 2 and "already has column(s) label" in result.output
    assert not (tmp_path / "labelled.scored.csv").exists()


def _cms_rows() -> list[dict[str, str]]:
    return [
        {
            "comment_id": r["comment_id"],
            "body": r["text"],
            "story_id": r["article_id"],
            "story_title": r["article_title"],
            "story_body": r["article_text"],
            "site": "alghad",
        }
        for r in _rows()
    ]


def test_column_mapping_and_saved_mapping(tiny_bundle, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    export = _write_csv(tmp_path / "cms.csv", _cms_rows())
    mapped = [
        "--text-col",
        "body",
        "--article-title-col",
        "story_title",
        "--article-text-col",
        "story_body",
        "--article-id-col",
        "story_id",
    ]
    first = _score(str(export), "--model", str(tiny_bundle), *mapped, "--save-mapping", "alghad")
    assert first.exit_code == 0, first.output
    saved = tmp_path / "experiments" / "mappings" / "alghad.toml"
    assert 'text = "body"' in saved.read_text(encoding="utf-8")
    by_flags = _read_csv(tmp_path / "cms.scored.csv")
    again = _score(str(export), "-o", "again.csv", "--model", str(tiny_bundle), "--mapping", "alghad")
    assert again.exit_code == 0, again.output
    assert _read_csv(tmp_path / "again.csv") == by_flags
    by_path = _score(str(export), "-o", "p.csv", "--model", str(tiny_bundle), "--mapping", str(saved))
    assert by_path.exit_code == 0, by_path.output
    # The article columns reach the model: with them ignored the probabilities change.
    blind = _score(str(export), "-o", "blind.csv", "--model", str(tiny_bundle), "--text-col", "body")
    assert blind.exit_code == 0
    assert [r["p_off_topic"] for r in _read_csv(tmp_path / "blind.csv")] != [
        r["p_off_topic"] for r in by_flags
    ]


def test_missing_mapped_column_exits_2_naming_it_and_the_columns_present(tiny_bundle, tmp_path) -> None:
    export = _write_csv(tmp_path / "cms.csv", _cms_rows())
    result = _score(
        str(export), "--model", str(tiny_bundle), "--text-col", "body", "--article-title-col", "headline"
    )
    assert result.exit_code == 2
    assert "'headline' (for article_title)" in result.output
    assert "comment_id, body, story_id, story_title, story_body, site" in result.output
    no_text = _score(str(export), "--model", str(tiny_bundle))
    assert no_text.exit_code == 2 and "'text' (for text)" in no_text.output


def test_missing_saved_mapping_exits_2(tiny_bundle, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    export = _write_csv(tmp_path / "cms.csv", _cms_rows())
    result = _score(str(export), "--model", str(tiny_bundle), "--mapping", "nowhere")
    assert result.exit_code == 2 and "nowhere.toml not found" in result.output


def _risk(row: dict, labels: list[str]) -> float:
    return max(float(row[f"p_{x}"]) for x in labels if x != "on_topic")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_sort_by_risk_puts_likeliest_rejects_first(tiny_bundle, tmp_path, suffix) -> None:
    rows = _rows() * 5  # several chunks, so the k-way merge across runs is exercised
    for i, row in enumerate(rows):
        row["comment_id"] = f"c{i}"
    export = _write_csv(tmp_path / "export.csv", rows)
    out = tmp_path / f"sorted{suffix}"
    result = _score(
        str(export), "-o", str(out), "--model", str(tiny_bundle), "--sort", "risk", "--chunk-size", "4"
    )
    assert result.exit_code == 0, result.output
    if suffix == ".csv":
        scored = _read_csv(out)
    elif suffix == ".jsonl":
        scored = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    else:
        scored = pq.read_table(out).to_pylist()
    labels = _labels(tiny_bundle)
    risks = [_risk(r, labels) for r in scored]
    assert len(scored) == len(rows)
    assert risks == sorted(risks, reverse=True)
    assert sorted(r["comment_id"] for r in scored) == sorted(r["comment_id"] for r in rows)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # spill files cleaned up


def test_broken_utf8_names_the_line(tiny_bundle, tmp_path) -> None:
    export = _write_csv(tmp_path / "export.csv", _rows())
    data = export.read_bytes().split(b"\n")
    data[3] = data[3] + b" \xff\xfe"
    export.write_bytes(b"\n".join(data))
    result = _score(str(export), "--model", str(tiny_bundle))
    assert result.exit_code == 1
    assert "export.csv:4:" in result.output and "not valid UTF-8" in result.output
    assert not (tmp_path / "export.scored.csv").exists()


def test_bad_json_line_names_the_line(tiny_bundle, tmp_path) -> None:
    export = _write_jsonl(tmp_path / "export.jsonl", _rows())
    lines = export.read_text(encoding="utf-8").splitlines()
    lines.insert(2, '{"comment_id": "x", "text": "unterminated')
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = _score(str(export), "--model", str(tiny_bundle))
    assert result.exit_code == 1
    assert "export.jsonl:3:" in result.output and "invalid JSON" in result.output


def test_wrong_field_count_names_the_line_a_quoted_record_starts_on(tiny_bundle, tmp_path) -> None:
    export = tmp_path / "export.csv"
    export.write_text(
        'comment_id,text,article_title\nc1,"two\nlines",t\nc2,ok\nc3,fine,t\n', encoding="utf-8"
    )
    result = _score(str(export), "--model", str(tiny_bundle))
    assert result.exit_code == 1
    assert "export.csv:4:" in result.output and "2 fields where the header has 3" in result.output


def test_empty_text_fails_naming_line_and_field(tiny_bundle, tmp_path) -> None:
    rows = _cms_rows()
    rows[2]["body"] = "   "
    export = _write_csv(tmp_path / "cms.csv", rows)
    result = _score(str(export), "--model", str(tiny_bundle), "--text-col", "body")
    assert result.exit_code == 1
    assert "cms.csv:4: field 'body' empty text" in result.output


def test_skip_bad_rows_records_them_beside_the_output(tiny_bundle, tmp_path) -> None:
    rows = _rows()
    rows[1]["text"] = ""
    export = _write_jsonl(tmp_path / "export.jsonl", rows)
    with export.open("ab") as handle:
        handle.write(b'{"text": "\xff bad bytes"}\n')
        handle.write(b"[1, 2]\n")
        handle.write(b'{"comment_id": "last", "text": "\xd8\xa3\xd9\x87\xd9\x84\xd8\xa7"}\n')
    result = _score(str(export), "--model", str(tiny_bundle), "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    scored = [json.loads(line) for line in (tmp_path / "export.scored.jsonl").read_text().splitlines()]
    assert [r["comment_id"] for r in scored] == ["c0", "c2", "c3", "c4", "c5", "last"]
    errors_path = tmp_path / "export.scored.jsonl.errors.jsonl"
    errors = [json.loads(line) for line in errors_path.read_text(encoding="utf-8").splitlines()]
    assert [(e["line"], e["field"]) for e in errors] == [(2, "text"), (7, None), (8, None)]
    assert (
        errors[0]["comment_id"] == "c1" and "UTF-8" in errors[1]["error"] and "object" in errors[2]["error"]
    )
    assert "3 row(s) skipped" in result.output


def test_skip_bad_rows_drops_a_quoted_record_holding_a_broken_line(tiny_bundle, tmp_path) -> None:
    export = tmp_path / "export.csv"
    export.write_bytes(
        b'comment_id,text\nc1,"first line\nsecond \xff line"\nc2,fine comment\nc3,short,extra\n'
    )
    result = _score(str(export), "--model", str(tiny_bundle), "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert [r["comment_id"] for r in _read_csv(tmp_path / "export.scored.csv")] == ["c2"]
    errors_path = tmp_path / "export.scored.csv.errors.jsonl"
    lines = [json.loads(line)["line"] for line in errors_path.read_text().splitlines()]
    assert lines == [3, 5]


def test_unknown_suffix_and_bad_sort_are_usage_errors(tiny_bundle, tmp_path) -> None:
    export = _write_csv(tmp_path / "export.txt", _rows())
    assert _score(str(export), "--model", str(tiny_bundle)).exit_code == 2
    forced = _score(str(export), "--model", str(tiny_bundle), "--format", "csv")
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "export.scored.csv").exists()
    assert _score(str(export), "--model", str(tiny_bundle), "--format", "csv", "--sort", "age").exit_code == 2


def test_missing_bundle_fails(tmp_path) -> None:
    export = _write_csv(tmp_path / "export.csv", _rows())
    result = _score(str(export), "--model", str(tmp_path / "nope"))
    assert result.exit_code == 1 and "metadata.json" in result.output


def test_registry_uri_is_exported_to_a_temporary_bundle(tiny_bundle, tmp_path, monkeypatch) -> None:
    import shutil

    import training.registry.export

    calls = []

    def fake_export(name, output, *, alias=None, version=None, root=Path(".")):
        calls.append((name, alias, version))
        shutil.copytree(tiny_bundle, output)
        return {}

    monkeypatch.setattr(training.registry.export, "export_bundle", fake_export)
    export = _write_csv(tmp_path / "export.csv", _rows())
    result = _score(str(export), "--model", "models:/raqib-moderator@champion")
    assert result.exit_code == 0, result.output
    result = _score(str(export), "-o", str(tmp_path / "v3.csv"), "--model", "models:/raqib-moderator/3")
    assert result.exit_code == 0, result.output
    assert calls == [("raqib-moderator", "champion", None), ("raqib-moderator", None, "3")]
    assert _score(str(export), "--model", "models:/just-a-name").exit_code == 2
