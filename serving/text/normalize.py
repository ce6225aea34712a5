"""Arabic-aware text normalization with a map back to the original characters.

One code path serves both uses: the model's features (`normalize`) and the explanation spans
(`normalize_with_offsets`) run the same table and the same substitutions, the second also keeping,
for every output character, the slice of the original text it came from. That is what lets a UI
highlight the original comment even when it was diacritised, stretched with tatweel or spaced out.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarabic.araby as araby

# Mask tokens: lower-case ASCII words, so both char and word n-grams see them as one unit.
URL_TOKEN = "xxurl"
EMAIL_TOKEN = "xxemail"
PHONE_TOKEN = "xxphone"
MENTION_TOKEN = "xxuser"
MASK_TOKENS = (URL_TOKEN, EMAIL_TOKEN, PHONE_TOKEN, MENTION_TOKEN)

# Invisible characters are found by Unicode category, not listed by hand: every format character
# (Cf: zero-width spaces and joiners, bidi controls, soft hyphen, BOM, the tag characters
# U+E0000-E007F) and every combining mark (Mn, which includes the variation selectors) is deleted.
# These few are letters (Lo) that render as nothing, so the category cannot find them.
BLANK_LETTERS = "\u115f\u1160\u3164\uffa0"
INVISIBLE_CATEGORIES = frozenset({"Cf", "Mn"})

# Latin look-alikes spammers swap in (Cyrillic, Greek) and Persian/Urdu forms of Arabic letters.
HOMOGLYPHS = {
    "а": "a",
    "е": "e",
    "о": "o",
    "р": "p",
    "с": "c",
    "у": "y",
    "х": "x",
    "і": "i",
    "ј": "j",
    "ѕ": "s",
    "ԁ": "d",
    "ɡ": "g",
    "һ": "h",
    "ӏ": "l",
    "ո": "n",
    "ս": "u",
    "ԝ": "w",
    "А": "a",
    "В": "b",
    "Е": "e",
    "К": "k",
    "М": "m",
    "Н": "h",
    "О": "o",
    "Р": "p",
    "С": "c",
    "Т": "t",
    "Х": "x",
    "У": "y",
    "α": "a",
    "ο": "o",
    "ρ": "p",
    "τ": "t",
    "ν": "v",
    "ι": "i",
    "κ": "k",
    "ε": "e",
    "ک": "ك",
    "ڪ": "ك",
    "گ": "ك",
    "ی": "ي",
    "ې": "ي",
    "ۍ": "ي",
    "ے": "ي",
    "ۓ": "ي",
    "ہ": "ه",
    "ە": "ه",
    "ھ": "ه",
    "ۀ": "ه",
    "ۃ": "ه",
    "ٸ": "ي",
    "ٹ": "ت",
    "ڈ": "د",
    "ڑ": "ر",
    "ں": "ن",
    "ڤ": "ف",
    "چ": "ج",
    "پ": "ب",
    "ژ": "ز",
    "ﻻ": "لا",
}

DIGITS = {chr(0x0660 + d): str(d) for d in range(10)} | {chr(0x06F0 + d): str(d) for d in range(10)}


@lru_cache(maxsize=1)
def _char_table() -> dict[int, str]:
    """Per-character rewrite table: deletions map to '', everything else to its normal form."""
    table: dict[int, str] = {}
    for ch in (*araby.TASHKEEL, araby.TATWEEL, araby.SMALL_ALEF, "\u0653", "\u0654", "\u0655", "\u0656"):
        table[ord(ch)] = ""
    for ch in BLANK_LETTERS:
        table[ord(ch)] = ""
    # Alef and hamza seats collapse to their bare letters; readers write them interchangeably.
    for ch in "أإآٱٲٳ":
        table[ord(ch)] = "ا"
    table[ord("ؤ")] = "و"
    table[ord("ئ")] = "ي"
    table[ord("ى")] = "ي"
    table[ord("ة")] = "ه"
    for ligature in araby.LIGUATURES:  # lam-alef ligatures with their hamza/madda variants
        table[ord(ligature)] = "لا"
    for src, dst in (HOMOGLYPHS | DIGITS).items():
        table[ord(src)] = dst
    table[ord("،")] = ","
    table[ord("؛")] = ";"
    table[ord("؟")] = "?"
    table[ord("٫")] = "."
    spaces = "\t\n\r\u00a0\u202f\u205f\u3000" + "".join(chr(c) for c in range(0x2000, 0x200B))
    for ch in spaces:
        table[ord(ch)] = " "
    return table


def _char_rewrite(ch: str) -> str:
    """The normal form of one character (table first, then NFKC for presentation forms)."""
    mapped = _char_table().get(ord(ch))
    if mapped is not None:
        return mapped
    if ch.isascii():
        return ch.lower()
    if unicodedata.category(ch) in INVISIBLE_CATEGORIES:
        return ""
    folded = unicodedata.normalize("NFKC", ch)
    if folded != ch:
        # Presentation forms and full-width letters: fold, then run the table over the result.
        return "".join(_char_table().get(ord(c), c) for c in folded).lower()
    return ch.lower()


@lru_cache(maxsize=65536)
def _cached_char_rewrite(ch: str) -> str:
    return _char_rewrite(ch)


# Separators inside a phone number: spacing punctuation, and emoji/pictographs spammers wedge
# between the digit groups ("050 👇 987 65 43").
_PHONE_SEP = r"[ .\-()/_\u2190-\u21ff\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff]"
_PHONE = re.compile(rf"(?<![\w+])\+?\d(?:{_PHONE_SEP}{{0,3}}\d){{7,}}(?!\w)")
_EMAIL = re.compile(r"[\w.+\-]+\s*(?:@|\[at\]|\(at\))\s*[\w\-]+(?:\s*\.\s*[a-z]{2,})+", re.I)
_URL = re.compile(
    r"(?:(?:https?|hxxps?|h\*\*ps?)\s*:\s*/\s*/\s*\S+)"
    r"|(?:www\s*\.\s*\S+)"
    # one-letter hosts only with a path, so prose like "a.m" stays text: t.me/x, t[.]me/x, x.com/y
    r"|(?:\b[a-z0-9]\s?(?:\.|\[\.\]|\(\.\))\s?(?:me|co|com|ly|io|gg|to)/\S+)"
    r"|(?:\b[a-z0-9\-]{2,}(?:\s?(?:\.|\[\.\]|\(\.\)|\bdot\b)\s?[a-z0-9\-]+)*"
    r"\s?(?:\.|\[\.\]|\(\.\)|\bdot\b)\s?"
    r"(?:com|net|org|ly|me|io|co|info|biz|xyz|site|online|link|app|tv|sa|ae|eg|ma|iq|top|shop|club"
    r"|store|live|gg|cc|ws|to|example|invalid)\b(?:/\S*)?)",
    re.I,
)
_MENTION = re.compile(r"@\w+(?:\.\w+)*")
# Four or more single letters separated by one space or dot: "و ا ت س ا ب", "c.a.s.h".
_SPACED_LETTERS = re.compile(r"(?<!\S)(?:[^\W\d_][ .·_\-*]){3,}[^\W\d_](?!\S)")
_SPACED_SEPARATORS = re.compile(r"[ .·_\-*]")
_REPEATS = re.compile(r"(\D)\1{2,}")
_SPACES = re.compile(r" {2,}")


@dataclass(frozen=True, slots=True)
class NormalizedText:
    """Normalized text plus, per output character, the [start, end) slice of the original."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def original_span(self, begin: int, end: int) -> tuple[int, int]:
        """Map a [begin, end) span of the normalized text back onto the original text."""
        if not self.text or end <= begin:
            return (0, 0)
        begin = max(0, min(begin, len(self.text) - 1))
        end = max(begin + 1, min(end, len(self.text)))
        return (self.starts[begin], self.ends[end - 1])


