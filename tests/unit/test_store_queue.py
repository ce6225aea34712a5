"""The queue's decisions and the shadow comparisons in the store, on SQLite and on PostgreSQL."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from serving.store.errors import StoreConflict
from serving.store.queue import (
    AlreadyDecided,
    AlreadyUndone,
    DecisionNotFound,
    audited_sites,
    decisions_for,
    latest_audit,
    record_decision,
    undo_decision,
)
from serving.store.records import Article, AuditEntry, FeedbackEntry
from serving.store.shadow import (
    Comparison,
    Verdict,
    agreement_summary,
    recent_disagreements,
    record_comparisons,
)
from serving.store.store import Store

pytestmark = pytest.mark.unit

# Each test runs on a SQLite file and on a fresh PostgreSQL database (`store_url`, tests/postgres.py).


def audited(comment_id: str, site: str | None = "news", version: str = "7") -> AuditEntry:
    return AuditEntry(
        comment_id=comment_id,
        site=site,
        article_id="a-1",
        text=f"تعليق {comment_id}",
        label="spam",
        action="review",
        decided_action="review",
        decided_label="spam",
        scores={"on_topic": 0.3, "spam": 0.7},
        model_name="raqib-moderator",
        model_version=version,
        source="score",
    )


def test_a_decision_is_feedback_plus_a_log_row_and_a_second_one_is_refused(store: Store) -> None:
    store.put_article(Article("a-1", site="news", title="عنوان", text="نص الخبر"))
    store.record_audit([audited("c-1", version="6")])
    store.record_audit([audited("c-1", version="7")])  # re-scored: the latest row is decided
    audit = latest_audit(store, "c-1", "news")
    assert audit is not None and audit.model_version == "7"
    article = store.get_article("a-1", "news")
    record = record_decision(store, audit, "spam", "spam", "mod-1", article)
    assert (record.audit_id, record.model_version, record.site) == (audit.id, "7", "news")
    (feedback,) = store.feedback_since()
    assert feedback.id == record.feedback_id and feedback.article_text == "نص الخبر"
    assert store.pending(site="news") == []
    with pytest.raises(AlreadyDecided) as caught:
        record_decision(store, audit, "approve", "on_topic", "mod-2", None)
    assert (caught.value.label, caught.value.moderator) == ("spam", "mod-1")
    assert len(store.feedback_since()) == 1 and len(decisions_for(store, "c-1", "news")) == 1


def test_undo_takes_the_verdict_back_and_keeps_the_log(store: Store) -> None:
    store.record_audit([audited("c-1"), audited("c-2", site=None)])
    audit = latest_audit(store, "c-1", "news")
    assert audit is not None
    first = record_decision(store, audit, "spam", "spam", "mod-1", None)
    with pytest.raises(DecisionNotFound):
        undo_decision(store, first.id, "mod-2")  # only its own moderator may
    undone = undo_decision(store, first.id, "mod-1")
    assert undone.pending and undone.decision.undone_at is not None
    with pytest.raises(AlreadyUndone):
        undo_decision(store, first.id, "mod-1")
    assert [r.comment_id for r in store.pending(site="news")] == ["c-1"]
    second = record_decision(store, audit, "approve", "on_topic", "mod-2", None)
    log = decisions_for(store, "c-1", "news")
    assert [(d.id, d.undone_at is None) for d in log] == [(first.id, False), (second.id, True)]
    assert audited_sites(store) == [None, "news"]  # '' (no site) sorts first


def test_shadow_comparisons_count_and_list_disagreements(store: Store) -> None:
    def compared(n: int, agree: bool, shadow_version: str = "8") -> Comparison:
        shadow = Verdict("spam", "reject") if not agree else Verdict("on_topic", "approve")
        return Comparison(
            comment_id=f"c-{n}",
            site="news" if n % 2 else None,
            source="score",
            champion_name="raqib-moderator",
            champion_version="7",
            champion=Verdict("on_topic", "approve"),
            shadow_name="challenger",
            shadow_version=shadow_version,
            shadow=shadow,
            shadow_scores={"spam": 0.9 if not agree else 0.1},
            agree=agree,
        )

    record_comparisons(store, [compared(n, agree=n % 3 != 0) for n in range(1, 10)])
    record_comparisons(store, [compared(10, agree=False, shadow_version="9")])
    summary = agreement_summary(store, champion_version="7", shadow_version="8")
    assert (summary.compared, summary.agreed) == (9, 6)
    assert agreement_summary(store, shadow_name="nobody").agreement_rate is None
    latest = recent_disagreements(store, limit=3)
    assert [c.comment_id for c in latest] == ["c-10", "c-9", "c-6"]
    assert latest[1].site == "news" and latest[2].site is None and latest[0].shadow_scores == {"spam": 0.9}
    assert [c.comment_id for c in recent_disagreements(store, shadow_version="8")] == ["c-9", "c-6", "c-3"]


# --- two processes deciding the same comments at the same moment -------------------------------

ROUNDS = 12


def _decide_in_child(url: str, moderator: str, start: Any, outcomes: Any) -> None:
    """One worker process: decide every comment, each round starting together with the other worker."""
    store = Store.open(url)
    try:
        for n in range(ROUNDS):
            start.wait(timeout=60)
            try:
                # As the queue's service does it (serving.services.queue.decide, whose imports would
                # cost each child seconds): the comment's latest audit row, then the decision.
                audit = latest_audit(store, f"c-{n}", "news")
                assert audit is not None
                record = record_decision(store, audit, "spam", "spam", moderator, None)
                outcomes.put((n, moderator, "won", record.id))
            except AlreadyDecided as exc:
                outcomes.put((n, moderator, "already_decided", exc.moderator))
            except StoreConflict as exc:  # a collision the store caught another way is a refusal too
                outcomes.put((n, moderator, "conflict", str(exc)))
    finally:
        store.close()


def test_two_processes_deciding_the_same_comment_one_wins(store: Store, store_url: str) -> None:
    store.record_audit([audited(f"c-{n}") for n in range(ROUNDS)])
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    outcomes = spawn.Queue()
    workers = [
        spawn.Process(target=_decide_in_child, args=(store_url, moderator, start, outcomes))
        for moderator in ("mod-a", "mod-b")
    ]
    for worker in workers:
        worker.start()
    try:
        results = [outcomes.get(timeout=120) for _ in range(2 * ROUNDS)]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    assert all(worker.exitcode == 0 for worker in workers)
    for n in range(ROUNDS):
        got = sorted((outcome, who) for m, who, outcome, _ in results if m == n)
        assert [outcome for outcome, _ in got] in (["already_decided", "won"], ["conflict", "won"]), got
        winner = next(who for outcome, who in got if outcome == "won")
        (logged,) = decisions_for(store, f"c-{n}", "news")
        feedback = [f for f in store.feedback_since() if f.comment_id == f"c-{n}"]
        assert logged.moderator == winner and [f.moderator for f in feedback] == [winner]
    assert store.pending(site="news") == []


def test_feedback_from_elsewhere_counts_as_a_verdict(store: Store) -> None:
    store.record_audit([audited("c-1")])
    store.record_feedback(FeedbackEntry("c-1", "abusive", "coral", site="news", moderator="coral:m"))
    audit = latest_audit(store, "c-1", "news")
    assert audit is not None
    with pytest.raises(AlreadyDecided) as caught:
        record_decision(store, audit, "approve", "on_topic", "mod-1", None)
    assert caught.value.moderator == "coral:m"
