"""Explanations: the character heat behind spans, and spans on the original text."""

import numpy as np
import pytest

from serving.model.explain import character_heat, spans_from_ngrams

pytestmark = pytest.mark.unit


def _heat_occurrence_by_occurrence(text: str, ngram_weights: list[tuple[str, float]]) -> np.ndarray:
    heat = np.zeros(len(text), dtype=np.float32)
    for gram, weight in ngram_weights:
        needle = gram.strip()
        if not needle:
            continue
        for start in range(len(text) - len(needle) + 1):
            if text.startswith(needle, start):
                heat[start : start + len(needle)] += weight
    return heat


@pytest.mark.parametrize(
    "text, ngram_weights",
    [
        # overlapping occurrences of one gram, a gram inside another, a padded char gram
        ("هههههه واتساب واتساب", [("هه", 0.3), (" وات", 1.7), ("واتساب", 0.123456789), ("تس", 1e-3)]),
        ("buy now buy now buynow", [("buy", 0.5), ("now", 0.25), ("y n", 0.1), (" ", 9.0)]),
        ("ما في شيء هنا", [("xyz", 1.0)]),
    ],
)
def test_character_heat_adds_every_occurrence_in_order(
    text: str, ngram_weights: list[tuple[str, float]]
) -> None:
    expected = _heat_occurrence_by_occurrence(text, ngram_weights)
    heat = character_heat(text, ngram_weights)
    if not expected.any():
        assert heat is None
        return
    assert heat is not None and heat.dtype == np.float32
    np.testing.assert_array_equal(heat, expected)


def test_spans_cover_whole_words_of_the_original_text() -> None:
    original = "راسلني على الواتساب الآن، عرض خاص"
    spans = spans_from_ngrams(original, [("واتس", 2.0), ("ساب", 1.0)], probability=0.9)
    assert len(spans) == 1
    assert original[spans[0].begin : spans[0].end] == "الواتساب"
    assert spans[0].score == pytest.approx(0.9)
