"""Adversarial spam: the evasions themselves, and the model's catch rate under each of them.

The goal set is the starter corpus's spam in the FROZEN evaluation split, which the starter model
never trained on. Goal: under every evasion the model still catches >= 90 % of what it catches on
the plain texts.
"""

import random

import pytest

from serving.text.normalize import MASK_TOKENS, PHONE_TOKEN, URL_TOKEN, normalize
from training.bench import adversarial
from training.bench.adversarial import EVASIONS, PLAIN, apply, evaluate

pytestmark = [pytest.mark.model, pytest.mark.slow]

GOAL = 0.9
PHONE_AD = "قرض فوري بدون كفيل تواصل واتساب 0551234567"
LINK_AD = "اربح يوميا من التداول سجل الآن http://bit.ly/x7 او t.me/rabh_iq او profit-now.example/join"


def _masks(text: str) -> list[int]:
    return [normalize(text).count(token) for token in MASK_TOKENS]


def rng() -> random.Random:
    return random.Random(7)


@pytest.mark.parametrize("name", sorted(EVASIONS))
def test_every_evasion_changes_the_text_and_is_deterministic(name: str) -> None:
    text = f"{PHONE_AD} {LINK_AD} 🔥 whatsapp"
    evaded = EVASIONS[name](text, rng())
    assert evaded != text
    assert EVASIONS[name](text, rng()) == evaded


@pytest.mark.parametrize(
    "name", ["tatweel", "diacritics", "zero_width", "homoglyphs", "arabic_indic_digits", "persian_digits"]
)
def test_character_evasions_normalize_back_to_the_plain_text(name: str) -> None:
    for text in (PHONE_AD, LINK_AD, "Earn money from home with crypto, join now"):
        assert normalize(EVASIONS[name](text, rng())) == normalize(text)


def test_arabic_indic_phone_still_masks_as_phone() -> None:
    evaded = adversarial.arabic_indic_digits(PHONE_AD, rng())
    assert "٠٥٥١٢٣٤٥٦٧" in evaded
    assert PHONE_TOKEN in normalize(evaded)


@pytest.mark.parametrize("seed", range(8))
def test_split_phone_still_masks_as_phone(seed: int) -> None:
    evaded = adversarial.phone_split(PHONE_AD, random.Random(seed))
    assert "0551234567" not in evaded
    assert normalize(evaded) == normalize(PHONE_AD)


@pytest.mark.parametrize("seed", range(8))
def test_obfuscated_links_still_mask_as_urls(seed: int) -> None:
    evaded = adversarial.url_obfuscation(LINK_AD, random.Random(seed))
    assert "hxxp://" in evaded and "bit.ly" not in evaded and "t.me" not in evaded
    assert normalize(evaded).count(URL_TOKEN) == normalize(LINK_AD).count(URL_TOKEN) == 3


def test_letter_spacing_spaces_the_keyword_and_normalizes_back() -> None:
    evaded = adversarial.letter_spacing("راسلنا على واتساب الآن", rng())
    assert "و ا ت س ا ب" in evaded
    assert normalize(evaded) == normalize("راسلنا على واتساب الآن")


def test_emoji_padding_keeps_the_masks_even_inside_a_spaced_phone() -> None:
    text = "كلمنا ٠٥٠ ٩٨٧ ٦٥ ٤٣ او bit.ly/x7"
    for seed in range(8):
        assert _masks(adversarial.emoji_padding(text, random.Random(seed))) == _masks(text)


def test_evasions_keep_every_starter_spam_mask() -> None:
    """Across all starter spam and a few seeds, no evasion makes a masked link or phone vanish."""
    from tests.conftest import REPO
    from training.data.gather import load_starter

    texts = [r.text for r in load_starter(REPO / "data" / "starter") if r.label == "spam"]
    for name in EVASIONS:
        for seed in range(3):
            for plain, evaded in zip(texts, apply(name, texts, seed), strict=True):
                assert _masks(evaded) == _masks(plain), (name, seed, evaded)


# --- the goal: catch rate under evasion on spam the model never saw --------------------------------


@pytest.fixture(scope="module")
def frozen_spam(starter_result) -> list[str]:
    texts = [r.text for r in starter_result.frozen_records if r.label == "spam"]
    assert len(texts) >= 10, "too few frozen spam comments for a meaningful rate"
    return texts


@pytest.fixture(scope="module")
def adversarial_report(starter_model, frozen_spam) -> dict[str, dict[str, float]]:
    return evaluate(starter_model, frozen_spam, seed=0)


def test_plain_frozen_spam_is_mostly_caught(adversarial_report) -> None:
    assert adversarial_report[PLAIN]["caught"] >= 0.8


@pytest.mark.parametrize("name", sorted(EVASIONS))
def test_evasion_keeps_90_percent_of_the_plain_catch_rate(adversarial_report, name: str) -> None:
    row = adversarial_report[name]
    plain = adversarial_report[PLAIN]["caught"]
    assert row["relative"] >= GOAL, f"{name}: caught {row['caught']:.1%} vs plain {plain:.1%}"