class _Tracked:
    """A string under rewrite that remembers where each of its characters came from."""

    __slots__ = ("ends", "starts", "text")

    def __init__(self, text: str, starts: list[int], ends: list[int]):
        self.text = text
        self.starts = starts
        self.ends = ends

    def sub(self, pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str]) -> None:
        pieces: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        last = 0
        matches = list(pattern.finditer(self.text))
        if not matches:  # most patterns match nothing in most comments: keep the map as it is
            return
        for match in matches:
            a, b = match.span()
            pieces.append(self.text[last:a])
            starts.extend(self.starts[last:a])
            ends.extend(self.ends[last:a])
            replacement = repl(match)
            if replacement:
                if b > a:
                    src_start, src_end = self.starts[a], self.ends[b - 1]
                else:
                    src_start = src_end = self.starts[a] if a < len(self.starts) else 0
                pieces.append(replacement)
                starts.extend([src_start] * len(replacement))
                ends.extend([src_end] * len(replacement))
            last = b
        pieces.append(self.text[last:])
        starts.extend(self.starts[last:])
        ends.extend(self.ends[last:])
        self.text = "".join(pieces)
        self.starts = starts
        self.ends = ends


def _mask(token: str) -> Callable[[re.Match[str]], str]:
    def replace(_match: re.Match[str]) -> str:
        return f" {token} "

    return replace


