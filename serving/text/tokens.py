"""Topical tokens of normalised text: stopwords out, masks and digits out, a light Arabic stem."""

from __future__ import annotations

import re

from serving.text.normalize import MASK_TOKENS

# Function words that say nothing about topic (normalised forms: ى→ي, ة→ه, hamza seats→ا).
STOPWORDS = frozenset(
    """
    في من الي علي عن مع هذا هذه ذلك تلك هو هي هم هن انا نحن انت انتم كان كانت يكون تكون
    ان او ثم لكن لا لم لن ما ماذا لماذا كيف متي اين اذا قد كل بعض غير بين حتي عند بعد قبل
    الذي التي الذين اللي يا و ف ب ل ك ايه ايش شو وش مش مو هاد هادا هيك كده كدا بس عشان علشان
    اللهم والله الله ربنا اي ايضا جدا فقط منذ خلال حول ضد دون عبر كما لقد انه انها لان
    the a an and or but of to in on for with at by from is are was were be been it this that
    these those i you he she we they me my your our their not no yes so very just all any
    """.split()
)
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_ARABIC_PREFIXES = ("وال", "بال", "كال", "فال", "لل", "ال")
_ARABIC_SUFFIXES = ("هما", "كما", "ات", "ون", "ين", "ها", "هم", "كم", "نا")


def light_stem(token: str) -> str:
    """Strip one Arabic article/conjunction prefix and one plural/pronoun suffix."""
    for prefix in _ARABIC_PREFIXES:
        if token.startswith(prefix) and len(token) - len(prefix) >= 3:
            token = token[len(prefix) :]
            break
    for suffix in _ARABIC_SUFFIXES:
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            token = token[: -len(suffix)]
            break
    return token


_CONTENT_FORMS: dict[str, str] = {}  # token → its stem, '' for a token that is not content
_MAX_FORMS = 200_000


def _content_form(token: str) -> str:
    if len(token) < 2 or token in STOPWORDS or token in MASK_TOKENS or token.isdigit():
        return ""
    return light_stem(token)


def content_tokens(normalized: str) -> list[str]:
    """Topical tokens of normalised text: no stopwords, masks or digits, lightly stemmed."""
    forms = _CONTENT_FORMS
    if len(forms) > _MAX_FORMS:  # a memo of the words seen, bounded
        forms.clear()
    out = []
    for token in _TOKEN.findall(normalized):
        form = forms.get(token)
        if form is None:
            form = forms[token] = _content_form(token)
        if form:
            out.append(form)
    return out
