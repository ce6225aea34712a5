"""Behavioural tests of the starter model: minimum functionality, invariance and direction.

Texts here are written for these tests (not taken from the training data), so they probe
generalisation rather than recall.
"""

import pytest

from serving.model.decisions import APPROVE
from serving.model.moderation import CommentInput

pytestmark = [pytest.mark.model, pytest.mark.slow]

ON_TOPIC_SEED = "الفصائل المسلحة لن تتوقف عن مهاجمة القواعد الأمريكية ما دامت إيران تمولها وتحميها"
CHEER = "الهلال بطل الدوري هذا الموسم يا جماعة"
VOCATIVE_CHEER = "يا هلال يا زعيم، الدوري لكم هذا الموسم 💙"
INSULT = "اسكت يا حمار يا جاهل يا حقير"


def _score(model, text, article=None):
    item = CommentInput(
        text=text,
        article_title=article["title"] if article else None,
        article_text=article["text"] if article else None,
    )
    return model.score([item])[0]


def _seed_article(seed_case):
    return {"title": seed_case["article_title"], "text": seed_case["article_text"]}


def test_seed_comment_is_not_on_topic_and_not_approved(starter_model, seed_case) -> None:
    result = _score(starter_model, seed_case["text"], _seed_article(seed_case))
    assert result.label != "on_topic"
    assert result.action != APPROVE


def test_on_topic_arabic_comment_under_seed_article(starter_model, seed_case) -> None:
    result = _score(starter_model, ON_TOPIC_SEED, _seed_article(seed_case))
    assert result.label == "on_topic"
    assert result.action == APPROVE


def test_same_cheer_depends_on_the_article(starter_model, seed_case, starter_articles) -> None:
    sport = starter_articles["starter-a03"]  # Hilal v Nasr
    under_sport = _score(starter_model, CHEER, sport)
    under_politics = _score(starter_model, CHEER, _seed_article(seed_case))
    assert under_sport.label == "on_topic"
    assert under_politics.label == "off_topic"
    assert under_politics.scores["off_topic"] > under_sport.scores["off_topic"] + 0.3


def test_vocative_cheer_is_held_under_the_wrong_article(starter_model, seed_case, starter_articles) -> None:
    sport = starter_articles["starter-a03"]
    under_sport = _score(starter_model, VOCATIVE_CHEER, sport)
    under_politics = _score(starter_model, VOCATIVE_CHEER, _seed_article(seed_case))
    # Not off-topic under the sports story (the starter model still holds the vocative as possible
    # abuse there: the known weakness below).
    assert under_sport.label != "off_topic" and under_sport.scores["off_topic"] < 0.5
    assert under_politics.action != APPROVE
    assert under_politics.scores["off_topic"] > under_sport.scores["off_topic"] + 0.3


@pytest.mark.xfail(
    strict=True,
    reason="known weakness: the starter model reads the vocative 'يا … يا …' of a cheer as abuse "
    "(abusive 0.48 vs off_topic 0.46 under the seed article); needs more vocative non-abusive data",
)
def test_vocative_cheer_is_off_topic_not_abusive_under_the_wrong_article(starter_model, seed_case) -> None:
    assert _score(starter_model, VOCATIVE_CHEER, _seed_article(seed_case)).label == "off_topic"


@pytest.mark.parametrize(
    "variant",
    [
        "الفَصَائِلُ المُسَلَّحَةُ لَنْ تَتَوَقَّفَ عَنْ مُهَاجَمَةِ القَوَاعِدِ الأَمْرِيكِيَّةِ ما دامت إيران تمولها وتحميها",
        "الفصـــائل المسلحــــة لن تتوقـــف عن مهاجمة القواعد الأمريكيـــة ما دامت إيران تمولها وتحميها",
        "الفصائل\u200c المسلحة لن\u200b تتوقف عن مهاجمة القواعد الأمريكية ما دامت إيران تمولها وتحميها",
    ],
)
def test_diacritics_tatweel_and_zero_width_do_not_change_scores(starter_model, seed_case, variant) -> None:
    plain = _score(starter_model, ON_TOPIC_SEED, _seed_article(seed_case))
    decorated = _score(starter_model, variant, _seed_article(seed_case))
    for label, p in plain.scores.items():
        assert decorated.scores[label] == pytest.approx(p, abs=0.03)


def test_spam_with_arabic_indic_phone_is_caught(starter_model, seed_case) -> None:
    text = "مطلوب موظفين للعمل من المنزل براتب ٨٠٠٠ ريال تواصل واتساب ٠٥٠٧٧٧٦٦٥٥"
    result = _score(starter_model, text, _seed_article(seed_case))
    assert result.label == "spam"
    assert result.action != APPROVE
    flagged = [text[s.begin : s.end] for s in result.spans]
    assert any("٠٥٠٧٧٧٦٦٥٥" in piece for piece in flagged)


@pytest.mark.parametrize("article_id", [None, "starter-a03", "starter-a05", "starter-a13"])
def test_insult_is_abusive_whatever_its_article(starter_model, starter_articles, article_id) -> None:
    article = starter_articles[article_id] if article_id else None
    result = _score(starter_model, INSULT, article)
    assert result.label == "abusive"


def test_english_minimum_functionality(starter_model, starter_articles) -> None:
    phone = starter_articles["starter-a09"]  # English-titled phone launch
    assert (
        _score(
            starter_model, "Free iPhone giveaway!!! subscribe to my channel http://promo.example/win", phone
        ).label
        == "spam"
    )
    assert _score(starter_model, "you are a stupid idiot, shut up", phone).label == "abusive"
    assert (
        _score(
            starter_model, "The battery life on the X7 looks much better than last year's model", phone
        ).label
        == "on_topic"
    )


def test_direction_adding_a_phone_number_raises_spam(starter_model, seed_case) -> None:
    base = _score(starter_model, ON_TOPIC_SEED, _seed_article(seed_case))
    with_phone = _score(starter_model, ON_TOPIC_SEED + " للتواصل واتساب 0551239876", _seed_article(seed_case))
    assert with_phone.scores["spam"] > base.scores["spam"]


def test_no_article_is_neutral_for_a_generic_reaction(starter_model) -> None:
    result = _score(starter_model, "الله يحفظ البلاد وأهلها")
    assert result.label == "on_topic"
