"""The durable store: articles, audit log, feedback, the moderators' queue and the training export."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from serving.schema import CANONICAL_COLUMNS, LABEL_PATTERN
from serving.store.engine import default_store_url
from serving.store.errors import DuplicateEvent, StoreError
from serving.store.records import Article, AuditEntry, FeedbackEntry, url_key
from serving.store.store import Store, StoreHolder
from serving.store.writer import StoreWriter

pytestmark = pytest.mark.unit


# Every test taking `store` or `store_url` runs twice: on a SQLite file and on a fresh PostgreSQL
# database (tests/postgres.py). Tests of SQLite's own behaviour (its pragmas, its file, the CLI's
# --state-dir lookup of that file) take `sqlite_store` instead and say so in their names.


def decision(
    comment_id: str | None,
    label: str = "spam",
    action: str = "reject",
    risk: float = 0.9,
    site: str | None = "news",
    text: str = "اتصل واتساب 0551234567",
    article_id: str | None = None,
    author_id: str | None = "u-1",
) -> AuditEntry:
    scores = {"on_topic": round(1 - risk, 3), label: risk} if label != "on_topic" else {"on_topic": 1 - risk}
    return AuditEntry(
        comment_id=comment_id,
        site=site,
        article_id=article_id,
        text=text,
        author_id=author_id,
        label=label,
        action=action,
        decided_action=action,
        decided_label=label if action != "approve" else None,
        scores=scores,
        model_name="raqib-moderator",
        model_version="7",
        source="score",
    )


def test_label_pattern_is_the_training_contracts() -> None:
    from training.data.contract import LABEL_PATTERN as TRAINING_PATTERN

    assert LABEL_PATTERN.pattern == TRAINING_PATTERN.pattern


def test_sqlite_store_is_wal_with_full_sync(sqlite_store: Store, tmp_path: Path) -> None:
    with sqlite_store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    assert (tmp_path / "state" / "raqib.db").is_file()


def test_articles_by_id_site_and_url(store: Store) -> None:
    store.put_article(
        Article("a-1", site="news", title="عنوان", text="نص", url="https://www.news.example/a/1/")
    )
    store.put_article(Article("a-1", site=None, title="global"))
    assert store.get_article("a-1", "news").title == "عنوان"
    assert store.get_article("a-1", "other").title == "global"  # no site's own: the site-less one
    assert store.get_article("a-2", "news") is None
    found = store.find_article_by_url("http://news.example/a/1?utm_source=x#comments", "news")
    assert found is not None and found.article_id == "a-1" and found.site == "news"
    assert url_key("HTTPS://News.Example/%D8%A7/") == url_key("news.example/ا")


def test_put_replaces_and_merge_keeps(store: Store) -> None:
    store.put_article(Article("a-1", title="t", text="body", url="https://x.example/1"))
    store.put_article(Article("a-1", url="https://x.example/1-new"), merge=True)
    merged = store.get_article("a-1")
    assert (merged.title, merged.text, merged.url) == ("t", "body", "https://x.example/1-new")
    store.put_article(Article("a-1", title="only title"))
    replaced = store.get_article("a-1")
    assert (replaced.title, replaced.text, replaced.url) == ("only title", None, None)


def test_audit_joins_feedback_and_pending_is_the_unanswered_queue(store: Store) -> None:
    store.record_audit(
        [
            decision("c-1", risk=0.95),
            decision("c-2", label="off_topic", action="review", risk=0.6),
            decision("c-3", label="on_topic", action="approve", risk=0.05),
            decision(None, risk=0.99),  # no comment id: nothing can ever answer it
            decision("c-4", site="other", risk=0.97),
        ]
    )
    store.record_audit([decision("c-1", risk=0.85)])  # re-scored (edited): the latest row counts
    queue = store.pending(site="news")
    assert [r.comment_id for r in queue] == ["c-1", "c-2", "c-3"]
    assert queue[0].risk == pytest.approx(0.85)
    assert [r.comment_id for r in store.pending(site="news", order="time")] == ["c-1", "c-3", "c-2"]
    assert [r.comment_id for r in store.pending(action="review")] == ["c-2"]
    assert [r.comment_id for r in store.pending(label="off_topic")] == ["c-2"]
    assert [r.comment_id for r in store.pending(min_score=0.5, max_score=0.9)] == ["c-1", "c-2"]
    assert [r.comment_id for r in store.pending(limit=1, offset=1)] == ["c-1"]
    store.record_feedback(FeedbackEntry("c-1", "spam", "api", site="news", moderator="mod-1"))
    assert [r.comment_id for r in store.pending(site="news")] == ["c-2", "c-3"]
    assert [r.comment_id for r in store.pending()] == ["c-4", "c-2", "c-3"]  # site "other" is its own key
    history = store.audit_for("c-1", "news")
    assert len(history) == 2 and history[0].scores["spam"] == 0.95
    assert history[0].model_version == "7" and history[0].author_id == "u-1"


def test_feedback_since(store: Store) -> None:
    first = store.record_feedback(FeedbackEntry("c-1", "spam", "api"))
    later = first.created_at + timedelta(microseconds=1)
    second = store.record_feedback(FeedbackEntry("c-2", "on_topic", "api"))
    assert [f.comment_id for f in store.feedback_since(None)] == ["c-1", "c-2"]
    assert [f.comment_id for f in store.feedback_since(second.created_at)] == ["c-2"]
    assert store.feedback_since(later + timedelta(days=1)) == []
    assert store.feedback_since(datetime(2000, 1, 1)) != []  # naive datetimes are taken as UTC


def test_feedback_label_must_be_well_formed(store: Store) -> None:
    with pytest.raises(ValueError, match="lower_snake_case"):
        store.record_feedback(FeedbackEntry("c-1", "Spam!", "api"))
    assert store.record_feedback(FeedbackEntry("c-1", "promo", "api")).label == "promo"


def test_export_latest_verdict_wins_with_text_and_article_but_never_author(store: Store) -> None:
    store.put_article(Article("a-1", site="news", title="الحكومة العراقية", text="نص الخبر"))
    store.record_audit([decision("c-1", text="نص التعليق", article_id="a-1", author_id="secret-user")])
    store.record_feedback(FeedbackEntry("c-1", "off_topic", "api", site="news"))
    store.record_feedback(FeedbackEntry("c-1", "spam", "coral", site="news"))  # the later verdict wins
    store.record_feedback(FeedbackEntry("c-2", "on_topic", "api", site="news", text="تعليق بلا تدقيق"))
    store.record_feedback(FeedbackEntry("c-3", None, "coral", site="news"))  # rejected, reason unknown
    store.record_feedback(FeedbackEntry("c-4", "abusive", "coral", site="news"))  # never scored: no text
    skipped: Counter[str] = Counter()
    records = list(store.export_labels(skipped=skipped))
    assert [r["comment_id"] for r in records] == ["c-1", "c-2"]
    first = records[0]
    assert list(first) == list(CANONICAL_COLUMNS)
    assert first["label"] == "spam" and first["text"] == "نص التعليق"
    assert (first["article_id"], first["article_title"], first["article_text"]) == (
        "a-1",
        "الحكومة العراقية",
        "نص الخبر",
    )
    assert first["author"] is None and first["source"] == "feedback" and first["site"] == "news"
    datetime.strptime(first["created_at"], "%Y-%m-%dT%H:%M:%S")
    assert "secret-user" not in repr(records)
    assert sum(skipped.values()) == 2
    future = datetime.now(UTC) + timedelta(hours=1)
    assert list(store.export_labels(since=future)) == []


def test_sqlite_open_fails_cleanly_where_nothing_can_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    # Even root cannot create a directory under a regular file.
    with pytest.raises(StoreError, match="cannot open the store") as caught:
        Store.open(default_store_url(blocker / "state"))
    assert str(blocker) not in str(caught.value)  # the message may reach API clients: no paths
    holder = StoreHolder(default_store_url(blocker / "state"))
    assert holder.open() is None and holder.current is None and "cannot open" in (holder.error or "")
    assert not holder.retry_due  # just tried: the next attempt waits RETRY_SECONDS


def test_a_failed_write_leaves_nothing_half_written(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_error(self: StoreWriter, *args: object, **kwargs: object) -> None:
        raise OperationalError(
            "INSERT INTO webhook_events ...", {}, sqlite3.OperationalError("disk I/O error")
        )

    monkeypatch.setattr(StoreWriter, "add_event", disk_error)
    with pytest.raises(StoreError, match="disk I/O error"), store.write() as writer:
        writer.add_feedback(FeedbackEntry("c-1", "spam", "webhook"))
        writer.add_audit([decision("c-1")])
        writer.add_event("webhook", "evt-1", "digest", 200, {})
    assert store.feedback_since() == [] and store.audit_for("c-1", "news") == []


def test_error_messages_never_carry_sql_parameters(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_text = "تعليق سري جدا"
    with pytest.raises(StoreError) as caught, store.write() as writer:
        writer.add_audit([decision("c-1", text=secret_text)])
        writer._conn.execute(sa.text("INSERT INTO no_such_table VALUES (:secret)"), {"secret": secret_text})
    assert secret_text not in str(caught.value)


def test_raqib_feedback_export_writes_the_contract_without_mlflow(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    import json
    import os
    import subprocess
    import sys

    store.put_article(Article("a-1", site="news", title="عنوان الخبر", text="نص الخبر"))
    store.record_audit([decision("c-1", text="تعليق مزعج 0551234567", article_id="a-1")])
    store.record_feedback(FeedbackEntry("c-1", "spam", "api", site="news"))
    store.record_feedback(FeedbackEntry("c-2", "on_topic", "api", site="news", text="تعليق جيد"))
    store.record_feedback(FeedbackEntry("c-3", None, "coral", site="news"))
    output = tmp_path / "labeled" / "feedback.jsonl"
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from training.cli.main import app\n"
        f"result = CliRunner().invoke(app, ['feedback', 'export', '-o', {str(output)!r}, "
        f"'--store-url', {store_url!r}])\n"
        "print(result.output)\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAQIB_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "spam" in done.stdout and "on_topic" in done.stdout and "skipped 1" in done.stdout
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [(r["comment_id"], r["label"]) for r in records] == [("c-1", "spam"), ("c-2", "on_topic")]
    assert records[0]["article_text"] == "نص الخبر" and records[0]["author"] is None

    from training.data.contract import read_records

    assert [r.label for r in read_records(output)] == ["spam", "on_topic"]


def test_sqlite_feedback_export_since_and_missing_store(sqlite_store: Store, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from training.cli.main import app

    sqlite_store.record_feedback(FeedbackEntry("c-2", "on_topic", "api", text="تعليق"))
    output = tmp_path / "out.jsonl"
    runner = CliRunner()
    later = runner.invoke(
        app,
        [
            "feedback",
            "export",
            "-o",
            str(output),
            "--state-dir",
            str(tmp_path / "state"),
            "--since",
            "2999-01-01",
        ],
    )
    assert later.exit_code == 0, later.output
    assert output.read_text(encoding="utf-8") == ""
    missing = runner.invoke(
        app, ["feedback", "export", "-o", str(output), "--state-dir", str(tmp_path / "none")]
    )
    assert missing.exit_code == 1 and "no store" in missing.output
    url = runner.invoke(
        app, ["feedback", "export", "-o", str(output), "--store-url", default_store_url(tmp_path / "state")]
    )
    assert url.exit_code == 0 and output.read_text(encoding="utf-8").count("\n") == 1


def test_concurrent_audits_share_commits_and_all_land(store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda n: store.record_audit([decision(f"c-{n}")]), range(200)))
    assert sorted(i for row_ids in ids for i in row_ids) == list(range(1, 201))
    assert len(store.pending(limit=1000)) == 200


def test_a_failed_group_commit_reaches_every_waiter(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(self: StoreWriter, *args: object, **kwargs: object) -> list[int]:
        raise OperationalError(
            "INSERT INTO audit ...", {}, sqlite3.OperationalError("database or disk is full")
        )

    monkeypatch.setattr(StoreWriter, "add_audit", disk_full)
    futures = [store.submit_audit([decision(f"c-{n}")]) for n in range(5)]
    for future in futures:
        with pytest.raises(StoreError, match="disk is full"):
            future.result(timeout=10)
    monkeypatch.undo()
    assert store.record_audit([decision("c-after")]) == [1]


def test_close_commits_what_is_queued(store_url: str) -> None:
    url = store_url
    first = Store.open(url)
    futures = [first.submit_audit([decision(f"c-{n}")]) for n in range(50)]
    first.close()
    assert all(f.done() and not f.exception() for f in futures)
    with pytest.raises(StoreError, match="closed"):
        first.submit_audit([decision("late")]).result(timeout=1)
    second = Store.open(url)
    assert len(second.pending(limit=100)) == 50
    second.close()


def test_audit_rows_queued_during_a_commit_share_the_next_one(store: Store) -> None:
    commits = 0

    def count(_conn: object) -> None:
        nonlocal commits
        commits += 1

    sa.event.listen(store.engine, "commit", count)
    # While another write holds the store, every submitted row waits; they then land in at most
    # two transactions (the one the writer thread had already started on, and one for the rest).
    with store._write_lock:
        futures = [store.submit_audit([decision(f"c-{n}")]) for n in range(50)]
    ids = sorted(i for future in futures for i in future.result(timeout=30))
    assert ids == list(range(1, 51)) and commits <= 2
    assert len(store.pending(limit=100)) == 50


def test_feedback_is_committed_when_the_method_returns(store: Store, store_url: str) -> None:
    recorded = store.record_feedback(FeedbackEntry("c-1", "spam", "api", site="news", text="نص"))
    # Another engine (another worker or replica) sees it at once: nothing waits in a transaction.
    other = Store.open(store_url)
    try:
        (seen,) = other.feedback_since()
    finally:
        other.close()
    assert (seen.id, seen.label, seen.text, seen.site) == (recorded.id, "spam", "نص", "news")
    assert seen.created_at == recorded.created_at


def test_a_replayed_event_is_one_record_and_keeps_its_first_answer(store: Store) -> None:
    with store.write() as writer:
        writer.add_feedback(FeedbackEntry("c-1", "spam", "webhook", site="news"))
        writer.add_event("webhook", "evt-1", "digest-1", 200, {"label": "spam", "نص": "أول"})
    with pytest.raises(DuplicateEvent), store.write() as writer:
        writer.add_feedback(FeedbackEntry("c-1", "abusive", "webhook", site="news"))
        writer.add_event("webhook", "evt-1", "digest-1", 200, {"label": "abusive"})
    known = store.get_event("webhook", "evt-1")
    assert known is not None and known.status == 200 and known.body_sha256 == "digest-1"
    assert known.response == {"label": "spam", "نص": "أول"}
    assert [f.label for f in store.feedback_since()] == ["spam"]  # the replay's write was rolled back
    assert store.get_event("other-source", "evt-1") is None


def test_the_same_event_racing_on_two_workers_is_answered_once(store_url: str) -> None:
    import threading

    from serving.api.integrations.webhooks import handle_event

    # Two stores over one database: two workers or replicas, each with its own connections.
    stores = [Store.open(store_url), Store.open(store_url)]
    both_planned = threading.Barrier(2, timeout=30)
    answers: list[tuple[int, bytes]] = []

    def deliver(store: Store, label: str) -> None:
        def plan(_store: Store) -> object:
            both_planned.wait()  # both have looked for the event and found none

            def write(writer: StoreWriter) -> tuple[int, object]:
                writer.add_feedback(FeedbackEntry("c-1", label, "webhook", site="news"))
                return 200, {"label": label}

            return write

        response = handle_event(store, "webhook", "evt-1", "digest", plan)
        answers.append((response.status_code, bytes(response.body)))

    try:
        threads = [
            threading.Thread(target=deliver, args=(store, label))
            for store, label in zip(stores, ("spam", "abusive"), strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(answers) == 2 and answers[0] == answers[1]  # the loser replays the winner's answer
        (feedback,) = stores[0].feedback_since()
        assert answers[0][1].decode() == f'{{"label":"{feedback.label}"}}'
    finally:
        for store in stores:
            store.close()
