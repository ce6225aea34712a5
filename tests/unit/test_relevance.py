"""The relevance component: topical tokens, relation features, the per-context model and its article
cache, the off_topic rule and serving's relation reason, on a small corpus written for these tests.

The corpus: 12 articles in 3 topics (football, parliament, fuel prices), 4 each; under every
article 6 comments of its topic and 2 generic thanks. The feature spaces are fitted with small
settings (and `rare_df=0.5`, since in a corpus of 12 articles every topical word is used under at
least 1/12 of them), so the module fits in about a second.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

import serving.model.relevance as relevance_module
from serving.features.article_cache import ArticleCache
from serving.features.ngrams import HashedNgrams
from serving.features.prepare import CommentPreprocessor
from serving.features.relevance import ALL_FAMILIES, DEFAULT_FAMILIES, FAMILIES, RelevanceFeatures
from serving.features.topics import CharGrams, Tfidf, Words, topic_words
from serving.model.composed import ComposedClassifier, apply_relevance
from serving.model.moderation import CommentInput, ModerationModel
from serving.model.relevance import (
    ABOUT_ELSE,
    ABOUT_THIS,
    GENERIC,
    NO_ARTICLE,
    OTHER_SCRIPT,
    RELATIONS,
    REVIEW_AT,
    RelevanceModel,
    _rescale,
)
from serving.text.normalize import normalize

pytestmark = pytest.mark.unit

ARTICLES: dict[str, tuple[str, str]] = {
    "f1": (
        "الهلال يفوز على النصر في قمة الدوري",
        "سجل مهاجم الهلال هدفين في الشوط الثاني وحافظ الفريق على صدارة الدوري أمام جماهير غفيرة",
    ),
    "f2": (
        "المنتخب يتأهل إلى نهائي كأس آسيا",
        "تأهل المنتخب إلى المباراة النهائية بعد فوزه بركلات الترجيح وتألق الحارس في التصدي للركلات",
    ),
    "f3": (
        "إقالة مدرب الاتحاد بعد سلسلة هزائم",
        "قررت إدارة نادي الاتحاد إقالة المدرب بعد خسارة الفريق أربع مباريات متتالية في الدوري",
    ),
    "f4": (
        "الأهلي يتعاقد مع لاعب وسط برازيلي",
        "أعلن النادي الأهلي التعاقد مع لاعب الوسط البرازيلي لمدة ثلاثة مواسم لتعزيز صفوف الفريق",
    ),
    "p1": (
        "البرلمان يصوت على قانون الانتخابات الجديد",
        "صوت مجلس النواب بالأغلبية على مشروع قانون الانتخابات بعد جلسة طويلة وخلافات بين الكتل النيابية",
    ),
    "p2": (
        "رئيس الوزراء يعلن تعديلا وزاريا",
        "أعلن رئيس الوزراء تعديلا على حكومته شمل خمس حقائب وزارية وسط انتقادات من أحزاب المعارضة",
    ),
    "p3": (
        "المعارضة تقاطع جلسة مجلس النواب",
        "قاطع نواب المعارضة جلسة البرلمان احتجاجا على تأجيل مناقشة الموازنة وقانون الأحزاب",
    ),
    "p4": (
        "الحكومة تواجه تصويتا على حجب الثقة",
        "يصوت النواب الأسبوع المقبل على مذكرة حجب الثقة عن الحكومة التي قدمتها كتل المعارضة",
    ),
    "e1": (
        "رفع أسعار البنزين والسولار للمرة الثانية",
        "قررت لجنة تسعير المحروقات رفع سعر لتر البنزين والسولار ما يزيد كلفة النقل على المواطنين",
    ),
    "e2": (
        "ارتفاع أسعار الوقود يرفع التضخم",
        "قال البنك المركزي إن ارتفاع أسعار الوقود دفع التضخم إلى أعلى مستوى مع زيادة أسعار السلع",
    ),
    "e3": (
        "تثبيت أسعار المحروقات الشهر المقبل",
        "أعلنت وزارة الطاقة تثبيت أسعار البنزين والديزل والغاز خلال الشهر المقبل رغم ارتفاع سعر النفط",
    ),
    "e4": (
        "أسعار النفط تصعد بعد قرار أوبك خفض الإنتاج",
        "صعدت أسعار خام برنت بعد اتفاق أوبك على خفض الإنتاج ويتوقع محللون ارتفاع سعر البرميل",
    ),
}
COMMENTS: dict[str, list[str]] = {
    "f": [
        "الهلال لعب مباراة رائعة والمهاجم سجل هدفين",
        "الحكم ظلم الفريق وألغى هدفا صحيحا في الشوط الثاني",
        "الحارس أنقذ المرمى من أهداف كثيرة في المباراة",
        "المدرب يتحمل مسؤولية الخسارة وتغيير اللاعبين",
        "جماهير النادي ملأت الملعب وشجعت اللاعبين طول المباراة",
        "الدوري هذا الموسم قوي والمنافسة على اللقب شديدة",
        "المنتخب يحتاج مهاجم قناص يسجل الأهداف",
        "إدارة النادي أخطأت في التعاقد مع المدرب",
        "لاعب الوسط البرازيلي صفقة ممتازة للفريق",
        "ركلات الترجيح حظ والحارس كان بطل المباراة",
        "الفريق يستحق الصدارة بعد الفوز على النصر",
        "خسارة أربع مباريات في الدوري تعني إقالة المدرب",
    ],
    "p": [
        "البرلمان لا يمثل الشعب والنواب يبحثون عن مصالحهم",
        "قانون الانتخابات الجديد يخدم الأحزاب الكبيرة فقط",
        "رئيس الوزراء يغير الوزراء ولا يغير السياسات",
        "المعارضة محقة في مقاطعة الجلسة",
        "حجب الثقة عن الحكومة أصبح ضرورة",
        "الكتل النيابية تتصارع على الحقائب الوزارية",
        "التعديل الوزاري لن يحل مشاكل الحكومة",
        "مجلس النواب يجب أن يناقش الموازنة بسرعة",
        "النواب صوتوا على القانون دون قراءته",
        "أحزاب المعارضة ضعيفة وبلا برنامج",
        "الانتخابات القادمة فرصة لتغيير البرلمان",
        "الحكومة فقدت ثقة الشعب والنواب",
    ],
    "e": [
        "رفع سعر البنزين يرهق المواطن الفقير",
        "أسعار الوقود ترتفع والرواتب ثابتة",
        "التضخم أكل الرواتب وأسعار السلع نار",
        "كلفة النقل زادت بعد رفع السولار",
        "لجنة التسعير ترفع الأسعار كل شهر",
        "سعر النفط عالميا انخفض فلماذا نرفع البنزين",
        "البنك المركزي عاجز عن وقف التضخم",
        "تثبيت أسعار المحروقات قرار جيد للمواطن",
        "خفض الإنتاج يرفع سعر البرميل والمستهلك يدفع",
        "الديزل والغاز أصبحا أغلى من قدرة الناس",
        "أسعار السلع ترتفع مع كل زيادة في الوقود",
        "المحروقات ارتفعت والنقل صار مكلفا",
    ],
}
GENERIC_COMMENTS = ["شكرا على الخبر", "مقال جميل شكرا"]
OTHER_TOPIC = {"f": "p", "p": "e", "e": "f"}

# Comments that are not in the corpus, built from its words.
FOOTBALL_COMMENT = "المهاجم سجل هدفا رائعا في الشوط الثاني والحارس كان ممتازا"
LAUGHTER = "ههههههه"
SMALL: dict[str, Any] = {
    "n_components": 8,
    "n_reference": 20,
    "char_corpus_max": 30,
    "max_background": 50,
    "rare_df": 0.5,
}


def own_comments(article_id: str) -> list[str]:
    """The 6 topical comments of an article: a window over its topic's 12, overlapping its neighbours."""
    k = int(article_id[1]) - 1
    return [COMMENTS[article_id[0]][(3 * k + j) % 12] for j in range(6)]


