"""The published-anchor protocols: ranking metric and grouped folds on tiny inline data."""

import zlib

import pytest

from training.data.contract import LabeledRecord
from training.experiment.anchors import _mean_average_precision, semeval_anchors, sms_anchor, youtube_anchors

pytestmark = pytest.mark.unit


def test_mean_average_precision() -> None:
    groups = ["q1", "q1", "q1", "q2", "q2"]
    relevant = [True, False, True, False, True]
    assert _mean_average_precision(groups, relevant, [0.9, 0.1, 0.8, 0.2, 0.7]) == pytest.approx(1.0)
    # q1: relevant at ranks 2 and 3 → (1/2 + 2/3) / 2; q2: relevant at rank 2 → 1/2
    worst = _mean_average_precision(groups, relevant, [0.1, 0.9, 0.2, 0.8, 0.3])
    assert worst == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 / 2) / 2)


def _qa(q: int, text: str, label: str) -> LabeledRecord:
    topics = {
        0: ("الصلاة", "ما حكم الصلاة في السفر"),
        1: ("الزكاة", "كيف تحسب زكاة المال"),
        2: ("الصيام", "هل يجوز الصيام للمريض"),
        3: ("الحج", "ما شروط الحج"),
    }
    title, body = topics[q % 4]
    return LabeledRecord(
        text=text,
        label=label,
        comment_id=f"s{q}-{len(text)}",
        source="semeval2015",
        article_id=f"semeval:{q}",
        article_title=title,
        article_text=body,
    )


def test_semeval_protocol_groups_by_question_and_scores_relevance() -> None:
    answers = {
        0: "الصلاة في السفر تقصر",
        1: "زكاة المال ربع العشر",
        2: "المريض يفطر ويقضي الصيام",
        3: "شروط الحج الاستطاعة",
    }
    rows = []
    for q in range(12):
        rows.append(_qa(q, answers[q % 4] + f" {q}", "on_topic"))
        rows.append(_qa(q, answers[(q + 1) % 4] + f" {q}", "off_topic"))
    report = semeval_anchors(rows, context=[], folds=3)
    assert report["n"] == 24 and report["questions"] == 12
    assert report["off_topic_auc"] > 0.6
    assert report["map_by_on_topic_score"] >= report["map_random_baseline"]


def test_youtube_protocol_skips_cleanly_without_data() -> None:
    assert "skipped" in youtube_anchors([])


def _sms(text: str, label: str) -> LabeledRecord:
    return LabeledRecord(
        text=text, label=label, comment_id=f"sms-{zlib.crc32(text.encode())}", source="sms_spam"
    )


def test_sms_protocol_deduplicates_case_and_spacing_variants_before_folding() -> None:
    spam = [f"WIN a free prize {i} call 0800{i:04d} now" for i in range(12)]
    ham = [f"see you at the match tonight number {i}" for i in range(30)]
    variants = [s.upper() for s in spam[:6]] + [" ".join(h.split()) + "  " for h in ham[:5]]
    records = [_sms(t, "spam") for t in spam + variants[:6]] + [
        _sms(t, "on_topic") for t in ham + variants[6:]
    ]
    records.append(LabeledRecord(text="unrelated", label="spam", comment_id="yt-1", source="youtube_spam"))
    result = sms_anchor(records, folds=3)
    assert result["n_before_dedup"] == 53
    assert result["n"] == 42 and result["spam"] == 12
    assert result["majority_baseline_accuracy"] == pytest.approx(30 / 42)
    assert result["accuracy"] > result["majority_baseline_accuracy"]


def test_sms_protocol_skips_without_sms_records() -> None:
    assert "skipped" in sms_anchor([_qa(0, "ما حكم الصلاة", "on_topic")])
