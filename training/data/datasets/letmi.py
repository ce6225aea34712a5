"""Let-Mi (Mulki & Ghanem 2021): Levantine tweets replying to female journalists, misogynistic or not.

Origin: the Vanetik collection's ID14 sheet (5,241 tweets). The original release is form-gated.
Label: Let-Mi annotates misogyny, not abuse, so we map by the sub-type the collection kept in
`offense strength`:
  * `discredit` (slurs and insults aimed at the woman), `insult`, `HS` → `abusive`: these are
    what a news site removes;
  * offensive=1 with no sub-type (389 rows: the remaining Let-Mi categories such as stereotyping,
    dominance or derailing, not told apart in this copy) → EXCLUDED: misogynistic opinions are not
    necessarily insults, and we cannot see which category a row had;
  * offensive=0 (`none`) → `on_topic`, which here only means "not abusive".
Excel left `_x000D_` (a carriage return) in 758 texts; the xlsx reader decodes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from serving.schema import ABUSIVE, ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require
from training.data.datasets.vanetik import CollectionRow, collection_file, collection_records

SOURCE = "letmi"
FILES = (collection_file(14),)
ABUSIVE_SUBTYPES = frozenset({"discredit", "insult", "HS"})
LABELS = {"1:discredit": ABUSIVE, "1:insult": ABUSIVE, "1:HS": ABUSIVE, "0": ON_TOPIC}
SITE = "twitter"


def _label(row: CollectionRow) -> str | None:
    subtype = (row.extra.get("offense strength") or "null").strip()
    if row.offensive == "0":
        return ON_TOPIC
    if row.offensive == "1":
        return ABUSIVE if subtype in ABUSIVE_SUBTYPES else None
    raise ValueError(f"{SOURCE}: row {row.number}: unknown label {row.offensive!r}")


def load_letmi(root: Path) -> Iterator[LabeledRecord]:
    """Non-misogynistic tweets and the insulting kinds of misogyny; other misogyny is skipped."""
    (path,) = require(root, *FILES)
    yield from finalize(collection_records(path, source=SOURCE, site=SITE, label_of=_label))