def corpus() -> tuple[list[str], list[str]]:
    texts, groups = [], []
    for article_id in ARTICLES:
        for text in own_comments(article_id) + GENERIC_COMMENTS:
            texts.append(normalize(text))
            groups.append(article_id)
    return texts, groups


def frame(rows: Sequence[tuple[str, str | None, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["text", "article_title", "article_text"])


def training_pairs() -> pd.DataFrame:
    """Each comment under its own article (0) and under the same-numbered article of another topic
    (1), with title and body and with the title only; article_id = the article of the pair."""
    rows = []
    for article_id, (title, body) in ARTICLES.items():
        other = OTHER_TOPIC[article_id[0]] + article_id[1]
        other_title, other_body = ARTICLES[other]
        for text in own_comments(article_id):
            for with_body in (True, False):
                rows.append((text, title, body if with_body else "", 0, article_id))
                rows.append((text, other_title, other_body if with_body else "", 1, other))
    return pd.DataFrame(rows, columns=["text", "article_title", "article_text", "label", "article_id"])


@pytest.fixture(scope="module", params=[DEFAULT_FAMILIES, ALL_FAMILIES], ids=["default", "all"])
def features(request: pytest.FixtureRequest) -> RelevanceFeatures:
    texts, groups = corpus()
    return RelevanceFeatures(include=request.param, **SMALL).fit(
        None, corpus_texts=texts, corpus_groups=groups
    )


@pytest.fixture(scope="module")
def pairs() -> pd.DataFrame:
    return training_pairs()


@pytest.fixture(scope="module")
def model(pairs: pd.DataFrame) -> RelevanceModel:
    texts, groups = corpus()
    return RelevanceModel(features=RelevanceFeatures(**SMALL)).fit(
        pairs, pairs["label"], corpus_texts=texts, corpus_groups=groups, groups=pairs["article_id"]
    )


def fresh(model: RelevanceModel) -> RelevanceModel:
    """A copy as serving loads it: through pickle, so without any run-time cache."""
    copy: RelevanceModel = pickle.loads(pickle.dumps(model))
    return copy


def assert_same_relations(a: relevance_module.Relations, b: relevance_module.Relations) -> None:
    assert list(a.context) == list(b.context)
    assert list(a.relation) == list(b.relation)
    np.testing.assert_array_equal(a.generic, b.generic)
    np.testing.assert_allclose(a.p_about_else, b.p_about_else, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.off_topic, b.off_topic, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- topical tokens


def test_topic_words_drop_function_words_laughter_and_single_digits_and_mark_numbers() -> None:
    assert topic_words(normalize("هههههه ههه خخخخ hahaha lol")) == []
    assert topic_words(normalize("في من على هذا الذي")) == []
    words = topic_words(normalize("رفع سعر البنزين 5 مرات منذ 2024"))
    assert "#2024" in words
    assert not any(w in ("5", "#5") for w in words)
    assert len(words) == 5 and words[-1] == "#2024"  # رفع سعر البنزين مرات 2024 (منذ is a function word)


@pytest.mark.parametrize("analyzer", [Words(), CharGrams(2, 4)], ids=["words", "chars"])
def test_the_fast_single_text_tfidf_path_matches_the_batch_path(analyzer) -> None:
    texts, _ = corpus()
    docs = [" ".join(topic_words(t)) for t in texts]
    tfidf = Tfidf(analyzer, min_df=1).fit(docs)
    long_text = " ".join(docs[:12])  # more than 32 words: the numpy path of `vector`
    probes = [docs[0], docs[5], long_text, "", "كلمة_لا_يعرفها_احد"]
    batch = tfidf.transform(probes).toarray()
    for i, text in enumerate(probes):
        cols, weights = tfidf.vector(text)
        dense = np.zeros(len(tfidf.vocabulary_))
        dense[cols] = weights
        np.testing.assert_allclose(dense, batch[i], atol=1e-12, err_msg=text)


# ----------------------------------------------------------------------------- features


def test_fit_rejects_unknown_families_and_mismatched_corpus() -> None:
    texts, groups = corpus()
    with pytest.raises(ValueError, match="unknown feature families"):
        RelevanceFeatures(include=("char", "telepathy")).fit(None, corpus_texts=texts, corpus_groups=groups)
    with pytest.raises(ValueError, match="groups"):
        RelevanceFeatures(**SMALL).fit(None, corpus_texts=texts, corpus_groups=groups[:-1])
    with pytest.raises(ValueError, match="corpus"):
        RelevanceFeatures(**SMALL).fit(None)


def test_feature_names_follow_the_families_in_order(features: RelevanceFeatures) -> None:
    wanted = set(features.include) | {"context", "comment"}
    expected = [name for family, names in FAMILIES.items() if family in wanted for name in names]
    assert list(features.feature_names_) == expected
    assert list(features.get_feature_names_out()) == expected


def mixed_rows() -> pd.DataFrame:
    f1, p1, e2 = ARTICLES["f1"], ARTICLES["p1"], ARTICLES["e2"]
    return frame(
        [
            (FOOTBALL_COMMENT, *f1),
            (FOOTBALL_COMMENT, *p1),
            (FOOTBALL_COMMENT, f1[0], None),  # title only
            (FOOTBALL_COMMENT, None, f1[1]),  # body only
            (FOOTBALL_COMMENT, None, None),
            (COMMENTS["e"][1], *e2),
            (COMMENTS["e"][1], *e2),  # a repeated row
            (LAUGHTER, *p1),
            ("شكرا على الخبر", *p1),
            ("", *p1),
            ("great match, what a goal!!", *f1),
            ("1 2 3 4 5 6 7 8 9", *e2),
            ("😂😂😂", None, None),
        ]
    )


def test_features_are_finite_with_one_column_per_name(features: RelevanceFeatures) -> None:
    X = mixed_rows()
    matrix = features.transform(X)
    assert matrix.shape == (len(X), len(features.feature_names_))
    assert np.isfinite(matrix).all()


def test_a_row_without_an_article_has_no_relation_features(features: RelevanceFeatures) -> None:
    names = list(features.feature_names_)
    # comment-only columns: the "comment" family, and the comment's best fit among corpus threads
    comment_only = set(FAMILIES["comment"]) | {"bg_top"}
    X = frame([(FOOTBALL_COMMENT, None, None), (COMMENTS["p"][0], "", ""), ("great goal", None, None)])
    matrix = features.transform(X)
    for j, name in enumerate(names):
        if name not in comment_only:
            assert (matrix[:, j] == 0.0).all(), name
    assert matrix[0, names.index("log_len")] > 0  # the comment itself is still described


def test_context_columns_and_single_part_articles(features: RelevanceFeatures) -> None:
    names = list(features.feature_names_)
    title, body = ARTICLES["f1"]
    comment = "الهلال سجل هدفين في الشوط الثاني"  # one word of the title, three of the body
    matrix = features.transform(
        frame([(comment, title, body), (comment, title, None), (comment, None, body)])
    )
    col = {n: matrix[:, names.index(n)] for n in names}
    np.testing.assert_array_equal(col["has_title"], [1, 1, 0])
    np.testing.assert_array_equal(col["has_body"], [1, 0, 1])
    for family in ("char", "word", "lsa"):
        # title only: no body similarity, and "the article" is the title; body only: the reverse
        assert col[f"{family}_body"][1] == 0.0
        assert col[f"{family}_article"][1] == pytest.approx(col[f"{family}_title"][1])
        assert col[f"{family}_title"][2] == 0.0
        assert col[f"{family}_article"][2] == pytest.approx(col[f"{family}_body"][2])
    # the comment shares words with the story: it is similar to it in every part
    assert col["word_title"][0] > 0 and col["word_body"][0] > 0 and col["word_article"][0] > 0


def test_a_latin_comment_under_an_arabic_article_is_a_script_mismatch(features: RelevanceFeatures) -> None:
    names = list(features.feature_names_)
    matrix = features.transform(
        frame([("great match, what a goal", *ARTICLES["f1"]), (FOOTBALL_COMMENT, *ARTICLES["f1"])])
    )
    np.testing.assert_array_equal(matrix[:, names.index("script_mismatch")], [1.0, 0.0])


def test_transform_equals_building_each_row_from_its_sides(features: RelevanceFeatures) -> None:
    # The batch path (every row at once) and the row-by-row path (kept for the optional families)
    # compute the same features; the topical space is float32 and the two sum its products in
    # another order, so the LSA columns (and their z-scores) agree to float32 precision.
    X = mixed_rows()
    batch = features.transform(X)
    prepared = CommentPreprocessor().transform(X)
    one_by_one = np.asarray(
        [
            features.row(features.side(text), *features.article_side(title, body))
            for text, title, body in zip(prepared.text, prepared.title, prepared.body, strict=True)
        ]
    )
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-5, atol=1e-6)
    names = list(features.feature_names_)
    exact = [i for i, name in enumerate(names) if "lsa" not in name and name not in ("specificity",)]
    np.testing.assert_allclose(batch[:, exact], one_by_one[:, exact], rtol=1e-9, atol=1e-12)


def test_a_comment_is_closer_to_its_own_topic_in_the_topical_space(features: RelevanceFeatures) -> None:
    names = list(features.feature_names_)
    matrix = features.transform(
        frame([(FOOTBALL_COMMENT, *ARTICLES["f2"]), (FOOTBALL_COMMENT, *ARTICLES["p2"])])
    )
    lsa = names.index("lsa_article")
    assert matrix[0, lsa] > matrix[1, lsa]


# ----------------------------------------------------------------------------- the model


def test_the_model_fits_a_classifier_and_a_threshold_per_context(model: RelevanceModel) -> None:
    assert set(model.models_) == {"title", "title_body"}
    assert set(model.thresholds_) == {"title", "title_body"}
    assert all(0.0 < t < 1.0 for t in model.thresholds_.values())


def test_the_model_separates_own_articles_from_other_topics(model: RelevanceModel, pairs) -> None:
    rel = model.relations(pairs)
    assert roc_auc_score(pairs["label"], rel.p_about_else) > 0.95
    # the thresholds hold few real pairs (target_held = 4% out of fold)
    real = (pairs["label"] == 0).to_numpy()
    assert (rel.relation[real] == ABOUT_ELSE).mean() <= 0.1


def test_rows_without_an_article_are_no_article_and_never_off_topic(model: RelevanceModel) -> None:
    X = frame([(FOOTBALL_COMMENT, None, None), (COMMENTS["p"][3], "", ""), (LAUGHTER, None, None)])
    rel = model.relations(X)
    assert list(rel.context) == ["none"] * 3
    assert list(rel.relation) == [NO_ARTICLE] * 3
    np.testing.assert_array_equal(rel.off_topic, 0.0)
    np.testing.assert_array_equal(model.off_topic_scores(X), 0.0)
    np.testing.assert_array_equal(model.predict(X), 0)


@pytest.mark.parametrize("text", [LAUGHTER, "شكرا على الخبر", "مقال جميل شكرا", "هههه والله"])
@pytest.mark.parametrize("article", ["p1", "f3", "e4"])
def test_a_comment_without_topical_words_is_a_generic_reaction(model: RelevanceModel, text, article) -> None:
    title, body = ARTICLES[article]
    rel = model.relations(frame([(text, title, body), (text, title, None)]))
    assert list(rel.relation) == [GENERIC, GENERIC]
    assert rel.generic.all()
    np.testing.assert_array_equal(rel.off_topic, 0.0)


@pytest.mark.parametrize("with_body", [True, False], ids=["title_body", "title"])
def test_a_football_comment_is_about_something_else_under_a_politics_article(
    model: RelevanceModel, with_body: bool
) -> None:
    rows = [
        (FOOTBALL_COMMENT, ARTICLES[a][0], ARTICLES[a][1] if with_body else None) for a in ("f1", "p1", "p4")
    ]
    rel = model.relations(frame(rows))
    assert not rel.generic.any()
    assert rel.p_about_else[1] > rel.p_about_else[0]
    assert rel.p_about_else[2] > rel.p_about_else[0]
    assert list(rel.relation) == [ABOUT_THIS, ABOUT_ELSE, ABOUT_ELSE]
    assert rel.off_topic[0] < REVIEW_AT <= rel.off_topic[1]


def test_off_topic_reaches_review_at_exactly_when_the_relation_is_about_something_else(
    model: RelevanceModel, pairs
) -> None:
    X = pd.concat([pairs[["text", "article_title", "article_text"]], mixed_rows()], ignore_index=True)
    rel = model.relations(X)
    # A Latin comment under an Arabic article: the component has no say (NaN), the base decides.
    no_say = rel.relation == OTHER_SCRIPT
    assert no_say.any() and np.isnan(rel.off_topic[no_say]).all()
    scored = rel.off_topic[~no_say]
    np.testing.assert_array_equal(scored >= REVIEW_AT, rel.relation[~no_say] == ABOUT_ELSE)
    assert ((scored >= 0.0) & (scored <= 1.0)).all()
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], np.nan_to_num(rel.off_topic, nan=0.0))
    np.testing.assert_array_equal(model.predict(X), (rel.relation == ABOUT_ELSE).astype(int))


