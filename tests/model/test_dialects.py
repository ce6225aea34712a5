"""Abuse that means abuse, in every dialect group: polite, angry or religious comments are not abusive.

Texts are written for these tests and are not in the starter corpus. The model under test is the
starter model (trained in seconds), whose review thresholds come from one source's cross-validation:
these tests hold its probabilities and labels, not its review decisions; the public model's
thresholds and its held shares per unseen source are in experiments/RESULTS.md.
"""

import pytest

from serving.model.moderation import CommentInput
from serving.schema import ABUSIVE

pytestmark = [pytest.mark.model, pytest.mark.slow]

# Not abusive: polite, angry, sarcastic or a religious formula, one per dialect group, some with a
# vocative ("يا ..."), which addresses someone and insults no one.
NOT_ABUSIVE = {
    "iraqi": "يا أخي الكريم، والله العراقيين تعبوا من الحروب ويردون يعيشون بسلام",
    "gulf": "الله يعطيك العافية على الخبر، بس ودنا يسوون شي للناس صدق",
    "levantine": "يا ريت الحكومة تسمع لهالناس، الوضع صار صعب كتير",
    "egyptian": "يا جماعة الموضوع ده محتاج حل بجد، ربنا يصلح الحال",
    "maghrebi": "الله يعطيك الصحة، هاد الشي مزيان ولكن خاصنا نشوفو النتيجة",
    "msa": "أختلف مع الكاتب في بعض ما قاله، لكن المقال يطرح أسئلة مهمة",
}

# Arabizi (Arabic in Latin letters), polite: tested on the public abusive head
# (tests/model/test_abuse_head.py); the starter model has too few Arabizi comments to judge it.
NOT_ABUSIVE_ARABIZI = "sa7a 3la el maqal ya kho, rabi ywaf9kom"

# Not abusive either: sarcasm, anger at a policy and a religious formula are not insults. Tested on
# the public abusive head (tests/model/test_abuse_head.py).
NOT_ABUSIVE_TONES = {
    "sarcastic_egyptian": "طبعا الحكومة عبقرية، كل يوم إنجاز جديد في الأسعار",
    "angry_gulf": "والله حرام اللي يصير، وين المسؤولين عن هالفوضى؟",
    "religious_msa": "إنا لله وإنا إليه راجعون، رحم الله الضحايا وصبر أهلهم",
    "angry_levantine": "ما بقى فينا نتحمل، الكهربا مقطوعة والأسعار نار",
}

# Abusive: an insult aimed at a person or group in each dialect group.
ABUSIVE_TEXTS = {
    "iraqi": "انت واحد زمال وحرامي وابن كلب",
    "gulf": "يا حيوان يا وصخ انقلع من هنا",
    "levantine": "يلعن أبوك يا حمار يا واطي",
    "egyptian": "يا ابن الجزمة يا حرامي يا كلب",
    "maghrebi": "الله ينعل والديك يا الحمار يا ولد الحرام",
    "msa": "أنتم كلاب حقيرة وخونة لا تستحقون الحياة",
    "arabizi": "inta kalb w 7mar, skot",
}

# Abusive without a classic insult word: a threat, and a sectarian slur. Tested on the public
# abusive head (tests/model/test_abuse_head.py).
ABUSIVE_KINDS = {
    "threat": "والله لنذبحك يا خاين انت وكل عيلتك",
    "sectarian": "الروافض الأنجاس مجوس لا يستحقون العيش",
}

# The Iraqi comment from issue 14 that the previous model scored 0.87 abusive.
IRAQI_ISSUE_COMMENT = "والله العراقيين تعبوا من الحروب، خلّي الامريكان يطلعون"


def _articles(seed_case, starter_articles):
    seed = {"title": seed_case["article_title"], "text": seed_case["article_text"]}
    return {
        "none": None,
        "seed": seed,
        "title_only": {"title": seed["title"], "text": None},
        "sport": starter_articles["starter-a03"],
    }


def _score(model, text, article):
    item = CommentInput(
        text=text,
        article_title=article["title"] if article else None,
        article_text=article["text"] if article else None,
    )
    return model.score([item])[0]


@pytest.mark.parametrize("dialect", sorted(NOT_ABUSIVE))
def test_a_polite_comment_is_not_abusive_under_any_article_or_none(
    starter_model, seed_case, starter_articles, dialect: str
) -> None:
    for where, article in _articles(seed_case, starter_articles).items():
        result = _score(starter_model, NOT_ABUSIVE[dialect], article)
        # The most likely label is not abusive. (The starter model's abusive review_at, chosen for
        # 90 % recall on 600 comments of one source, is low enough to send some of these to review;
        # the public model's head, with thresholds from unseen sources, does not: test_abuse_head.py.)
        top = max(result.scores, key=result.scores.__getitem__)
        assert top != ABUSIVE, (dialect, where, result.scores)
        assert result.scores[ABUSIVE] < 0.5, (dialect, where, result.scores)


def test_the_iraqi_comment_from_the_issue_is_not_abusive(starter_model, seed_case, starter_articles) -> None:
    for where, article in _articles(seed_case, starter_articles).items():
        result = _score(starter_model, IRAQI_ISSUE_COMMENT, article)
        assert result.label != ABUSIVE, (where, result.scores)
        assert result.scores[ABUSIVE] < 0.5, (where, result.scores)


@pytest.mark.parametrize("dialect", sorted(ABUSIVE_TEXTS))
def test_an_insult_is_abusive_in_every_dialect_group(starter_model, seed_case, dialect: str) -> None:
    article = {"title": seed_case["article_title"], "text": seed_case["article_text"]}
    for context in (None, article):
        result = _score(starter_model, ABUSIVE_TEXTS[dialect], context)
        assert result.label == ABUSIVE, (dialect, result.scores)
