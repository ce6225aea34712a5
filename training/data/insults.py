"""A small insult lexicon, used ONLY to clean the non-abusive side of the abuse head's training data.

It is never a model feature: the classifier stays lexicon-free. Its one job is to drop, from the
training negatives, rows that nobody labelled for abuse (sentiment corpora) or that a corpus labelled
by a narrower definition (hate-only sets keep plain insults in their negative class) but that
contain an obvious insult, obscenity or curse. Recall matters more than precision here: a false
hit only removes one training negative.

Entries are in serving.normalize form (ة→ه, ى→ي, hamza seats→ا). `STEMS` match a word that starts
with them after an optional conjunction/article/vocative prefix; `EXACT` (short or ambiguous words)
must be the whole word after the prefix. Written for this project; covers MSA, Gulf, Levantine,
Egyptian, Iraqi and Maghrebi forms plus common Arabizi.
"""

from __future__ import annotations

import re

STEMS = (
    # animals used as insults
    "كلاب",
    "خنزير",
    "خنازير",
    "حمير",
    "حيوان",
    "بهايم",
    "بهيمه",
    "جحش",
    "بغل",
    # dirt, vileness, contempt
    "زبال",
    "وساخه",
    "حقير",
    "حقيره",
    "منحط",
    "حثاله",
    "قذر",
    "سافل",
    "سفله",
    "واطي",
    "نجس",
    "انجاس",
    "تافه",
    "تافهه",
    "اغبيا",
    "غبي",
    "متخلف",
    "معفن",
    "خانز",
    "مسخوط",
    "كلخ",
    "مكلخ",
    # sexual insults and obscenities
    "عاهر",
    "شرموط",
    "قحب",
    "منيوك",
    "منيك",
    "متناك",
    "نياك",
    "عرص",
    "معرص",
    "خول",
    "لوطي",
    "ديوث",
    "زامل",
    "طبون",
    "قواد",
    "قحاب",
    "فاجر",
    "فاجره",
    "فاسق",
    "زاني",
    "زانيه",
    "لقيط",
    "ابن الحرام",
    "ولد الحرام",
    "بنت الحرام",
    "كسمك",
    "كس امك",
    "كسختك",
    "طيزك",
    "زبي",
    "نيكم",
    # curses
    "يلعن",
    "لعنه الله",
    "لعنة الله",
    "الله ينعل",
    "ينعل",
    "تفو",
    "تبا لك",
    "يخرب بيتك",
    # sectarian / group slurs
    "روافض",
    "رافضي",
    "مجوس",
    "نواصب",
    "ناصبي",
    "صفوي",
    "صفويه",
    "خوارج",
    "دواعش",
    # Arabizi
    "zamel",
    "9a7ba",
    "9ahba",
    "9hab",
    "zebi",
    "zbi",
    "tabon",
    "t9ewed",
    "7mar",
    "hmar",
    "kelb",
    "khanzir",
    "charmota",
    "nik ",
    "sharmota",
    "manyak",
    "a7a ",
)
EXACT = ("كلب", "حمار", "زب", "كس", "طيز", "نيك", "حيوانه", "وسخ", "وسخه", "زق")
_PREFIX = r"(?:[وف])?(?:يا|ال|لل|بال|وال|فال|ب|ل)?"
_STEM_RE = re.compile(
    r"(?<![\w])"
    + _PREFIX
    + r"(?:"
    + "|".join(re.escape(s) for s in sorted(STEMS, key=len, reverse=True))
    + r")",
)
_EXACT_RE = re.compile(
    r"(?<![\w])" + _PREFIX + r"(?:" + "|".join(re.escape(s) for s in EXACT) + r")(?![\w])",
)


def has_insult(normalized: str) -> bool:
    """True when the (serving-normalised, lower-cased) text contains a lexicon entry."""
    return bool(_STEM_RE.search(normalized) or _EXACT_RE.search(normalized))