def test_relations_from_precomputed_features_equal_relations_from_text(model: RelevanceModel) -> None:
    X = mixed_rows()
    expected = fresh(model).relations(X)
    assert_same_relations(model.relations(X, features=model.features_.transform(X)), expected)
    assert_same_relations(model.relations(X, features=model.feature_rows(X)), expected)


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.5, 0.8, 0.97])
def test_rescale_puts_the_threshold_at_review_at_and_is_monotone_in_unit_range(threshold: float) -> None:
    assert _rescale(threshold, threshold) == pytest.approx(REVIEW_AT)
    p = np.linspace(0.0, 1.0, 1001)
    scaled = np.array([_rescale(value, threshold) for value in p.tolist()])
    assert (np.diff(scaled) >= 0).all()
    assert scaled[0] == 0.0 and scaled[-1] == pytest.approx(1.0)
    assert ((scaled >= 0.0) & (scaled <= 1.0)).all()
    np.testing.assert_array_equal(scaled >= REVIEW_AT, p >= threshold)


def test_rescale_without_a_threshold_stays_finite() -> None:
    scaled = np.array([_rescale(value, math.inf) for value in (0.0, 0.5, 1.0)])
    assert np.isfinite(scaled).all() and ((scaled >= 0) & (scaled <= 1)).all()


