"""The issue-14 corpora on the real files: both classes per abuse source, counts, no duplicates across.

Skipped when the corpora are absent ($RAQIB_DATASETS, else ../shared/datasets beside the repository).
Counts were measured on the shared snapshot; a change means the corpora or a mapping changed.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from serving.schema import ABUSIVE, ON_TOPIC
from training.data.datasets.registry import SOURCES

pytestmark = [pytest.mark.datasets, pytest.mark.slow]

ROOT = Path(
    os.environ.get("RAQIB_DATASETS") or Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
)

# Abuse sources: both classes labelled by the same annotators on the same platform.
ABUSE = {
    "osact2020": {ABUSIVE: 1988, ON_TOPIC: 7973},
    "omcd": {ABUSIVE: 3971, ON_TOPIC: 3535},
    "alakrot_youtube": {ABUSIVE: 5741, ON_TOPIC: 9012},
    "darija_offensive": {ABUSIVE: 6976, ON_TOPIC: 9202},
    "letmi": {ABUSIVE: 2192, ON_TOPIC: 2649},
    "egyptian_tweets": {ABUSIVE: 643, ON_TOPIC: 451},
    "sectarian": {ABUSIVE: 642, ON_TOPIC: 2590},
    "mlma": {ABUSIVE: 2430, ON_TOPIC: 912},
    "saudi_hate": {ABUSIVE: 10911, ON_TOPIC: 10459},
}
# Published comments with no abuse label: all `on_topic` (here: "published", not "checked clean").
PUBLISHED = {"aoc_sentences": 105763, "myc": 18995, "msac": 1971, "mac": 12388}


@pytest.fixture(scope="module")
def loaded() -> dict[str, list]:
    if not ROOT.is_dir():
        pytest.skip(f"public corpora not found at {ROOT} (set RAQIB_DATASETS)")
    return {name: list(SOURCES[name].load(ROOT, 13)) for name in (*ABUSE, *PUBLISHED)}


def test_each_abuse_source_has_both_classes_in_the_measured_numbers(loaded) -> None:
    for name, expected in ABUSE.items():
        assert dict(Counter(r.label for r in loaded[name])) == expected, name
        assert {r.source for r in loaded[name]} == {name}


def test_published_sources_are_all_on_topic(loaded) -> None:
    for name, count in PUBLISHED.items():
        assert Counter(r.label for r in loaded[name]) == Counter({ON_TOPIC: count}), name


def test_no_text_carries_both_labels_within_a_source(loaded) -> None:
    for name in ABUSE:
        labels: dict[str, set[str]] = {}
        for record in loaded[name]:
            labels.setdefault(record.text, set()).add(record.label)
        assert [t for t, seen in labels.items() if len(seen) > 1] == [], name


def test_the_saudi_set_reads_as_arabic_after_its_encoding_repair(loaded) -> None:
    texts = [r.text for r in loaded["saudi_hate"][:500]]
    arabic = sum(any("\u0621" <= ch <= "\u064a" for ch in text) for text in texts)
    assert arabic > 0.9 * len(texts)
