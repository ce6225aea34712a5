"""MSAC (Oussous et al. 2018): 2,000 Moroccan social-media comments, positive or negative sentiment.

Origin: `msac_moroccan/MSAC.arff` (one quoted text and its class per line after `@data`). Many rows
are political comments on the government and on Benkirane, in Darija and MSA.
Label: every comment → `on_topic`, meaning only "published, not labelled abusive". These are
SENTIMENT labels: `neg` (criticism, anger) stays on the non-abusive side, but nobody checked the
rows for insults, so `neg` is a noisy negative (training/experiment/heads.py: lexicon-cleaned,
weighed at half). The polarity is
kept in `comment_id` (`msac:neg_12`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from serving.schema import ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require

SOURCE = "msac"
FILES = ("msac_moroccan/MSAC.arff",)
LABELS = {"pos": ON_TOPIC, "neg": ON_TOPIC}


def parse_arff_line(line: str) -> tuple[str, str]:
    """`'text with, commas',neg` → ('text with, commas', 'neg')."""
    text, sep, polarity = line.rpartition(",")
    if not sep:
        raise ValueError(f"no class in ARFF line {line[:60]!r}")
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1].replace("\\'", "'")
    return text, polarity.strip()


def load_msac(root: Path) -> Iterator[LabeledRecord]:
    """Every instance after the `@data` line."""
    (path,) = require(root, *FILES)

    def raw() -> Iterator[LabeledRecord]:
        in_data = False
        number = 0
        for line in path.read_text(encoding="utf-8").splitlines():
            if not in_data:
                in_data = line.strip().lower() == "@data"
                continue
            if not line.strip():
                continue
            number += 1
            text, polarity = parse_arff_line(line)
            if polarity not in LABELS:
                raise ValueError(f"{path}: instance {number}: unknown class {polarity!r}")
            yield LabeledRecord(
                text=text,
                label=LABELS[polarity],
                comment_id=f"{SOURCE}:{polarity}_{number}",
                source=SOURCE,
            )

    yield from finalize(raw())