# ----------------------------------------------------------------------------- the article cache


def served(composed: ComposedClassifier, cache: ArticleCache | None = None) -> ModerationModel:
    return ModerationModel(composed, METADATA, article_cache=cache)


def assert_same_results(a: Sequence[Any], b: Sequence[Any]) -> None:
    for x, y in zip(a, b, strict=True):
        assert (x.label, x.action, x.relation, x.scores) == (y.label, y.action, y.relation, y.scores)
        assert x.reasons == y.reasons and x.spans == y.spans


def test_scores_with_the_article_cache_equal_scores_without_it(composed: ComposedClassifier) -> None:
    uncached = served(composed, ArticleCache(max_entries=0))
    cached = served(composed)
    items = [CommentInput(text, *ARTICLES[a]) for a in ("f1", "p1") for text in (FOOTBALL_COMMENT, LAUGHTER)]
    expected = uncached.score(items)
    assert len(uncached.article_cache) == 0
    first = cached.score(items)  # fills the cache: two articles, each computed once
    assert cached.article_cache.stats().misses == 2 and len(cached.article_cache) == 2
    again = cached.score(items[::-1])[::-1]  # every article from the cache
    assert cached.article_cache.stats().hits == 2  # one lookup per distinct article of a batch
    assert_same_results(first, expected)
    assert_same_results(again, expected)
    one_by_one = [cached.score([item])[0] for item in items]  # row by row: float32-close
    np.testing.assert_allclose(
        np.array([[r.scores[k] for k in sorted(r.scores)] for r in one_by_one]),
        np.array([[r.scores[k] for k in sorted(r.scores)] for r in expected]),
        atol=2e-6,
    )
    # The pickle the server loads carries no cache: a cold copy scores the same.
    cold = served(pickle.loads(pickle.dumps(composed)))
    assert_same_results(cold.score(items), expected)


