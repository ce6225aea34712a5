"""MLMA (Ousidhoum et al. 2019), Arabic part: tweets collected with hate-speech keywords.

Origin: the Vanetik collection's ID2 sheet (3,353 tweets). Nearly every tweet is on a hate theme
(religion, race, gender, refugees): MLMA sampled by keyword, so its `0` rows are tweets on those
themes that annotators judged not hostile (MLMA's "normal"/"fearful" hostility), not ordinary
comments, and several of them read as insults.
Label: offensive 1 (MLMA hostility: offensive, abusive, hateful, disrespectful) → `abusive`;
0 → `on_topic`, which here only means "not abusive". The only set where abuse is the MAJORITY
(73 %), so it is capped by the per-source balancing in training. Placeholders `@user`/`@url`
become the serving masks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from serving.schema import ABUSIVE, ON_TOPIC
from serving.text.normalize import MENTION_TOKEN, URL_TOKEN
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require
from training.data.datasets.vanetik import collection_file, collection_records, offensive_label

SOURCE = "mlma"
FILES = (collection_file(2),)
LABELS = {"1": ABUSIVE, "0": ON_TOPIC}
SITE = "twitter"


def unmask(text: str) -> str:
    """`@url` / `@user` placeholders → serving masks (url first: `@url` is not a user)."""
    return text.replace("@url", URL_TOKEN).replace("@user", MENTION_TOKEN)


_label = offensive_label(SOURCE, LABELS, skip_unlabelled=True)


def load_mlma(root: Path) -> Iterator[LabeledRecord]:
    """Every labelled tweet."""
    (path,) = require(root, *FILES)
    yield from finalize(collection_records(path, source=SOURCE, site=SITE, label_of=_label, text_of=unmask))