def _join_spaced(match: re.Match[str]) -> str:
    return _SPACED_SEPARATORS.sub("", match.group(0))


def _squeeze_repeats(match: re.Match[str]) -> str:
    return match.group(1) * 2


def _single_space(_match: re.Match[str]) -> str:
    return " "


def _may_hold_email(text: str) -> bool:
    # The e-mail pattern starts a match at every word character; most comments have no "@".
    if "@" in text:
        return True
    lowered = text.lower()
    return "[at]" in lowered or "(at)" in lowered


# Every URL alternative holds an ASCII letter or digit (under the same IGNORECASE folding), a phone
# a digit, a mention an "@", a run of spaces two spaces: text without them skips those patterns
# (most Arabic comments have none of them).
_URL_HINT = re.compile(r"[a-z0-9]", re.I)
_DIGIT = re.compile(r"\d")


def _has_mention_sign(text: str) -> bool:
    return "@" in text


def _has_double_space(text: str) -> bool:
    return "  " in text


# Order matters: e-mails before mentions (both have '@'), URLs before phones (URLs hold digits),
# letter spacing before repeats ("ه ه ه ه" is laughter either way).
# (pattern, replacement, cheap check that the pattern can match at all; None: always try it)
_SUBSTITUTIONS: tuple[
    tuple[re.Pattern[str], Callable[[re.Match[str]], str], Callable[[str], bool] | None], ...
] = (
    (_EMAIL, _mask(EMAIL_TOKEN), _may_hold_email),
    (_URL, _mask(URL_TOKEN), lambda text: _URL_HINT.search(text) is not None),
    (_PHONE, _mask(PHONE_TOKEN), lambda text: _DIGIT.search(text) is not None),
    (_MENTION, _mask(MENTION_TOKEN), _has_mention_sign),
    (_SPACED_LETTERS, _join_spaced, None),
    (_REPEATS, _squeeze_repeats, None),
    (_SPACES, _single_space, _has_double_space),
)


class _RewriteTable(dict[int, str]):
    """Code point → its rewrite, filled on first sight: lets str.translate do the per-char loop in C."""

    def __missing__(self, code: int) -> str:
        rewritten = _cached_char_rewrite(chr(code))
        self[code] = rewritten
        return rewritten


_REWRITE_TABLE = _RewriteTable()


def rewrite_chars(text: str) -> str:
    """Character-level normalization only (diacritics, letter forms, digits, invisibles)."""
    return text.translate(_REWRITE_TABLE)


def normalize(text: str) -> str:
    """Normalize a comment or article for features: letters, digits, masks, spacing."""
    if not text:
        return ""
    out = rewrite_chars(text)
    for pattern, repl, may_match in _SUBSTITUTIONS:
        if may_match is None or may_match(out):
            out = pattern.sub(repl, out)
    return out.strip()


# Length of each Basic Multilingual Plane code point's rewrite, -1 until first seen: one array lookup
# per comment instead of sorting its code points to look each distinct one up.
_BMP_WIDTHS = np.full(0x10000, -1, dtype=np.int16)


