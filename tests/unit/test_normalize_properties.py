"""Property tests: any Unicode string normalizes without error and every span stays inside it."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.text.normalize import normalize, normalize_with_offsets

pytestmark = pytest.mark.unit

# Weighted towards what comment boxes actually receive: Arabic letters and marks, bidi and
# zero-width controls, emoji ZWJ sequences, digits of three scripts, plus anything at all.
ARABIC_LETTERS = list("ابتثجحخدذرزسشصضطظعغفقكلمنهوي")
MARKS_AND_CONTROLS = [
    "\u064e",
    "\u0651",
    "\u0640",
    "\u200b",
    "\u200c",
    "\u200d",
    "\u200f",
    "\u202b",
    "\u2067",
    "\ufeff",
]
DIGITS_AND_PUNCTUATION = ["٠", "٥", "۹", "0", "5", " ", ".", "@", "/", ":", "\x00", "\ufdfa", "\ufefb"]
EMOJI_AND_COMBINING = ["👨\u200d👩\u200d👧", "🇸🇦", "👍🏽", "e\u0301", "ﷺ"]
TRICKY = st.sampled_from(
    [*ARABIC_LETTERS, *MARKS_AND_CONTROLS, *DIGITS_AND_PUNCTUATION, *EMOJI_AND_COMBINING]
)
TEXT = st.lists(st.one_of(TRICKY, st.characters()), max_size=120).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
def test_any_text_normalizes_and_every_character_maps_inside_the_original(text: str) -> None:
    tracked = normalize_with_offsets(text)
    assert tracked.text == normalize(text)
    assert len(tracked.starts) == len(tracked.ends) == len(tracked.text)
    for start, end in zip(tracked.starts, tracked.ends, strict=True):
        assert 0 <= start < end <= len(text)


@settings(max_examples=300, deadline=None)
@given(TEXT, st.integers(min_value=-5, max_value=200), st.integers(min_value=-5, max_value=200))
def test_any_span_maps_back_inside_the_original(text: str, begin: int, end: int) -> None:
    tracked = normalize_with_offsets(text)
    a, b = tracked.original_span(begin, end)
    assert 0 <= a <= b <= len(text)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=5))
def test_lone_surrogates_escaped_in_json_do_not_break_normalization(surrogates: str) -> None:
    # A JSON body may carry "\ud800" escapes; Python decodes them to lone surrogates.
    text = json.loads(json.dumps("واتساب " + surrogates))
    tracked = normalize_with_offsets(text)
    assert tracked.text == normalize(text)


def test_spans_of_a_scored_comment_stay_inside_it(tiny_pipeline) -> None:
    from serving.model.moderation import CommentInput, ModerationModel

    thresholds = {"reject_at": {"spam": 0.8}, "review_at": {"spam": 0.3}}
    model = ModerationModel(tiny_pipeline, {"name": "t", "version": "1", "thresholds": thresholds})

    @settings(max_examples=60, deadline=None)
    @given(TEXT)
    def check(noise: str) -> None:
        text = f"واتساب ٠٥٥١٢٣٤٥٦٧ {noise} ربح مضمون"
        for span in model.score([CommentInput(text=text)])[0].spans:
            assert 0 <= span.begin < span.end <= len(text)

    check()
