"""AOC sentences: 108,173 sentences of reader comments PUBLISHED on three news sites (Zaidan 2011).

Origin: `aoc_arabic_online_commentary/{MSA,dialect}_{alghad,alriyadh,youm7}-segs.txt.norm` with the
matching `_ids.txt` (same line count). Sites: Al-Ghad (Jordan), Al-Riyadh (Saudi Arabia),
Youm7 (Egypt); the crowd labelled each sentence MSA or dialect, a label we do not use. An id such
as `alghad_c/500019_004_001` names article 500019, comment 4, sentence 1: records carry
`article_id` = `aoc:alghad_500019`, the same key as the `aoc` loader, so evaluation can group by
article, but no article text (these sentences are scored as comments with no article).
The AOC authors already normalised the text (letter runs shortened, punctuation split off).

Label: every sentence → `on_topic`, meaning only "published, so not abusive as far as we know".
NOBODY LABELLED THEM FOR ABUSE: the sites' moderators let them through, which is a weak, noisy
negative (pre-2011 moderation, and a rude sentence may sit inside a polite comment). Training
should cap and down-weight them (training/experiment/heads.py);
evaluation uses them as the "published comments
held" measure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from serving.schema import ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require

SOURCE = "aoc_sentences"
FOLDER = "aoc_arabic_online_commentary"
VARIETIES = ("MSA", "dialect")
SITES = ("alghad", "alriyadh", "youm7")
PARTS = tuple((variety, site) for variety in VARIETIES for site in SITES)
FILES = tuple(
    f"{FOLDER}/{variety}_{site}-segs{suffix}"
    for variety, site in PARTS
    for suffix in (".txt.norm", "_ids.txt")
)
LABELS = {"published": ON_TOPIC}


def parse_id(sentence_id: str) -> tuple[str, str, str, str]:
    """`alghad_c/500019_004_001` → ('alghad', '500019', '004', '001')."""
    site, _, rest = sentence_id.partition("_c/")
    parts = rest.split("_")
    if not site or len(parts) != 3 or not parts[0].isdigit():
        raise ValueError(f"unexpected AOC sentence id {sentence_id!r}")
    return site, parts[0], parts[1], parts[2]


def load_aoc_sentences(root: Path) -> Iterator[LabeledRecord]:
    """Every sentence, in file order (MSA then dialect, sites alphabetical)."""
    paths = require(root, *FILES)

    def raw() -> Iterator[LabeledRecord]:
        for i, (variety, _site) in enumerate(PARTS):
            text_path, ids_path = paths[2 * i], paths[2 * i + 1]
            texts = text_path.read_text(encoding="utf-8").split("\n")
            ids = ids_path.read_text(encoding="utf-8").split("\n")
            if texts and texts[-1] == "":
                texts.pop()
            if ids and ids[-1] == "":
                ids.pop()
            if len(texts) != len(ids):
                raise ValueError(f"{text_path}: {len(texts)} sentences but {len(ids)} ids")
            for text, sentence_id in zip(texts, ids, strict=True):
                site, article, comment, sentence = parse_id(sentence_id.strip())
                yield LabeledRecord(
                    text=text,
                    label=ON_TOPIC,
                    comment_id=f"{SOURCE}:{site}_{article}_{comment}_{sentence}_{variety}",
                    article_id=f"aoc:{site}_{article}",
                    site=site,
                    source=SOURCE,
                )

    yield from finalize(raw())