def test_a_changed_article_text_replaces_its_cache_entry(composed: ComposedClassifier) -> None:
    model = served(composed)
    title = "خبر عاجل"  # a title that says nothing about the story
    football, politics = ARTICLES["f1"][1], ARTICLES["p1"][1]
    before = model.score([CommentInput(FOOTBALL_COMMENT, title, football, article_key="site/a-1")])[0]
    changed = CommentInput(FOOTBALL_COMMENT, title, politics, article_key="site/a-1")
    after = model.score([changed])[0]
    # the entry of the old text is gone, not merely aged: one entry for the article, one replacement
    assert len(model.article_cache) == 1 and model.article_cache.stats().replaced == 1
    assert_same_results([after], served(composed, ArticleCache(max_entries=0)).score([changed]))
    assert after.scores["off_topic"] > before.scores["off_topic"]
    # without an article key a changed text is a new entry, and the old text keeps its own
    model.score([CommentInput(FOOTBALL_COMMENT, title, football)])
    assert len(model.article_cache) == 2


def test_the_model_runtime_keeps_at_most_its_bound_of_articles(composed: ComposedClassifier) -> None:
    model = served(composed, ArticleCache(max_entries=3))
    for article_id, (title, body) in ARTICLES.items():
        model.score([CommentInput(FOOTBALL_COMMENT, title, body, article_key=article_id)])
        assert len(model.article_cache) <= 3
    stats = model.article_cache.stats()
    assert stats.evictions == len(ARTICLES) - 3 and stats.bytes > 0


