"""`--engine dask` gives what the local engine gives: scored rows, skipped rows, errors, CV scores."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.conftest import (
    ABUSIVE,
    ECONOMY_BODY,
    ECONOMY_TITLE,
    ON_POLITICS,
    ON_SPORT,
    POLITICS_BODY,
    POLITICS_TITLE,
    REPO,
    SPAM,
    SPORT_TITLE,
)
from training.cli.main import app

pytest.importorskip("distributed", reason="the dask extra is not installed (pip install 'raqib[dask]')")

pytestmark = [pytest.mark.unit]

runner = CliRunner()
COMMENTS = ON_POLITICS + ON_SPORT + SPAM + ABUSIVE


@pytest.fixture(scope="module")
def scheduler():
    """A 2-worker LocalCluster shared by the tests that pass --scheduler (loopback ports only)."""
    import logging

    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    ) as cluster:
        yield cluster.scheduler_address


def _rows(count: int) -> list[dict[str, str]]:
    """Comments under articles whose bodies span lines and hold quotes and commas, as CMS bodies do."""
    articles = [
        ("pol", POLITICS_TITLE, POLITICS_BODY + '\n\nوقال متحدث: "لا انسحاب قبل الاتفاق"، ثم غادر.'),
        ("sport", SPORT_TITLE, ""),
        ("eco", ECONOMY_TITLE, ECONOMY_BODY + "\r\nسطر ثان, بفاصلة"),
    ]
    rows = []
    for i in range(count):
        article_id, title, body = articles[i % len(articles)]
        rows.append(
            {
                "comment_id": f"c{i:03d}",
                "text": f"{COMMENTS[i % len(COMMENTS)]} {i}",
                "article_id": article_id,
                "article_title": title,
                "article_text": body,
            }
        )
    return rows


def _write_csv(path: Path, rows: list[dict[str, str]], raw: dict[int, bytes] | None = None) -> Path:
    """A CSV export with Excel's byte-order mark; `raw` lines go in before the record of that index."""
    header = io.StringIO()
    csv.writer(header).writerow(list(rows[0]))
    records = []
    for row in rows:
        buffer = io.StringIO()
        csv.writer(buffer).writerow(list(row.values()))
        records.append(buffer.getvalue().encode("utf-8"))
    for index, line in sorted((raw or {}).items(), reverse=True):
        records.insert(index, line + b"\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + header.getvalue().encode("utf-8") + b"".join(records))
    return path


def _line_of(path: Path, raw_line: bytes) -> int:
    data = path.read_bytes()
    return data[: data.index(raw_line)].count(b"\n") + 1


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _parts(directory: Path) -> list[Path]:
    parts = sorted(directory.iterdir())
    assert parts and all(p.name.startswith("part-") for p in parts), parts
    return parts


def _score(*args: str):
    return runner.invoke(app, ["score", *args])


def _both(tmp_path: Path, source: Path, suffix: str, *options: str, cluster: list[str]):
    """Score with each engine; the local output file and the dask part directory."""
    local, parts = tmp_path / f"local{suffix}", tmp_path / f"dask{suffix}"
    ran_local = _score(str(source), "-o", str(local), *options)
    assert ran_local.exit_code == 0, ran_local.output
    ran_dask = _score(str(source), "-o", str(parts), "--engine", "dask", *cluster, *options)
    assert ran_dask.exit_code == 0, ran_dask.output
    return local, parts, ran_dask


def test_csv_parts_concatenate_to_the_local_output(tmp_path, tiny_bundle) -> None:
    source = _write_csv(tmp_path / "export.csv", _rows(60))
    local, parts, ran = _both(
        tmp_path, source, ".csv", "--model", str(tiny_bundle), "--chunk-size", "4", cluster=["--workers", "2"]
    )
    files = _parts(parts)
    # 60 rows in chunks of 4 over 2 workers × 4 parts each: several parts, none cut inside a chunk.
    assert len(files) == 8 and "2 Dask worker(s), 8 part file(s)" in " ".join(ran.output.split())
    per_part = [_read_csv(p) for p in files]
    assert all(len(rows) % 4 == 0 for rows in per_part[:-1])
    expected = _read_csv(local)
    assert [row for rows in per_part for row in rows] == expected
    assert expected[0]["article_text"].count("\n") == 2 and expected[0]["model_version"] == "0-test"


def test_parquet_row_groups_keep_types_and_values(tmp_path, tiny_bundle, scheduler) -> None:
    rows = _rows(45)
    table = pa.table(
        {
            "comment_id": [r["comment_id"] for r in rows],
            "text": [r["text"] for r in rows],
            "article_title": [r["article_title"] for r in rows],
            "likes": pa.array([None if i % 7 == 0 else i for i in range(45)], pa.int64()),
        }
    )
    source = tmp_path / "export.parquet"
    pq.write_table(table, source, row_group_size=10)
    local, parts, _ = _both(
        tmp_path, source, ".parquet", "--model", str(tiny_bundle), cluster=["--scheduler", scheduler]
    )
    files = _parts(parts)
    assert len(files) == 5  # one part per row group here: 45 rows aimed at 8 parts
    expected = pq.read_table(local)
    scored = pa.concat_tables([pq.read_table(p) for p in files])
    assert scored.schema == expected.schema and scored.schema.field("likes").type == pa.int64()
    assert scored.to_pylist() == expected.to_pylist()


def test_jsonl_to_jsonl_keeps_each_rows_keys(tmp_path, tiny_bundle, scheduler) -> None:
    rows: list[dict] = _rows(30)
    for i, row in enumerate(rows):
        if i % 4 == 0:
            del row["article_text"]
        if i % 5 == 0:
            row["tags"] = ["x", i]
    source = tmp_path / "export.jsonl"
    source.write_text(
        "".join(
            json.dumps(r, ensure_ascii=False) + "\n" + ("\n" if i == 3 else "") for i, r in enumerate(rows)
        ),
        encoding="utf-8",
    )
    local, parts, _ = _both(
        tmp_path,
        source,
        ".jsonl",
        "--model",
        str(tiny_bundle),
        "--chunk-size",
        "3",
        "--no-explain",
        cluster=["--scheduler", scheduler],
    )
    scored = [line for p in _parts(parts) for line in p.read_text(encoding="utf-8").splitlines()]
    assert scored == local.read_text(encoding="utf-8").splitlines()
    assert "tags" in json.loads(scored[0]) and "article_text" not in json.loads(scored[0])


def test_skipped_rows_and_their_side_file_match_the_local_engine(tmp_path, tiny_bundle, scheduler) -> None:
    raw = {
        2: b"c900,,pol,t,b",  # empty text: its comment id is readable
        17: b"c901,only three,fields",  # past the first chunk: once lost by the local engine
        33: b"c902,\xff\xfe broken,eco,t,b",  # not UTF-8
    }
    source = _write_csv(tmp_path / "export.csv", _rows(40), raw)
    local, parts, ran = _both(
        tmp_path,
        source,
        ".csv",
        "--model",
        str(tiny_bundle),
        "--chunk-size",
        "5",
        "--skip-bad-rows",
        cluster=["--scheduler", scheduler],
    )
    assert [row for p in _parts(parts) for row in _read_csv(p)] == _read_csv(local)
    errors = (tmp_path / "dask.csv.errors.jsonl").read_text(encoding="utf-8")
    assert errors == (tmp_path / "local.csv.errors.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in errors.splitlines()]
    assert [r["error"] for r in records] == [
        "missing or empty text",
        "3 fields where the header has 5",
        "not valid UTF-8 (byte 5: invalid start byte)",
    ]
    assert records[0]["comment_id"] == "c900"
    assert "3 row(s) skipped" in " ".join(ran.output.split())


def test_a_bad_row_fails_like_the_local_engine_and_writes_nothing(tmp_path, tiny_bundle, scheduler) -> None:
    # The earlier bad row is the one both engines must report; the later one sits in a later part.
    source = _write_csv(tmp_path / "export.csv", _rows(40), {6: b"c900,too,few", 30: b"c901,   ,pol,t,b"})
    common = ["--model", str(tiny_bundle), "--chunk-size", "4"]
    local = _score(str(source), "-o", str(tmp_path / "local.csv"), *common)
    dask = _score(
        str(source), "-o", str(tmp_path / "out.csv"), "--engine", "dask", "--scheduler", scheduler, *common
    )
    assert local.exit_code == dask.exit_code == 1
    message = " ".join(dask.output.split()).partition("error:")[2]  # after the progress bar
    assert message == " ".join(local.output.split()).partition("error:")[2]
    line = _line_of(source, b"c900,too,few")
    assert f"{source}:{line}: 3 fields where the header has 5" in message and "nothing written" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.csv"]  # no output, no staging left


def test_options_that_do_not_fit_the_engine_are_refused(tmp_path, tiny_bundle) -> None:
    source = _write_csv(tmp_path / "export.csv", _rows(3))
    model = ["--model", str(tiny_bundle)]
    cases = [
        (["--engine", "dask", "--sort", "risk"], "--sort risk is not available with --engine dask"),
        (["--workers", "2"], "--scheduler and --workers only apply with --engine dask"),
        (["--engine", "dask", "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"], "with --scheduler"),
        (["--engine", "spark"], "--engine 'spark': use one of local, dask"),
    ]
    for options, message in cases:
        result = _score(str(source), *model, *options)
        assert result.exit_code == 2, (options, result.output)
        assert message in " ".join(result.output.split()), (options, result.output)
    taken = tmp_path / "taken.csv"
    taken.write_text("not ours\n", encoding="utf-8")
    result = _score(str(source), "-o", str(taken), *model, "--engine", "dask", "--workers", "1")
    assert result.exit_code == 2 and "is a file; --engine dask writes a directory" in " ".join(
        result.output.split()
    )
    assert taken.read_text(encoding="utf-8") == "not ours\n"


def test_an_unreachable_scheduler_is_named(tmp_path, tiny_bundle, monkeypatch) -> None:
    from tests.conftest import free_port
    from training.batch import dask_engine

    monkeypatch.setattr(dask_engine, "CONNECT_TIMEOUT_SECONDS", 1)
    source = _write_csv(tmp_path / "export.csv", _rows(3))
    address = f"tcp://127.0.0.1:{free_port()}"
    result = _score(str(source), "--model", str(tiny_bundle), "--engine", "dask", "--scheduler", address)
    assert result.exit_code == 1
    assert f"cannot connect to the Dask scheduler at {address}" in " ".join(result.output.split())


TINY_CONFIG = """
name = "dask-search"
cv_folds = 2
n_jobs = 1
[data]
starter = "data/starter"
labeled_dir = ""
[features]
min_df = 2
char_ngrams = [2, 3]
word_ngrams = [1, 1]
lsa_components = 10
max_char_features = 5000
max_word_features = 2000
[[candidates]]
kind = "complement_nb"
grid = { alpha = [0.1, 1.0] }
[[candidates]]
kind = "sgd"
params = { loss = "log_loss", alpha = 1e-4 }
"""


@pytest.mark.slow
def test_candidate_search_on_dask_scores_like_local(tmp_path, scheduler, monkeypatch) -> None:
    from distributed import Client, get_task_stream

    from training.experiment.config import load_config
    from training.experiment.train import run_experiment

    monkeypatch.chdir(REPO)
    config_path = tmp_path / "tiny.toml"
    config_path.write_text(TINY_CONFIG, encoding="utf-8")
    config = load_config(config_path)
    local = run_experiment(config, REPO)
    with Client(scheduler) as client, get_task_stream(client) as tasks:
        on_dask = run_experiment(config, REPO, search_backend="dask")
    assert any("_fit_fold" in str(task["key"]) for task in tasks.data), "the fits did not run on the cluster"

    def scores(result):
        return [{k: v for k, v in c.items() if k != "seconds"} for c in result.candidates]

    assert len(scores(local)) == 3 and scores(on_dask) == scores(local)
    assert on_dask.best == local.best and on_dask.thresholds == local.thresholds

    trained = runner.invoke(
        app,
        [
            "train",
            "--config",
            str(config_path),
            "--no-register",
            "--engine",
            "dask",
            "--scheduler",
            scheduler,
        ],
    )
    assert trained.exit_code == 0, trained.output
    starred = next(line for line in trained.output.splitlines() if "★" in line)
    assert local.best["kind"] in starred and f"{scores(local)[0]['cv_macro_f1']:.3f}" in trained.output


def test_throughput_helper_scores_every_generated_row(tiny_bundle, monkeypatch) -> None:
    from training.batch.dask_engine import dask_score_throughput

    monkeypatch.chdir(REPO)  # the starter corpus is read from data/starter
    figures = dask_score_throughput(tiny_bundle, rows=600, workers=1)
    assert figures["rows"] == 600 and figures["workers"] == 1 and figures["parts"] == 1
    assert figures["comments_per_second"] > 0 and figures["local_comments_per_second"] > 0