def _rewrite_widths(codes: np.ndarray) -> np.ndarray:
    """How many characters each code point becomes under `rewrite_chars`."""
    if codes.size and int(codes.max()) >= 0x10000:  # emoji and other astral characters: per distinct code
        distinct, inverse = np.unique(codes, return_inverse=True)
        found = [len(_REWRITE_TABLE[code]) for code in distinct.tolist()]
        return np.asarray(found, dtype=np.int64)[inverse]
    widths = _BMP_WIDTHS[codes]
    unseen = widths < 0
    if unseen.any():
        for code in set(codes[unseen].tolist()):
            _BMP_WIDTHS[code] = len(_REWRITE_TABLE[code])
        widths = _BMP_WIDTHS[codes]
    return widths.astype(np.int64)


def _rewrite_with_offsets(text: str) -> _Tracked:
    """`rewrite_chars(text)` and, per output character, the [start, end) slice of `text` it came from.

    A character rewritten to several (a ligature) gives each of them its own slice; a dropped mark
    (diacritic, tatweel, zero-width) belongs to the character before it, whose last output character
    then ends after the mark. Computed over code point arrays: a Python loop per character was most
    of an explanation's cost on long comments."""
    rewritten = rewrite_chars(text)
    n = len(text)
    widths = _rewrite_widths(np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32))
    starts = np.repeat(np.arange(n, dtype=np.int64), widths)
    ends = starts + 1
    kept = np.flatnonzero(widths)
    if len(kept):
        # The last output character of each kept one ends where the next kept character begins.
        last_output = np.cumsum(widths)[kept] - 1
        ends[last_output] = np.append(kept[1:], n)
    return _Tracked(rewritten, starts.tolist(), ends.tolist())


def normalize_with_offsets(text: str) -> NormalizedText:
    """Normalize like `normalize` and keep each output character's slice of the original."""
    tracked = _rewrite_with_offsets(text or "")
    for pattern, repl, may_match in _SUBSTITUTIONS:
        if may_match is None or may_match(tracked.text):
            tracked.sub(pattern, repl)
    # strip() without losing the map
    text_out = tracked.text
    left = len(text_out) - len(text_out.lstrip())
    right = len(text_out.rstrip())
    return NormalizedText(
        text=text_out[left:right],
        starts=tuple(tracked.starts[left:right]),
        ends=tuple(tracked.ends[left:right]),
    )


ARABIC_RANGE = re.compile(r"[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]")
LATIN_RANGE = re.compile(r"[A-Za-z\u00c0-\u024f]")


_ARABIC_RUN = re.compile(ARABIC_RANGE.pattern + "+")
_LATIN_RUN = re.compile(LATIN_RANGE.pattern + "+")


def script_profile(text: str) -> tuple[int, int]:
    """Count of Arabic-script and Latin-script letters in a text."""
    # Runs, not single letters: one match per word instead of one per letter (same counts).
    text = text or ""
    return sum(map(len, _ARABIC_RUN.findall(text))), sum(map(len, _LATIN_RUN.findall(text)))


# Three feature blocks ask for the script of the same comment; comments up to this length are
# remembered (at most 4096 of them: a few MB), longer texts (articles, cached per article) are not.
_SCRIPT_MEMO_CHARS = 1000


def dominant_script(text: str) -> str:
    """'arabic', 'latin', 'mixed' or 'none' from the letters of a text (masks are ignored)."""
    text = text or ""
    return _remembered_script(text) if len(text) <= _SCRIPT_MEMO_CHARS else _dominant_script(text)


@lru_cache(maxsize=4096)
def _remembered_script(text: str) -> str:
    return _dominant_script(text)


def _dominant_script(text: str) -> str:
    cleaned = text
    for token in MASK_TOKENS:
        cleaned = cleaned.replace(token, " ")
    arabic, latin = script_profile(cleaned)
    total = arabic + latin
    if total == 0:
        return "none"
    if arabic / total >= 0.8:
        return "arabic"
    if latin / total >= 0.8:
        return "latin"
    return "mixed"
