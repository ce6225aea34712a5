"""`raqib import`: every format round-trips to canonical JSONL; bad rows are located; latest wins.

The export files below are written by the tests in each tool's documented shape, with made-up
comments; nothing is downloaded.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from training.cli.main import app
from training.data.contract import read_records
from training.data.labeled import resolved_labeled_records
from training.labels.importers import ImportOptions, import_export

pytestmark = pytest.mark.unit

runner = CliRunner()


def _import(tmp_path: Path, *args: str):
    return runner.invoke(app, ["import", *args, "--out-dir", str(tmp_path / "labeled")])


def _written(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "labeled").glob("*.jsonl"))


def _meta(jsonl: Path) -> dict:
    return json.loads(jsonl.with_name(jsonl.stem + ".meta.json").read_text(encoding="utf-8"))


def _only_records(tmp_path: Path) -> list:
    (path,) = _written(tmp_path)
    return read_records(path)


def _dump(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _choice(label: str, from_name: str = "label") -> dict:
    return {"from_name": from_name, "to_name": "text", "type": "choices", "value": {"choices": [label]}}


def _annotation(label: str, at: str, who: int = 1, cancelled: bool = False) -> dict:
    return {
        "id": who * 100,
        "completed_by": who,
        "result": [_choice(label)],
        "was_cancelled": cancelled,
        "created_at": at,
        "updated_at": at,
    }


# --- Label Studio -------------------------------------------------------------------------------


def _labelstudio_tasks() -> list[dict]:
    return [
        {
            "id": 101,
            "data": {"text": "الهلال بطل الدوري", "article_id": "sport-1", "article_title": "الهلال يفوز"},
            "annotations": [_annotation("on_topic", "2024-05-01T10:00:00.000000Z")],
            "predictions": [{"result": [_choice("spam")]}],  # model guesses are never imported
        },
        {
            "id": 102,
            "data": {"text": "واتساب 0551234567 ربح مضمون", "comment_id": "c-102", "site": "alghad"},
            "annotations": [
                _annotation("Ham", "2024-05-01T10:00:00Z", who=1),
                _annotation("Spam", "2024-05-03T09:00:00Z", who=2),
                _annotation("Ham", "2024-05-04T09:00:00Z", who=3, cancelled=True),
            ],
        },
        {"id": 103, "data": {"text": "لم يراجع بعد"}, "annotations": []},
    ]


def test_labelstudio_json_round_trip_takes_the_latest_annotation(tmp_path) -> None:
    export = _dump(tmp_path / "project-1.json", _labelstudio_tasks())
    result = _import(tmp_path, "labelstudio", str(export), "--map", "Ham=on_topic,Spam=spam")
    assert result.exit_code == 0, result.output
    records = _only_records(tmp_path)
    assert [(r.text, r.label) for r in records] == [
        ("الهلال بطل الدوري", "on_topic"),
        ("واتساب 0551234567 ربح مضمون", "spam"),
    ]
    assert records[0].article_id == "sport-1" and records[0].article_title == "الهلال يفوز"
    assert records[1].comment_id == "c-102" and records[1].site == "alghad"
    assert all(r.source == "import:labelstudio" for r in records)
    assert records[1].created_at is None  # the annotation time is not the comment's time
    meta = _meta(_written(tmp_path)[0])
    assert meta["counts"]["read"] == 3 and meta["counts"]["unlabelled"] == 1
    assert meta["counts"]["annotation_conflicts"] == 1 and meta["unlabelled"] == [f"{export}: task 3"]
    assert meta["decided_at"]["2"].startswith("2024-05-03T09:00")
    assert meta["format"] == "labelstudio" and len(meta["input_sha256"]) == 64
    assert "annotators disagree" in result.output and "took 'Spam'" in result.output


def test_labelstudio_several_choice_questions_need_choice_field(tmp_path) -> None:
    task = {
        "id": 1,
        "data": {"text": "تعليق"},
        "annotations": [{"result": [_choice("spam"), _choice("negative", "sentiment")]}],
    }
    export = _dump(tmp_path / "two.json", [task])
    result = _import(tmp_path, "labelstudio", str(export))
    assert result.exit_code == 1 and "two.json: task 1" in result.output and "--choice-field" in result.output
    chosen = _import(tmp_path, "labelstudio", str(export), "--choice-field", "label")
    assert chosen.exit_code == 0, chosen.output
    assert [r.label for r in _only_records(tmp_path)] == ["spam"]


def test_labelstudio_json_min_groups_annotations_of_one_task(tmp_path) -> None:
    rows = [
        {
            "id": 7,
            "text": "مباراة قوية",
            "article_id": "s1",
            "sentiment": "off_topic",
            "annotator": "a@x",
            "annotation_id": 1,
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "lead_time": 3.2,
        },
        {
            "id": 7,
            "text": "مباراة قوية",
            "article_id": "s1",
            "sentiment": ["on_topic"],
            "annotator": "b@x",
            "annotation_id": 2,
            "created_at": "2024-01-02T00:00:00Z",
            "updated_at": "2024-01-02T00:00:00Z",
            "lead_time": 1.0,
        },
        {"id": 8, "text": "free followers bit.ly/x", "sentiment": {"choices": ["spam"]}, "annotator": "a@x"},
        {"id": 9, "text": "no decision yet"},
    ]
    export = _dump(tmp_path / "min.json", rows)
    result = _import(tmp_path, "labelstudio", str(export))  # the choice column is found: sentiment
    assert result.exit_code == 0, result.output
    records = _only_records(tmp_path)
    assert [(r.text, r.label, r.article_id) for r in records] == [
        ("مباراة قوية", "on_topic", "s1"),
        ("free followers bit.ly/x", "spam", None),
    ]
    assert _meta(_written(tmp_path)[0])["counts"]["unlabelled"] == 1


def test_labelstudio_csv_export(tmp_path) -> None:
    export = tmp_path / "project.csv"
    with export.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "id", "label", "annotator", "annotation_id", "created_at", "updated_at"])
        writer.writerow(["يا حمار اسكت", "1", "abusive", "a", "1", "2024-01-01T00:00:00Z", ""])
        writer.writerow(["الله يحفظ البلاد", "2", '{"choices": ["on_topic"]}', "a", "2", "", ""])
        writer.writerow(["both", "3", '{"choices": ["spam", "abusive"]}', "a", "3", "", ""])
    result = _import(tmp_path, "labelstudio", str(export))
    assert result.exit_code == 1
    assert "project.csv:4: field 'label' several labels" in result.output and not _written(tmp_path)
    skipped = _import(tmp_path, "labelstudio", str(export), "--skip-invalid")
    assert skipped.exit_code == 0, skipped.output
    assert [r.label for r in _only_records(tmp_path)] == ["abusive", "on_topic"]
    assert _meta(_written(tmp_path)[0])["counts"]["invalid"] == 1


def test_labelstudio_ambiguous_choice_column_is_a_usage_error(tmp_path) -> None:
    export = _dump(tmp_path / "min.json", [{"id": 1, "text": "x", "label": "spam", "topic": "sport"}])
    result = _import(tmp_path, "labelstudio", str(export))
    assert result.exit_code == 2 and "label, topic" in result.output


# --- Argilla ------------------------------------------------------------------------------------


def test_argilla_flat_1x_and_2x_shapes(tmp_path) -> None:
    records = [
        {"text": "الحكومة ضعيفة", "label": "on_topic", "metadata": {"article_id": "pol-1"}},
        {"text": "اربح 5000 دولار", "label": ["spam"], "id": "r2"},
        {"inputs": {"text": "you are an idiot"}, "annotation": "abusive", "status": "Validated"},
        {"inputs": {"text": "discarded one"}, "annotation": "spam", "status": "Discarded"},
        {
            "id": "r5",
            "fields": {"text": "جماهير الهلال صنعت الفرق"},
            "metadata": {"article_id": "sport-1", "site": "youm7"},
            "responses": {
                "label": [
                    {
                        "value": "off_topic",
                        "user_id": "u1",
                        "status": "submitted",
                        "updated_at": "2024-03-01T00:00:00",
                    },
                    {
                        "value": "on_topic",
                        "user_id": "u2",
                        "status": "submitted",
                        "updated_at": "2024-03-02T00:00:00",
                    },
                    {"value": "spam", "user_id": "u3", "status": "draft"},
                ]
            },
            "status": "completed",
        },
        {
            "text": "check my channel",
            "label.responses": ["spam"],
            "label.responses.users": ["u1"],
            "label.responses.status": ["submitted"],
            "label.suggestion": "on_topic",
        },
        {"id": "r7", "fields": {"text": "pending"}, "responses": {}, "status": "pending"},
    ]
    export = _jsonl(tmp_path / "argilla.jsonl", records)
    result = _import(tmp_path, "argilla", str(export))
    assert result.exit_code == 0, result.output
    got = [(r.text, r.label, r.article_id, r.site) for r in _only_records(tmp_path)]
    assert got == [
        ("الحكومة ضعيفة", "on_topic", "pol-1", None),
        ("اربح 5000 دولار", "spam", None, None),
        ("you are an idiot", "abusive", None, None),
        ("جماهير الهلال صنعت الفرق", "on_topic", "sport-1", "youm7"),
        ("check my channel", "spam", None, None),
    ]
    counts = _meta(_written(tmp_path)[0])["counts"]
    assert counts["unlabelled"] == 2 and counts["annotation_conflicts"] == 1


def test_argilla_json_array_reports_record_index(tmp_path) -> None:
    export = _dump(tmp_path / "argilla.json", [{"text": "ok", "label": "spam"}, {"label": "spam"}])
    result = _import(tmp_path, "argilla", str(export))
    assert result.exit_code == 1
    assert "argilla.json: record 2: field 'text' missing" in result.output


# --- doccano ------------------------------------------------------------------------------------


def test_doccano_jsonl_keeps_ids_and_maps_labels(tmp_path) -> None:
    export = _jsonl(
        tmp_path / "doccano.jsonl",
        [
            {
                "id": 1,
                "text": "متى يكون الانسحاب؟",
                "label": ["relevant"],
                "article_id": "pol-1",
                "comment_id": "c1",
            },
            {"id": 2, "text": "اشترك في قناتي", "label": ["promo"], "Comments": []},
            {"id": 3, "text": "not yet labelled", "label": []},
        ],
    )
    result = _import(tmp_path, "doccano", str(export), "--map", "relevant=on_topic", "--map", "promo=spam")
    assert result.exit_code == 0, result.output
    records = _only_records(tmp_path)
    assert [(r.label, r.article_id, r.comment_id) for r in records] == [
        ("on_topic", "pol-1", "c1"),
        ("spam", None, None),
    ]
    assert all(r.source == "import:doccano" for r in records)


def test_unknown_label_and_malformed_line_are_located_and_nothing_is_written(tmp_path) -> None:
    export = tmp_path / "doccano.jsonl"
    export.write_text(
        '{"text": "fine", "label": ["spam"]}\n'
        '{"text": "typo", "label": ["spamm"]}\n'
        '{"text": "broken\n'
        '{"text": "Upper", "label": "Spam!"}\n',
        encoding="utf-8",
    )
    result = _import(tmp_path, "doccano", str(export))
    assert result.exit_code == 1
    assert f"{export}:2: field 'label' unknown label 'spamm'" in result.output
    assert "--map spamm=<label>" in result.output
    assert f"{export}:3: invalid JSON" in result.output
    assert f"{export}:4: field 'label'" in result.output
    assert "3 invalid row(s)" in result.output and not _written(tmp_path)
    skipped = _import(tmp_path, "doccano", str(export), "--skip-invalid")
    assert skipped.exit_code == 0
    assert [r.text for r in _only_records(tmp_path)] == ["fine"]
    meta = _meta(_written(tmp_path)[0])
    assert meta["counts"]["invalid"] == 3 and meta["counts"]["read"] == 4 and len(meta["problems"]) == 3


def test_map_to_an_unknown_label_is_a_usage_error(tmp_path) -> None:
    export = _jsonl(tmp_path / "d.jsonl", [{"text": "x", "label": ["a"]}])
    assert _import(tmp_path, "doccano", str(export), "--map", "a=promo").exit_code == 2
    extended = _import(tmp_path, "doccano", str(export), "--map", "a=promo", "--labels", "on_topic,promo")
    assert extended.exit_code == 0, extended.output
    assert [r.label for r in _only_records(tmp_path)] == ["promo"]


# --- CSV ----------------------------------------------------------------------------------------


def _cms_csv(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["cid", "body", "decision", "story", "headline", "posted", "moderated", "extra"])
        writer.writerow(
            ["1", "الهلال بطل", "ok", "s1", "الهلال يفوز", "2024-01-01T08:00", "2024-01-02T08:00", "x"]
        )
        writer.writerow(["2", "قرض سريع اتصل 0501112223", "spam", "s1", "الهلال يفوز", "", "", ""])
        writer.writerow(["3", "بدون قرار", "", "s1", "", "", "", ""])
    return path


def test_csv_import_with_column_options(tmp_path) -> None:
    export = _cms_csv(tmp_path / "cms.csv")
    columns = [
        "--text-col", "body", "--label-col", "decision", "--id-col", "cid", "--article-id-col", "story",
        "--article-title-col", "headline", "--created-col", "posted", "--decided-col", "moderated",
    ]  # fmt: skip
    result = _import(tmp_path, "csv", str(export), *columns, "--map", "ok=on_topic")
    assert result.exit_code == 0, result.output
    records = _only_records(tmp_path)
    assert [(r.comment_id, r.label, r.article_id, r.created_at) for r in records] == [
        ("1", "on_topic", "s1", "2024-01-01T08:00"),
        ("2", "spam", "s1", None),
    ]
    assert records[0].article_title == "الهلال يفوز" and records[0].source == "import:csv"
    assert _meta(_written(tmp_path)[0])["decided_at"] == {"1": "2024-01-02T08:00:00+00:00"}


def test_csv_import_reuses_a_score_mapping_and_names_missing_columns(tmp_path) -> None:
    export = _cms_csv(tmp_path / "cms.csv")
    mapping = tmp_path / "site.toml"
    mapping.write_text(
        '[columns]\ntext = "body"\ncomment_id = "cid"\narticle_id = "story"\n', encoding="utf-8"
    )
    result = _import(tmp_path, "csv", str(export), "--mapping", str(mapping), "--label-col", "decision")
    assert result.exit_code == 1 and "unknown label 'ok'" in result.output  # mapping worked, label did not
    missing = _import(tmp_path, "csv", str(export), "--text-col", "comment", "--label-col", "decision")
    assert missing.exit_code == 2
    assert "'comment' (for text)" in missing.output and "cid, body, decision" in missing.output
    wrong_format = _import(tmp_path, "doccano", str(export), "--text-col", "body")
    assert wrong_format.exit_code == 2 and "--text-col" in wrong_format.output


def test_csv_wrong_field_count_names_the_line(tmp_path) -> None:
    export = tmp_path / "cms.csv"
    export.write_text("text,label\nok,spam\nshort\nfine,on_topic\n", encoding="utf-8")
    result = _import(tmp_path, "csv", str(export))
    assert result.exit_code == 1 and f"{export}:3: 1 fields where the header has 2" in result.output


# --- feedback -----------------------------------------------------------------------------------


def test_feedback_export_is_validated_and_copied_keeping_its_source(tmp_path) -> None:
    rows = [
        {
            "comment_id": "c1",
            "text": "تعليق جيد",
            "label": "on_topic",
            "article_id": "a1",
            "source": "feedback",
        },
        {"comment_id": "c2", "text": "spam here", "label": "spam", "created_at": "2024-02-01T10:00:00"},
    ]
    export = _jsonl(tmp_path / "feedback.jsonl", rows)
    result = _import(tmp_path, "feedback", str(export))
    assert result.exit_code == 0, result.output
    records = _only_records(tmp_path)
    assert [r.source for r in records] == ["feedback", "import:feedback"]
    assert records[1].created_at == "2024-02-01T10:00:00"
    bad = _jsonl(tmp_path / "bad.jsonl", [{"text": "x", "label": "spam", "lable": "spam"}])
    failed = _import(tmp_path, "feedback", str(bad))
    assert failed.exit_code == 1 and f"{bad}:1: field 'lable' unknown column" in failed.output


# --- de-duplication, conflicts, append-only -----------------------------------------------------


def test_duplicates_within_and_across_imports_are_dropped(tmp_path) -> None:
    first = _jsonl(
        tmp_path / "one.jsonl",
        [
            {"text": "الهلال بطل الدوري", "label": ["on_topic"], "article_id": "s1"},
            {"text": "الهلالُ  بطلُ الدوري", "label": ["on_topic"], "article_id": "s1"},  # same once normalised
            {"text": "الهلال بطل الدوري", "label": ["on_topic"], "article_id": "s2"},  # another article
        ],
    )
    assert _import(tmp_path, "doccano", str(first)).exit_code == 0
    assert len(read_records(_written(tmp_path)[0])) == 2
    again = _import(tmp_path, "doccano", str(first))
    assert again.exit_code == 0, again.output
    assert "imported before" in again.output
    files = _written(tmp_path)
    assert len(files) == 2 and read_records(files[1]) == []
    assert _meta(files[1])["counts"]["duplicates_dropped"] == 3


def test_second_import_is_a_new_file_and_the_first_is_untouched(tmp_path) -> None:
    one = _jsonl(tmp_path / "one.jsonl", [{"text": "a comment", "label": ["spam"]}])
    two = _jsonl(tmp_path / "two.jsonl", [{"text": "another comment", "label": ["abusive"]}])
    assert _import(tmp_path, "doccano", str(one)).exit_code == 0
    (first,) = _written(tmp_path)
    before = first.read_bytes()
    assert _import(tmp_path, "doccano", str(two)).exit_code == 0
    files = _written(tmp_path)
    assert len(files) == 2 and files[0] == first and first.read_bytes() == before
    assert "-doccano-one" in files[0].name and "-doccano-two" in files[1].name
    labels = {r.label for r in resolved_labeled_records(tmp_path / "labeled")}
    assert labels == {"spam", "abusive"}


def test_conflict_with_an_earlier_import_goes_to_the_later_import(tmp_path) -> None:
    one = _jsonl(tmp_path / "one.jsonl", [{"text": "مباراة قوية", "label": ["on_topic"], "article_id": "p1"}])
    two = _jsonl(
        tmp_path / "two.jsonl", [{"text": "مباراة قوية", "label": ["off_topic"], "article_id": "p1"}]
    )
    assert _import(tmp_path, "doccano", str(one)).exit_code == 0
    result = _import(tmp_path, "doccano", str(two))
    assert result.exit_code == 0, result.output
    first, second = _written(tmp_path)
    meta = _meta(second)
    assert meta["counts"]["conflicts_resolved"] == 1 and meta["counts"]["written"] == 1
    assert meta["superseded"] == [{"file": first.name, "line": 1, "by": f"{two}:1", "by_line": 1}]
    resolved = resolved_labeled_records(tmp_path / "labeled")
    assert [(r.text, r.label) for r in resolved] == [("مباراة قوية", "off_topic")]
    assert "conflicts (loser → winner)" in result.output


def test_an_older_decision_imported_later_does_not_override_a_newer_one(tmp_path) -> None:
    def tasks(label: str, at: str) -> list[dict]:
        return [
            {
                "id": 1,
                "data": {"text": "اشترك في القناة", "article_id": "a"},
                "annotations": [_annotation(label, at)],
            }
        ]

    newer = _dump(tmp_path / "newer.json", tasks("spam", "2024-06-01T00:00:00Z"))
    older = _dump(tmp_path / "older.json", tasks("on_topic", "2024-01-01T00:00:00Z"))
    assert _import(tmp_path, "labelstudio", str(newer)).exit_code == 0
    result = _import(tmp_path, "labelstudio", str(older))
    assert result.exit_code == 0, result.output
    meta = _meta(_written(tmp_path)[1])
    assert meta["counts"]["written"] == 0 and meta["counts"]["lost_to_later_decision"] == 1
    assert meta["superseded"] == [] and "decided later" in meta["conflicts"][0]
    assert [r.label for r in resolved_labeled_records(tmp_path / "labeled")] == ["spam"]


def test_conflicts_inside_one_import_take_the_later_row(tmp_path) -> None:
    export = _jsonl(
        tmp_path / "d.jsonl",
        [
            {"text": "same words", "label": ["spam"]},
            {"text": "other", "label": ["on_topic"]},
            {"text": "Same   words", "label": ["on_topic"]},
        ],
    )
    report = import_export("doccano", export, out_dir=tmp_path / "labeled", options=ImportOptions())
    assert report.written == 2 and report.lost == 1 and len(report.conflicts) == 1
    assert [(r.text, r.label) for r in _only_records(tmp_path)] == [
        ("other", "on_topic"),
        ("Same   words", "on_topic"),
    ]


def test_resolved_labeled_records_applies_latest_wins_to_hand_placed_files(tmp_path) -> None:
    directory = tmp_path / "labeled"
    directory.mkdir()
    _jsonl(
        directory / "a.jsonl",
        [
            {"text": "x one", "label": "spam", "article_id": "1"},
            {"text": "x two", "label": "on_topic"},
            {"text": "X one", "label": "spam", "article_id": "1"},
        ],
    )
    _jsonl(directory / "b.jsonl", [{"text": "x one", "label": "abusive", "article_id": "1"}])
    resolved = resolved_labeled_records(directory)
    assert [(r.text, r.label) for r in resolved] == [("x two", "on_topic"), ("x one", "abusive")]
    assert resolved_labeled_records(tmp_path / "missing") == []


def test_file_names_sort_in_import_order_even_if_the_clock_goes_back(tmp_path) -> None:
    export = _jsonl(tmp_path / "d.jsonl", [{"text": "x", "label": ["spam"]}])
    later = datetime(2030, 1, 1, tzinfo=UTC)
    earlier = datetime(2029, 12, 31, 23, 59, 59, tzinfo=UTC)
    first = import_export("doccano", export, out_dir=tmp_path / "labeled", now=later).output
    second = import_export("argilla", export, out_dir=tmp_path / "labeled", now=earlier).output
    assert sorted([second, first]) == [first, second]
    assert first.name.startswith("20300101T000000.000000Z") and second.name.startswith(
        "20300101T000000.000001Z"
    )


def test_a_broken_file_already_in_the_directory_stops_the_import(tmp_path) -> None:
    (tmp_path / "labeled").mkdir()
    (tmp_path / "labeled" / "old.jsonl").write_text('{"text": "x", "lable": "spam"}\n', encoding="utf-8")
    export = _jsonl(tmp_path / "d.jsonl", [{"text": "y", "label": ["spam"]}])
    result = _import(tmp_path, "doccano", str(export))
    assert result.exit_code == 1 and "old.jsonl:1: field 'lable'" in result.output
    assert _written(tmp_path) == [tmp_path / "labeled" / "old.jsonl"]