# ----------------------------------------------------------------------------- the off_topic rule

LABELS = ("on_topic", "off_topic", "spam", "abusive")


def test_apply_relevance_splits_only_the_acceptable_mass() -> None:
    probabilities = np.array(
        [[0.5, 0.1, 0.1, 0.3], [0.2, 0.2, 0.5, 0.1], [0.0, 0.0, 0.9, 0.1], [0.7, 0.3, 0.0, 0.0]]
    )
    r = np.array([0.25, 0.0, 0.8, 1.0])
    combined = apply_relevance(probabilities, LABELS, r)
    np.testing.assert_allclose(combined.sum(axis=1), 1.0)
    np.testing.assert_array_equal(combined[:, 2:], probabilities[:, 2:])  # spam and abusive unchanged
    mass = probabilities[:, 0] + probabilities[:, 1]
    np.testing.assert_allclose(combined[:, 1], mass * r)
    np.testing.assert_allclose(combined[:, 0], mass * (1 - r))
    assert combined[1, 1] == 0.0  # r = 0: nothing off-topic
    assert combined[3, 0] == 0.0 and combined[3, 1] == pytest.approx(1.0)  # r = 1: all of it
    np.testing.assert_allclose(probabilities[0], [0.5, 0.1, 0.1, 0.3])  # not modified in place


