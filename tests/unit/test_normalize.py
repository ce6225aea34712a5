"""Each normalization rule, and the map from normalized characters back to the original."""

import pyarabic.araby as araby
import pytest

from serving.text.normalize import (
    EMAIL_TOKEN,
    MENTION_TOKEN,
    PHONE_TOKEN,
    URL_TOKEN,
    dominant_script,
    normalize,
    normalize_with_offsets,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("كَتَبَ الطَّالِبُ", "كتب الطالب"),  # tashkeel incl. shadda
        ("مـــــبروك", "مبروك"),  # tatweel
        ("أحمد إبراهيم آمن ٱلله", "احمد ابراهيم امن الله"),  # alef/hamza forms
        ("مؤتمر رئيس", "موتمر رييس"),  # hamza on waw / yeh
        ("على مستشفى", "علي مستشفي"),  # alef maqsura
        ("مدرسة جميلة", "مدرسه جميله"),  # taa marbuta
        ("ﻻ ﻷ ﻹ ﻵ", "لا لا لا لا"),  # lam-alef ligatures
        ("عام ٢٠٢٤ و ۱۴۰۳ و ٥٦", "عام 2024 و 1403 و 56"),  # Arabic-Indic and Persian digits
        ("وا\u200bتس\u200cا\u200dب", "واتساب"),  # zero-width characters
        ("\u202bمرحبا\u202c \u2067عالم\u2069", "مرحبا عالم"),  # bidi controls
        # Tag characters (U+E0000-E007F, category Cf) hidden inside a word, and a soft hyphen.
        ("وات\U000e0041\U000e007fساب", "واتساب"),
        ("what\u00adsapp", "whatsapp"),
        ("ش\u2064ك\u2063ر\ufe0fا", "شكرا"),  # invisible operators, a variation selector
        ("رووووعة", "رووعه"),  # elongated letters squeezed to two
        ("و ا ت س ا ب", "واتساب"),  # letter-spaced words
        ("c.a.s.h", "cash"),
        ("ﻣﺮﺣﺒﺎ", "مرحبا"),  # presentation forms
        ("کتاب یومی", "كتاب يومي"),  # Persian kaf/yeh
        ("Hello WORLD", "hello world"),
    ],
)
def test_character_rules(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_tashkeel_rule_agrees_with_pyarabic() -> None:
    text = "السَّلَامُ عَلَيْكُمْ وَرَحْمَةُ اللهِ"
    assert normalize(text) == normalize(araby.strip_tashkeel(text))


@pytest.mark.parametrize(
    ("raw", "token"),
    [
        ("زوروا https://example.com/offer الان", URL_TOKEN),
        ("hxxp://bad.example/x", URL_TOKEN),
        ("bit . ly/abc123", URL_TOKEN),
        ("www.win-now.example", URL_TOKEN),
        ("راسلني a.b+c@gmail.com", EMAIL_TOKEN),
        ("name [at] mail . com", EMAIL_TOKEN),
        ("اتصل 0551234567", PHONE_TOKEN),
        ("اتصل ٠٥٥١٢٣٤٥٦٧", PHONE_TOKEN),  # Arabic-Indic
        ("واتساب 05 5 123 45 67", PHONE_TOKEN),  # spaced
        ("call +966.55.123.4567", PHONE_TOKEN),  # dotted
        ("@someone شكرا", MENTION_TOKEN),
    ],
)
def test_masks(raw: str, token: str) -> None:
    assert token in normalize(raw).split()


def test_short_numbers_are_not_phones() -> None:
    assert PHONE_TOKEN not in normalize("يوجد 2500 جندي منذ عام 2014")


@pytest.mark.parametrize(
    "raw",
    [
        "كَتَبَ مـــــحمد الدرسَ ٠٥٥١٢٣٤٥٦٧",
        "Please send me all your news",
        "زوروا bit . ly/abc و ا ت س ا ب",
        "  \u200b  ",
        "",
        "😀👍🏽 👨‍👩‍👧",
    ],
)
def test_offsets_agree_with_fast_path_and_stay_inside(raw: str) -> None:
    tracked = normalize_with_offsets(raw)
    assert tracked.text == normalize(raw)
    assert len(tracked.starts) == len(tracked.text) == len(tracked.ends)
    for start, end in zip(tracked.starts, tracked.ends, strict=True):
        assert 0 <= start < end <= len(raw)


def test_masked_phone_maps_back_to_original_digits() -> None:
    raw = "اتصل على ٠٥٥١٢٣٤٥٦٧ الآن"
    tracked = normalize_with_offsets(raw)
    i = tracked.text.index(PHONE_TOKEN)
    begin, end = tracked.original_span(i, i + len(PHONE_TOKEN))
    assert raw[begin:end] == "٠٥٥١٢٣٤٥٦٧"


def test_stretched_word_maps_to_whole_original_word() -> None:
    raw = "يا حـــمار"
    tracked = normalize_with_offsets(raw)
    i = tracked.text.index("حمار")
    begin, end = tracked.original_span(i, i + 4)
    assert raw[begin:end] == "حـــمار"


def test_diacritics_belong_to_their_letter() -> None:
    raw = "كَلْب"
    tracked = normalize_with_offsets(raw)
    assert tracked.text == "كلب"
    assert raw[slice(*tracked.original_span(0, 3))] == raw


@pytest.mark.parametrize(
    ("text", "script"),
    [
        ("مرحبا بكم", "arabic"),
        ("hello there", "latin"),
        ("hello مرحبا", "mixed"),
        ("123 !!", "none"),
        (f"مرحبا {URL_TOKEN}", "arabic"),
    ],
)
def test_dominant_script(text: str, script: str) -> None:
    assert dominant_script(text) == script


def test_every_format_character_is_invisible_to_the_model() -> None:
    # Not a hand list: every Cf code point in Unicode is deleted, so a new one cannot slip past.
    import sys
    import unicodedata

    from serving.text.normalize import normalize

    format_chars = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
    assert len(format_chars) > 150
    leaked = [f"U+{ord(ch):04X}" for ch in format_chars if normalize(f"ab{ch}cd") != "abcd"]
    assert leaked == []
