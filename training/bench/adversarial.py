"""Adversarial spam: the character tricks spammers use to slip past a text classifier.

Each evasion is a pure function `(text, rng) -> text`, deterministic for a seeded `random.Random`.
`evaluate` scores a model on plain texts and on every evasion of them, and reports per evasion the
share the model still catches (action is not approve) and that share relative to the plain one.

    python -m training.bench.adversarial [BUNDLE_DIR]     # default models/champion

The command-line run uses the starter corpus's spam in the frozen evaluation split (the same
article-grouped hash split training uses), so a bundle trained on the starter corpus has never
seen these texts. It prints a table and writes nothing.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from serving.schema import DEFAULT_BUNDLE_DIR

Evasion = Callable[[str, random.Random], str]

TATWEEL = "\u0640"
DIACRITICS = ("\u064e", "\u0650", "\u064f", "\u0652", "\u0651")  # fatha, kasra, damma, sukun, shadda
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d")
EMOJI = ("🔥", "👇", "💰", "✅", "👉", "⭐", "💯", "📲", "🎁", "❤️")

# Arabic letters proper (hamza..yeh, plus alef wasla); excludes tatweel, marks and digits.
_ARABIC_LETTER = re.compile(r"[\u0621-\u063a\u0641-\u064a\u0671]")
_LETTER = re.compile(r"[^\W\d_]")

LATIN_HOMOGLYPHS = {"a": "а", "o": "о", "e": "е", "p": "р", "c": "с"}  # -> Cyrillic
ARABIC_HOMOGLYPHS = {"ك": "ک", "ي": "ی", "ه": "ہ"}  # -> Persian/Urdu forms
HOMOGLYPHS = LATIN_HOMOGLYPHS | ARABIC_HOMOGLYPHS

ARABIC_INDIC_DIGITS = str.maketrans({str(d): chr(0x0660 + d) for d in range(10)})
PERSIAN_DIGITS = str.maketrans({str(d): chr(0x06F0 + d) for d in range(10)})

# Words a spammer spaces out so a keyword filter misses them ("و ا ت س ا ب").
SPAM_WORDS = frozenset(
    {
        "واتساب",
        "واتس",
        "تلجرام",
        "تلگرام",
        "تليجرام",
        "انستقرام",
        "انستغرام",
        "قرض",
        "اربح",
        "ربح",
        "مضمون",
        "مضمونة",
        "مجانا",
        "الروحاني",
        "روحاني",
        "كلمنا",
        "تواصل",
        "سجل",
        "whatsapp",
        "telegram",
        "followers",
        "crypto",
        "free",
        "earn",
        "money",
        "subscribe",
        "kalemna",
    }
)

# A run of 8+ digits (any script), possibly already split by spaces, dots or dashes.
_DIGIT_RUN = re.compile(r"(?<![\w+])\+?\d(?:[ .\-]?\d){7,}(?!\w)")
_SCHEME = re.compile(r"\bhttp(s?)://", re.I)
# host.tld with an optional path: t.me/x, bit.ly/x, dating-gulf.example, www.site.com/a
_HOST = re.compile(r"\b((?:[a-z0-9\-]+\.)+)([a-z]{2,})(?=[/\s,;:!?)\]]|$)", re.I)
_WORD = re.compile(r"\S+")


def _between_letters(
    text: str, rng: random.Random, letter: re.Pattern[str], pick: Callable[[], str], p: float
) -> str:
    """Insert pick() between two adjacent letters (both matching `letter`) with probability p."""
    out: list[str] = []
    for i, ch in enumerate(text):
        out.append(ch)
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if letter.match(ch) and nxt and letter.match(nxt) and rng.random() < p:
            out.append(pick())
    return "".join(out)


def tatweel(text: str, rng: random.Random) -> str:
    """Stretch Arabic words with tatweel (kashida) between letters: "قرض" -> "قـرـض"."""
    return _between_letters(text, rng, _ARABIC_LETTER, lambda: TATWEEL * rng.randint(1, 3), 0.6)


def diacritics(text: str, rng: random.Random) -> str:
    """Random fatha/kasra/damma/sukun/shadda on Arabic letters."""
    out: list[str] = []
    for ch in text:
        out.append(ch)
        if _ARABIC_LETTER.match(ch) and rng.random() < 0.6:
            out.append(rng.choice(DIACRITICS))
    return "".join(out)


def zero_width(text: str, rng: random.Random) -> str:
    """Zero-width space/non-joiner/joiner between the letters of words (any script)."""
    return _between_letters(text, rng, _LETTER, lambda: rng.choice(ZERO_WIDTH), 0.5)


def _letters_only(word: str) -> bool:
    return len(word) >= 4 and all(_LETTER.match(ch) for ch in word)


def letter_spacing(text: str, rng: random.Random) -> str:
    """Space out the letters of the words that matter: "واتساب" -> "و ا ت س ا ب".

    The words that matter are the known spam words in the text; a text with none gets its
    longest all-letter word spaced instead. Punctuation stuck to a word stays attached outside.
    """
    del rng  # deterministic: the choice of words does not need chance
    tokens = text.split(" ")
    cores = []
    for token in tokens:
        match = re.fullmatch(r"(\W*)(.*?)(\W*)", token)
        assert match is not None
        cores.append(match.groups())
    targets = {
        i for i, (_, core, _) in enumerate(cores) if core.lower() in SPAM_WORDS and _letters_only(core)
    }
    if not targets:
        candidates = [(len(core), -i, i) for i, (_, core, _) in enumerate(cores) if _letters_only(core)]
        if candidates:
            targets = {max(candidates)[2]}
    out = []
    for i, (lead, core, trail) in enumerate(cores):
        if i in targets:
            out.append(f"{lead}{' '.join(core)}{trail}")
        else:
            out.append(tokens[i])
    return " ".join(out)


def homoglyphs(text: str, rng: random.Random) -> str:
    """Cyrillic а/о/е/р/с for Latin a/o/e/p/c; Persian ک/ی/ہ for Arabic ك/ي/ه."""
    return "".join(HOMOGLYPHS[ch] if ch in HOMOGLYPHS and rng.random() < 0.7 else ch for ch in text)


def arabic_indic_digits(text: str, rng: random.Random) -> str:
    """Western digits 0-9 as Arabic-Indic ٠-٩."""
    del rng
    return text.translate(ARABIC_INDIC_DIGITS)


def persian_digits(text: str, rng: random.Random) -> str:
    """Western digits 0-9 as Persian (extended Arabic-Indic) ۰-۹."""
    del rng
    return text.translate(PERSIAN_DIGITS)


def _regroup_phone(digits: str, rng: random.Random) -> str:
    style = rng.choice(("spaces", "dots", "dashes", "pairs"))
    if style == "dots":
        groups = [digits[:3], digits[3:6], digits[6:]]
        return ".".join(g for g in groups if g)
    if style == "dashes":
        groups = [digits[:4], digits[4:7], digits[7:]]
        return "-".join(g for g in groups if g)
    if style == "pairs":
        head, rest = digits[:3], digits[3:]
        return " ".join([head, *(rest[i : i + 2] for i in range(0, len(rest), 2))])
    head, mid, rest = digits[:3], digits[3:6], digits[6:]
    return " ".join([head, mid, *(rest[i : i + 2] for i in range(0, len(rest), 2))])


def phone_split(text: str, rng: random.Random) -> str:
    """Phone numbers re-split by spaces, dots or dashes: "0551234567" -> "055 123 45 67"."""

    def split(match: re.Match[str]) -> str:
        raw = match.group(0)
        plus = "+" if raw.startswith("+") else ""
        digits = re.sub(r"\D", "", raw)
        return plus + _regroup_phone(digits, rng)

    return _DIGIT_RUN.sub(split, text)


def url_obfuscation(text: str, rng: random.Random) -> str:
    """Defanged links: "http://" -> "hxxp://", "bit.ly/x" -> "bit . ly/x", "a.example" -> "a[.]example"."""
    text = _SCHEME.sub(lambda m: f"hxxp{m.group(1)}://", text)

    def defang(match: re.Match[str]) -> str:
        dot = rng.choice((" . ", "[.]", "(.)"))
        labels = match.group(1)[:-1].split(".")
        return dot.join([*labels, match.group(2)])

    return _HOST.sub(defang, text)


def emoji_padding(text: str, rng: random.Random) -> str:
    """Emoji between words."""
    words = text.split(" ")
    out = [words[0]]
    for word in words[1:]:
        if rng.random() < 0.6:
            out.append(rng.choice(EMOJI))
        out.append(word)
    return " ".join(out)


EVASIONS: dict[str, Evasion] = {
    "tatweel": tatweel,
    "diacritics": diacritics,
    "zero_width": zero_width,
    "letter_spacing": letter_spacing,
    "homoglyphs": homoglyphs,
    "arabic_indic_digits": arabic_indic_digits,
    "persian_digits": persian_digits,
    "phone_split": phone_split,
    "url_obfuscation": url_obfuscation,
    "emoji_padding": emoji_padding,
}

PLAIN = "plain"


def apply(name: str, texts: Sequence[str], seed: int = 0) -> list[str]:
    """Every text under one evasion, each with its own rng seeded from (seed, evasion, index)."""
    evasion = EVASIONS[name]
    return [evasion(text, random.Random(f"{seed}:{name}:{i}")) for i, text in enumerate(texts)]


def catch_rate(model: Any, texts: Sequence[str]) -> float:
    """Share of texts whose decided action is not approve (one batch, no article)."""
    from serving.model.decisions import APPROVE
    from serving.model.moderation import CommentInput

    if not texts:
        return 0.0
    scored = model.score([CommentInput(text=t) for t in texts], explain=False)
    return sum(s.action != APPROVE for s in scored) / len(scored)


def evaluate(model: Any, texts: Sequence[str], seed: int = 0) -> dict[str, dict[str, float]]:
    """{evasion: {"caught": rate, "relative": rate / plain rate}}, plus the "plain" row itself."""
    plain = catch_rate(model, texts)
    report = {PLAIN: {"caught": plain, "relative": 1.0}}
    for name in EVASIONS:
        caught = catch_rate(model, apply(name, texts, seed))
        relative = caught / plain if plain else (1.0 if caught == 0 else float("inf"))
        report[name] = {"caught": caught, "relative": relative}
    return report


def frozen_spam_texts(starter_dir: str | Path = "data/starter") -> list[str]:
    """The starter corpus's spam in the frozen evaluation split (never trained on)."""
    from training.data.gather import load_starter, split_frozen

    _, frozen = split_frozen(load_starter(starter_dir))
    return [r.text for r in frozen if r.label == "spam"]


def format_table(report: dict[str, dict[str, float]], goal: float = 0.9) -> str:
    """The report as a fixed-width table."""
    lines = [f"{'evasion':<22}{'caught':>8}{'relative':>10}  goal>={goal:.0%}"]
    for name, row in report.items():
        ok = "" if name == PLAIN else ("ok" if row["relative"] >= goal else "MISS")
        lines.append(f"{name:<22}{row['caught']:>8.1%}{row['relative']:>10.2f}  {ok}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from serving.model.moderation import ModerationModel

    args = list(sys.argv[1:] if argv is None else argv)
    bundle = Path(args[0]) if args else DEFAULT_BUNDLE_DIR
    root = Path(__file__).resolve().parents[2]
    texts = frozen_spam_texts(root / "data" / "starter")
    model = ModerationModel.from_bundle(bundle)
    print(f"bundle {bundle}: {len(texts)} frozen-split starter spam comments")
    print(format_table(evaluate(model, texts)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