def test_apply_relevance_clips_r_and_follows_the_label_order() -> None:
    labels = ("abusive", "off_topic", "on_topic", "spam")
    probabilities = np.array([[0.1, 0.2, 0.6, 0.1], [0.1, 0.2, 0.6, 0.1]])
    combined = apply_relevance(probabilities, labels, np.array([-0.5, 1.5]))
    np.testing.assert_allclose(combined[0], [0.1, 0.0, 0.8, 0.1])
    np.testing.assert_allclose(combined[1], [0.1, 0.8, 0.0, 0.1])


# ----------------------------------------------------------------------------- serving

METADATA = {
    "thresholds": {
        "reject_at": {"spam": 0.8, "abusive": 0.8, "off_topic": 1.0},
        "review_at": {"spam": 0.4, "abusive": 0.4, "off_topic": REVIEW_AT},
    }
}
ITEMS = [
    CommentInput(FOOTBALL_COMMENT, *ARTICLES["f1"]),
    CommentInput(FOOTBALL_COMMENT, *ARTICLES["p1"]),
    CommentInput(FOOTBALL_COMMENT, ARTICLES["p1"][0]),
    CommentInput(FOOTBALL_COMMENT),
    CommentInput(LAUGHTER, *ARTICLES["e2"]),
    CommentInput("شكرا على الخبر", *ARTICLES["e2"]),
    CommentInput("يا حمار يا جاهل اسكت", *ARTICLES["p1"]),
    CommentInput("للتواصل واتساب 0551234567 ربح مضمون يوميا", *ARTICLES["e1"]),
]


@pytest.fixture(scope="module")
def composed(tiny_pipeline, model: RelevanceModel) -> ComposedClassifier:
    return ComposedClassifier(base=tiny_pipeline, heads=None, relevance=model)


def test_serving_scores_like_the_composed_classifier(composed: ComposedClassifier) -> None:
    served = ModerationModel(composed, METADATA)
    expected = composed.predict_proba(pd.DataFrame([item.as_row() for item in ITEMS]))
    np.testing.assert_allclose(served.predict_proba(ITEMS), expected, atol=1e-5)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0)


