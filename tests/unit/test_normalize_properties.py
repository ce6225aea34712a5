"""Property tests: any Unicode string normalizes without error and every span stays inside it."""

import json
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.text.normalize import normalize, normalize_with_offsets, rewrite_chars

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


def _character_map(text: str) -> tuple[str, list[int], list[int]]:
    """The character rewrite with offsets, one character at a time: the definition the array version
    of normalize_with_offsets must keep (marks dropped into the character before them)."""
    out, starts, ends = "", [], []
    for index, ch in enumerate(text):
        rewritten = rewrite_chars(ch)
        out += rewritten
        starts += [index] * len(rewritten)
        ends += [index + 1] * len(rewritten)
        if not rewritten and ends:
            ends[-1] = index + 1
    return out, starts, ends


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(TRICKY, st.characters()), max_size=80).map("".join))
def test_character_offsets_follow_their_character_by_character_definition(text: str) -> None:
    # Spaces and everything a substitution could rewrite are left out: this checks the first pass only.
    text = "".join(ch for ch in text if ch.isalpha() or unicodedata.category(ch) in ("Mn", "Cf", "Lm"))
    tracked = normalize_with_offsets(text)
    out, starts, ends = _character_map(text)
    if tracked.text == out:  # no substitution and nothing stripped: the maps must agree exactly
        assert (list(tracked.starts), list(tracked.ends)) == (starts, ends)


def test_a_ligature_maps_each_of_its_letters_to_itself_and_marks_to_their_letter() -> None:
    tracked = normalize_with_offsets("\ufefbحَّد")
    assert tracked.text == "لاحد"
    assert list(tracked.starts) == [0, 0, 1, 4]
    assert list(tracked.ends) == [1, 1, 4, 5]
