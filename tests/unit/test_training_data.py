"""Gathering, capping, grouped splitting and context augmentation of training records."""

import pytest

from training.data.config import AugmentConfig, DataConfig
from training.data.contract import LabeledRecord
from training.data.gather import augment_context, cap_sources, record_group, split_frozen
from training.data.splits import FROZEN_EVAL_BUCKETS, split_bucket

pytestmark = pytest.mark.unit


def _records() -> list[LabeledRecord]:
    out = []
    for a in range(40):
        for c in range(3):
            out.append(
                LabeledRecord(
                    text=f"تعليق {a} {c}",
                    label="on_topic",
                    comment_id=f"c{a}-{c}",
                    article_id=f"a{a}",
                    article_title=f"عنوان {a}",
                    article_text=f"نص {a}",
                    source="s",
                )
            )
        out.append(
            LabeledRecord(
                text=f"خارج {a}",
                label="off_topic",
                comment_id=f"o{a}",
                article_id=f"a{a}",
                article_title=f"عنوان {a}",
                article_text=f"نص {a}",
                source="s",
            )
        )
    for i in range(30):
        out.append(
            LabeledRecord(text=f"spam {i} 0551234567", label="spam", comment_id=f"sp{i}", source="tweets")
        )
    return out


def test_frozen_split_never_puts_an_article_on_both_sides() -> None:
    train, frozen = split_frozen(_records())
    assert frozen and train
    assert not {r.article_id for r in train if r.article_id} & {r.article_id for r in frozen if r.article_id}
    assert all(split_bucket(record_group(r)) in FROZEN_EVAL_BUCKETS for r in frozen)


def test_caps_sample_per_source_and_label_deterministically() -> None:
    config = DataConfig(max_per_source_label={"tweets:spam": 10})
    first = cap_sources(_records(), config, seed=1)
    assert sum(r.source == "tweets" for r in first) == 10
    assert first == cap_sources(_records(), config, seed=1)


def test_augmentation_keeps_labels_honest() -> None:
    records = _records()
    augmented = augment_context(
        records, AugmentConfig(title_only_rate=1.0, no_article_rate=1.0, attach_article_rate=1.0), seed=3
    )
    assert augmented[: len(records)] == records  # originals first, in order
    copies = augmented[len(records) :]
    # an off_topic label needs an article: it is never copied without one
    assert not [r for r in copies if r.label == "off_topic" and not r.article_title]
    assert any(r.comment_id.endswith("#title_only") and r.article_text is None for r in copies)
    assert any(r.comment_id.endswith("#no_article") and r.label == "on_topic" for r in copies)
    attached = [r for r in copies if r.comment_id.endswith("#attached")]
    assert attached and all(r.label == "spam" and r.article_title for r in attached)


def test_gather_sets_aside_an_excluded_source_from_the_same_read_and_trains_on_none_of_it(tmp_path) -> None:
    from pathlib import Path

    from training.data.contract import write_jsonl
    from training.data.gather import gather

    records = [
        LabeledRecord(text="رسالة عادية", label="on_topic", comment_id="a1", source="kept"),
        LabeledRecord(text="تغريدة حساب حقيقي", label="on_topic", comment_id="t1", source="tweets"),
        LabeledRecord(text="اربح الان", label="spam", comment_id="t2", source="tweets"),
        LabeledRecord(text="مقالة اخرى", label="on_topic", comment_id="o1", source="other_excluded"),
    ]
    write_jsonl(records, tmp_path / "public.jsonl")
    config = DataConfig(
        starter=None, public="public.jsonl", labeled_dir=None, exclude_sources=("tweets", "other_excluded")
    )
    aside: dict[str, list[LabeledRecord]] = {"tweets": []}
    gathered, _ = gather(config, ["on_topic", "spam"], Path(tmp_path), aside)
    assert [r.comment_id for r in gathered] == ["a1"]
    assert aside["tweets"] == records[1:3]  # as read: both labels, nothing from another excluded source
    again, _ = gather(config, ["on_topic", "spam"], Path(tmp_path))
    assert again == gathered