def test_every_result_carries_its_label_and_relation_reason_first(composed: ComposedClassifier) -> None:
    results = ModerationModel(composed, METADATA).score(ITEMS)
    for item, result in zip(ITEMS, results, strict=True):
        assert result.label == (result.decided_label or "on_topic"), item
        assert result.relation in RELATIONS
        assert result.reasons[0].kind == "relation"
        assert result.reasons[0].weight == result.scores["off_topic"]
        assert sum(r.kind == "relation" for r in result.reasons) == 1
    relations = [r.relation for r in results]
    assert relations[:6] == [ABOUT_THIS, ABOUT_ELSE, ABOUT_ELSE, NO_ARTICLE, GENERIC, GENERIC]
    for i in (3, 4, 5):  # no article, generic: the off_topic score is exactly 0
        assert results[i].scores["off_topic"] == 0.0
    for i in (0, 3, 4, 5):
        assert results[i].label != "off_topic"
    assert results[1].label == "off_topic" and results[1].action == "review"


def test_the_relation_is_given_even_without_explanations(composed: ComposedClassifier) -> None:
    results = ModerationModel(composed, METADATA).score(ITEMS, explain=False)
    assert [r.reasons for r in results] == [[]] * len(ITEMS)
    assert results[3].relation == NO_ARTICLE
    assert all(r.label == (r.decided_label or "on_topic") for r in results)


def test_a_model_without_relevance_says_no_relation(tiny_pipeline) -> None:
    results = ModerationModel(ComposedClassifier(base=tiny_pipeline, heads={}), METADATA).score(ITEMS[:2])
    assert all(r.relation is None for r in results)
    assert all(reason.kind != "relation" for r in results for reason in r.reasons)


def test_a_composed_classifier_refits_an_unfitted_relevance_component_on_its_frame() -> None:
    pairs = training_pairs()
    train = pd.concat(
        [
            pairs.assign(label=np.where(pairs["label"] == 1, "off_topic", "on_topic")),
            frame([(t, None, None) for t in ("ربح مضمون واتساب", "اربح الآن اتصل")]).assign(label="spam"),
        ],
        ignore_index=True,
    )
    base = Pipeline(
        [
            ("prep", CommentPreprocessor()),
            ("features", HashedNgrams(analyzer="char_wb", ngram_range=(2, 3), n_bits=12, min_df=1)),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    )
    composed = ComposedClassifier(
        base=base, heads={}, relevance=RelevanceModel(features=RelevanceFeatures(**SMALL))
    )
    composed.fit(train[["text", "article_title", "article_text"]], train["label"])
    assert set(composed.relevance.thresholds_) == {"title", "title_body"}


@pytest.mark.parametrize("rows", [mixed_rows().iloc[:3], mixed_rows()], ids=["row by row", "batch"])
def test_fewer_families_of_the_same_fit_give_the_same_columns(features: RelevanceFeatures, rows) -> None:
    full = features.transform(rows)
    names = list(features.feature_names_)
    fewer = features.with_families(("char", "lsa", "unrelated"))
    assert list(fewer.feature_names_) == [
        name for family in ("context", "char", "lsa", "unrelated", "comment") for name in FAMILIES[family]
    ]
    columns = [names.index(name) for name in fewer.feature_names_]
    # With every family fitted, the full extractor goes row by row (its optional families have no
    # batch path) and the fewer ones in batch: the two agree to float32 precision (see above).
    np.testing.assert_allclose(fewer.transform(rows), full[:, columns], rtol=1e-5, atol=1e-6)
    assert list(features.feature_names_) == names  # the original is untouched
    with pytest.raises(ValueError, match="not fitted"):
        features.with_families(("char", "nonexistent"))


def test_the_bench_times_every_family_set_it_is_given(features: RelevanceFeatures) -> None:
    from training.bench.relevance import family_costs

    steps = [("+ char", ("char",)), ("+ esa", ("char", "esa"))]
    costs = family_costs(features, mixed_rows(), steps, repeats=1)
    assert list(costs) == ["+ char", "+ esa"]
    assert all(np.isfinite(value) and value > 0 for pair in costs.values() for value in pair)
    with pytest.raises(ValueError, match="not fitted"):
        family_costs(features, mixed_rows(), [("+ nothing", ("nonexistent",))], repeats=1)
