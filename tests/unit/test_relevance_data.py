"""The relevance component's data: article pairs with constructed partners, the training subset,
contexts, human-labelled pairs, the comment corpus, source weights and the cosine baseline."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from serving.text.normalize import normalize
from training.data.contract import LabeledRecord
from training.data.relevance import (
    HARD,
    PAIR_COLUMNS,
    RANDOM,
    REAL,
    article_pairs,
    balanced_folds,
    comment_corpus,
    labelled_pairs,
    training_subset,
    with_context,
)
from training.experiment.relevance import cosine_scores, source_weights

pytestmark = pytest.mark.unit

# Made-up articles, each about a different story, so that no two are near-duplicates.
STORIES = [
    ("ارتفاع أسعار الخبز في الأسواق", "رفعت المخابز سعر ربطة الخبز بعد زيادة كلفة الطحين والنقل"),
    ("افتتاح جسر جديد فوق النهر", "افتتحت البلدية جسرا يربط ضفتي النهر ويختصر زمن الوصول إلى وسط المدينة"),
    ("فوز المنتخب في مباراة ودية", "فاز المنتخب الوطني بهدفين في مباراة ودية استعدادا للبطولة القارية"),
    ("أمطار غزيرة تغلق طرقا رئيسية", "أغلقت السيول عدة طرق في الشمال وطلب الدفاع المدني من السائقين الحذر"),
    ("مهرجان للكتاب يستقبل زواره", "يشارك مئتا ناشر في معرض الكتاب السنوي الذي يستمر عشرة أيام"),
    ("وزارة التربية تعلن موعد الامتحانات", "حددت الوزارة منتصف حزيران موعدا لامتحانات الثانوية العامة"),
    ("انقطاع الكهرباء عن أحياء العاصمة", "قالت شركة الكهرباء إن عطلا في محطة التحويل قطع التيار ست ساعات"),
    ("مستشفى حكومي يفتتح قسما للأطفال", "افتتح المستشفى قسما جديدا لعلاج الأطفال مجهزا بأربعين سريرا"),
    ("شركة طيران تضيف رحلات صيفية", "أضافت الشركة رحلات أسبوعية إلى ثلاث وجهات سياحية خلال الصيف"),
    ("ارتفاع عدد السياح في الربيع", "سجلت هيئة السياحة زيادة في أعداد الزوار الأجانب مقارنة بالعام الماضي"),
]
REMARKS = ["كلام صحيح", "هذا متوقع", "نريد حلا", "شكرا للكاتب", "أين المسؤولون", "خبر مؤسف"]


def comments_under(site: str, number: int, story: int, n: int, source: str = "aoc") -> list[LabeledRecord]:
    """`n` comments under article `number` of `site`, which tells STORIES[story]."""
    article_id = f"aoc:{site}_{number}"
    title, body = STORIES[story]
    return [
        LabeledRecord(
            text=f"{REMARKS[i % len(REMARKS)]} عن الخبر {number} تعليق {i}",
            label="on_topic",
            comment_id=f"{source}:{site}_{number}_{i:03d}",
            article_id=article_id,
            article_title=title,
            article_text=body,
            site=site,
            source=source,
        )
        for i in range(n)
    ]


SITES = {"alghad": [500010, 500013, 500020, 500031, 500032], "hespress": [7001, 7005, 7009, 7040]}


def site_records(n: int | None = None) -> list[LabeledRecord]:
    """Comments under every article of SITES, 3 to 5 each (or `n` each); one story per article."""
    out: list[LabeledRecord] = []
    story = 0
    for site, numbers in SITES.items():
        for number in numbers:
            out += comments_under(site, number, story, n if n is not None else 3 + story % 3)
            story += 1
    return out


@pytest.fixture(scope="module")
def records() -> list[LabeledRecord]:
    out = site_records()
    # ignored: another source, and a comment sent without its article
    out += comments_under("alghad", 600000, 9, 3, source="semeval2015")
    out.append(LabeledRecord(text="تعليق بلا مقال", comment_id="aoc:x_1", article_id="aoc:x_1", source="aoc"))
    return out


def by_kind(pairs: pd.DataFrame, kind: str) -> pd.DataFrame:
    return pairs[pairs["kind"] == kind]


# ----------------------------------------------------------------------------- article pairs


def test_each_comment_has_one_real_row_and_constructed_partners(records) -> None:
    pairs = article_pairs(records, n_folds=2, seed=13)
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    aoc = [r for r in records if r.source == "aoc" and r.article_title]
    assert set(pairs["comment_id"]) == {r.comment_id for r in aoc}
    real = by_kind(pairs, REAL)
    assert Counter(real["comment_id"]) == Counter({r.comment_id: 1 for r in aoc})
    assert (real["label"] == 0).all() and not real["constructed"].any()
    assert (real["article_id"] == real["own_article_id"]).all()
    constructed = pairs[pairs["kind"] != REAL]
    assert set(constructed["kind"]) == {HARD, RANDOM}
    assert (constructed["label"] == 1).all() and constructed["constructed"].all()
    assert (constructed["article_id"] != constructed["own_article_id"]).all()
    assert pairs.groupby(["comment_id", "kind"]).size().max() == 1
    assert set(pairs["source"]) == {"aoc"}
    # a partner row carries the partner's article, not the comment's own
    titles = dict(zip(real["article_id"], real["article_title"], strict=True))
    assert (constructed["article_title"] == constructed["article_id"].map(titles)).all()


def test_partners_are_in_the_own_articles_fold_and_hard_ones_are_near_neighbours_of_the_same_site(
    records,
) -> None:
    pairs = article_pairs(records, n_folds=2, seed=13)
    real = by_kind(pairs, REAL)
    fold = dict(zip(real["article_id"], real["fold"], strict=True))
    site = dict(zip(real["article_id"], real["site"], strict=True))
    assert set(fold.values()) == {0, 1}
    constructed = pairs[pairs["constructed"]]
    assert (constructed["article_id"].map(fold) == constructed["fold"]).all()
    assert (constructed["fold"] == constructed["own_article_id"].map(fold)).all()
    hard = by_kind(pairs, HARD)
    assert len(hard) > 0
    assert (hard["article_id"].map(site) == hard["site"]).all()

    def number(article_id: str) -> int:
        return int(article_id.rsplit("_", 1)[-1])

    for own, partner in zip(hard["own_article_id"], hard["article_id"], strict=True):
        candidates = [a for a in fold if a != own and fold[a] == fold[own] and site[a] == site[own]]
        nearest = sorted(candidates, key=lambda a: (abs(number(a) - number(own)), a))[:2]
        assert partner in nearest, (own, partner, nearest)


def test_article_pairs_are_deterministic_for_a_seed(records) -> None:
    a = article_pairs(records, n_folds=2, seed=13)
    pd.testing.assert_frame_equal(a, article_pairs(records, n_folds=2, seed=13))
    assert list(a["pair_id"]) == [f"{c}|{k}" for c, k in zip(a["comment_id"], a["kind"], strict=True)]


def test_a_near_duplicate_article_is_never_a_partner() -> None:
    original = comments_under("alghad", 500015, 0, 8)
    # the same story republished under the next id: the nearest neighbour, but not another story
    twin = [
        LabeledRecord(
            text=f"تعليق على النسخة الثانية {i}",
            label="on_topic",
            comment_id=f"aoc:alghad_500016_{i:03d}",
            article_id="aoc:alghad_500016",
            article_title=original[0].article_title,
            article_text=original[0].article_text,
            site="alghad",
            source="aoc",
        )
        for i in range(8)
    ]
    others = comments_under("alghad", 500040, 1, 2) + comments_under("alghad", 500041, 2, 2)
    pairs = article_pairs(original + twin + others, n_folds=1, seed=13)
    constructed = pairs[pairs["constructed"]]
    assert len(constructed) == 2 * len(pairs[~pairs["constructed"]])
    twins = {"aoc:alghad_500015", "aoc:alghad_500016"}
    for own in twins:
        partners = set(constructed.loc[constructed["own_article_id"] == own, "article_id"])
        assert partners, own
        assert not partners & twins, (own, partners)


def test_balanced_folds_put_every_group_in_one_fold_with_similar_totals() -> None:
    sizes = {"a": 40, "b": 10, "c": 9, "d": 8, "e": 7, "f": 6, "g": 5, "h": 1}
    folds = balanced_folds(sizes, 3)
    assert folds == balanced_folds(dict(reversed(sizes.items())), 3)  # deterministic, order-free
    assert set(folds) == set(sizes) and set(folds.values()) == {0, 1, 2}
    totals: Counter[int] = Counter()
    for group, fold in folds.items():
        totals[fold] += sizes[group]
    assert [g for g, f in folds.items() if f == folds["a"]] == ["a"]  # the big one stays alone
    smaller = sorted(totals.values())[:2]
    assert max(smaller) - min(smaller) <= 10


# ----------------------------------------------------------------------------- training subset


def test_training_subset_keeps_every_real_row_and_one_constructed_row_per_comment() -> None:
    pairs = article_pairs(site_records(4), n_folds=1, seed=13)
    assert (pairs.groupby("comment_id").size() == 3).all()  # every comment has both partners
    subset = training_subset(pairs)
    real = by_kind(pairs, REAL)
    pd.testing.assert_frame_equal(by_kind(subset, REAL), real)
    constructed = subset[subset["constructed"]]
    assert Counter(constructed["comment_id"]) == Counter({c: 1 for c in real["comment_id"]})
    assert set(constructed["kind"]) == {HARD, RANDOM}  # the hash picks both kinds
    pd.testing.assert_frame_equal(training_subset(pairs), subset)


def test_a_comment_without_a_hard_partner_still_gets_its_random_partner() -> None:
    # one article per site: no hard partner for anybody, a random partner for everybody
    records = []
    for k, site in enumerate(("alghad", "hespress", "ammon")):
        records += comments_under(site, 100 + k, k, 6)
    pairs = article_pairs(records, n_folds=1, seed=13)
    assert HARD not in set(pairs["kind"])
    assert (pairs.groupby("comment_id").size() == 2).all()
    constructed = training_subset(pairs).query("constructed")
    assert set(constructed["comment_id"]) == set(pairs["comment_id"])


# ----------------------------------------------------------------------------- contexts


def test_with_context_blanks_what_the_cms_would_not_send(records) -> None:
    pairs = article_pairs(records, n_folds=2, seed=13)
    before = pairs.copy()
    pd.testing.assert_frame_equal(with_context(pairs, "title_body"), pairs)
    title = with_context(pairs, "title")
    assert (title["article_text"] == "").all()
    assert (title["article_title"] == pairs["article_title"]).all()
    none = with_context(pairs, "none")
    assert (none["article_text"] == "").all() and (none["article_title"] == "").all()
    for out in (title, none):
        pd.testing.assert_frame_equal(
            out.drop(columns=["article_title", "article_text"]),
            pairs.drop(columns=["article_title", "article_text"]),
        )
    with pytest.raises(ValueError, match="unknown context"):
        with_context(pairs, "body")
    pd.testing.assert_frame_equal(pairs, before)  # the input is not modified


# ----------------------------------------------------------------------------- human-labelled pairs


def test_labelled_pairs_map_off_topic_to_one_and_fold_by_question() -> None:
    records = []
    for q in range(6):
        for i, label in enumerate(("on_topic", "off_topic", "on_topic")):
            records.append(
                LabeledRecord(
                    text=f"جواب {i} عن السؤال {q}",
                    label=label,
                    comment_id=f"semeval2015:Q{q}_C{i}",
                    article_id=f"semeval2015:Q{q}",
                    article_title=f"سؤال رقم {q}",
                    article_text=f"نص السؤال رقم {q} عن الإقامة والعمل",
                    source="semeval2015",
                )
            )
    records.append(LabeledRecord(text="بلا سؤال", label="off_topic", source="semeval2015"))
    records += comments_under("alghad", 500010, 0, 2)  # another source
    pairs = labelled_pairs(records, n_folds=3)
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    assert len(pairs) == 18
    assert list(pairs["label"]) == [0, 1, 0] * 6
    assert list(pairs["kind"]) == ["relevant", "irrelevant", "relevant"] * 6
    assert not pairs["constructed"].any()
    assert (pairs["article_id"] == pairs["own_article_id"]).all()
    assert (pairs.groupby("article_id")["fold"].nunique() == 1).all()
    assert set(pairs["fold"]) == {0, 1, 2}
    assert list(pairs["pair_id"]) == [r.comment_id for r in records[:18]]


# ----------------------------------------------------------------------------- comment corpus


def sentence(site_article: str, comment: int, number: int, variety: str, text: str) -> LabeledRecord:
    return LabeledRecord(
        text=text,
        comment_id=f"aoc_sentences:{site_article}_{comment:03d}_{number:03d}_{variety}",
        article_id=f"aoc:{site_article}",
        site=site_article.split("_")[0],
        source="aoc_sentences",
    )


CORPUS_RECORDS = [
    # one comment's sentences, split between the two variety files and out of order
    sentence("alghad_500015", 1, 10, "MSA", "والجملة العاشرة أخيرا"),
    sentence("alghad_500015", 1, 2, "MSA", "ثم الجملة الثانية"),
    sentence("alghad_500015", 1, 1, "DA", "الجملة الأولى باللهجة"),
    sentence("alghad_500015", 2, 1, "MSA", "تعليق ثان من جملة واحدة"),
    sentence("alghad_500015", 3, 1, "MSA", ""),  # nothing left: no comment
    sentence("alghad_500016", 1, 1, "DA", "تعليق تحت مقال آخر"),
    LabeledRecord(
        text="معرف لا يتبع الصيغة",
        comment_id="aoc_sentences:broken",
        article_id="aoc:alghad_1",
        source="aoc_sentences",
    ),
    LabeledRecord(text="بلا مقال", comment_id="aoc_sentences:alghad_1_001_001_MSA", source="aoc_sentences"),
    LabeledRecord(
        text="مصدر آخر", comment_id="aoc:alghad_500015_001", article_id="aoc:alghad_500015", source="aoc"
    ),
]


def test_comment_corpus_rejoins_sentences_in_order_under_their_article() -> None:
    texts, groups = comment_corpus(CORPUS_RECORDS)
    assert texts == [
        normalize("الجملة الأولى باللهجة ثم الجملة الثانية والجملة العاشرة أخيرا"),
        normalize("تعليق ثان من جملة واحدة"),
        normalize("تعليق تحت مقال آخر"),
    ]
    assert groups == ["aoc:alghad_500015", "aoc:alghad_500015", "aoc:alghad_500016"]


def test_comment_corpus_leaves_out_the_excluded_articles() -> None:
    texts, groups = comment_corpus(CORPUS_RECORDS, exclude_articles=frozenset({"aoc:alghad_500015"}))
    assert texts == [normalize("تعليق تحت مقال آخر")]
    assert groups == ["aoc:alghad_500016"]
    assert comment_corpus(CORPUS_RECORDS, source="nothing") == ([], [])


# ----------------------------------------------------------------------------- experiment helpers


def test_source_weights_give_every_source_the_same_total_and_mean_one() -> None:
    sources = np.array(["aoc"] * 30 + ["semeval2015"] * 6 + ["aoc"] * 4)
    weights = source_weights(sources, {})
    assert weights.mean() == pytest.approx(1.0)
    totals = {s: weights[sources == s].sum() for s in ("aoc", "semeval2015")}
    assert totals["aoc"] == pytest.approx(totals["semeval2015"])
    assert len(set(np.round(weights[sources == "aoc"], 12))) == 1  # equal within a source
    boosted = source_weights(sources, {"semeval2015": 3.0})
    assert boosted.mean() == pytest.approx(1.0)
    assert boosted[sources == "semeval2015"].sum() == pytest.approx(3 * boosted[sources == "aoc"].sum())


def test_cosine_scores_rank_a_comment_that_shares_the_articles_words_as_more_on_topic() -> None:
    rows = []
    for fold, (title, body) in enumerate(STORIES[:2]):
        on = f"{title} {body.split()[0]} {body.split()[1]}"
        off = "الطقس حار جدا اليوم ولا أحب الصيف"
        for text in (on, off, "تعليق عابر عن شيء مختلف تماما"):
            rows.append({"text": text, "article_title": title, "article_text": body, "fold": fold})
    frame = pd.DataFrame(rows)
    scores = cosine_scores(frame, n_folds=2)
    assert ((scores <= 0.0) & (scores >= -1.0 - 1e-9)).all()
    for fold in (0, 1):
        on, off, other = scores[frame["fold"].to_numpy() == fold]
        assert on < off and on < other


def _cosine_by_refitting(frame: pd.DataFrame, n_folds: int) -> np.ndarray:
    """The baseline's definition, spelled out: a TfidfVectorizer fitted on each fold's training
    comments and distinct training articles, cosine of each test comment with its article."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    comments = [normalize(t) for t in frame["text"]]
    articles = [
        normalize(f"{t or ''} {b or ''}".strip())
        for t, b in zip(frame["article_title"], frame["article_text"], strict=True)
    ]
    folds = frame["fold"].to_numpy()
    out = np.zeros(len(frame))
    for f in range(n_folds):
        train = folds != f
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)
        vectorizer.fit(
            [c for c, m in zip(comments, train, strict=True) if m]
            + sorted({a for a, m in zip(articles, train, strict=True) if m and a})
        )
        for i in np.flatnonzero(folds == f):
            pair = vectorizer.transform([comments[i], articles[i]])
            out[i] = -float(pair[0].multiply(pair[1]).sum())
    return out


def test_cosine_scores_equal_a_vectorizer_refitted_on_every_fold() -> None:
    # Repeated comments, an article seen only in its test fold, a missing article, a comment with
    # n-grams no training document has, and Latin text (lower-cased by the vectorizer).
    rows = []
    for k, (title, body) in enumerate(STORIES[:6]):
        for i in range(3):
            rows.append(
                {
                    "text": f"{REMARKS[(k + i) % len(REMARKS)]} {body.split()[i]} Good POINT {k}",
                    "article_title": title,
                    "article_text": body if i != 2 else None,
                    "fold": k % 3,
                }
            )
    rows.append({"text": REMARKS[0], "article_title": "", "article_text": "", "fold": 1})
    rows.append({"text": "ﷺ zzqx", "article_title": STORIES[7][0], "article_text": STORIES[7][1], "fold": 2})
    rows.append(dict(rows[0]))  # the same comment and article twice in one fold
    frame = pd.DataFrame(rows)
    expected = _cosine_by_refitting(frame, n_folds=3)
    scores = cosine_scores(frame, n_folds=3)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)
    assert (expected < 0).sum() >= len(rows) - 3  # the comparison is not between zeros


class _Features:
    """A stand-in extractor whose matrix says which object made it."""

    def __init__(self, mark: float) -> None:
        self.mark = mark
        self.feature_names_ = ["only"]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        return np.full((len(frame), 1), self.mark)


def test_cached_matrices_belong_to_the_features_object_that_made_them() -> None:
    import gc
    import weakref

    from training.experiment.relevance import RelevanceData

    pairs = pd.DataFrame({"text": ["a", "b"], "article_title": ["t", "t"], "article_text": ["x", "y"]})
    data = RelevanceData(pairs, pd.DataFrame(), [], [])
    first = _Features(1.0)
    assert data.matrix(first, "pairs", "title").tolist() == [[1.0], [1.0]]  # type: ignore[arg-type]
    alive = weakref.ref(first)
    del first
    gc.collect()
    # The cache keeps its extractor alive, so no later extractor can be given its id, and its rows.
    assert alive() is not None
    for mark in (2.0, 3.0, 4.0):
        assert data.matrix(_Features(mark), "pairs", "title").tolist() == [[mark], [mark]]  # type: ignore[arg-type]


def test_cosine_baselines_computed_in_the_background_equal_those_computed_in_place(records) -> None:
    import os

    import psutil

    from training.data.relevance import article_pairs
    from training.experiment.relevance import RelevanceData

    pairs = article_pairs(records, seed=13, n_folds=3)
    labelled = pairs.head(0)
    in_place = RelevanceData(pairs, labelled, [], [])
    behind = RelevanceData(pairs, labelled, [], [])
    with behind.cosines_in_background(3):
        workers = psutil.Process(os.getpid()).children(recursive=True)
        background = {c: behind.cosine("pairs", c, 3) for c in ("title_body", "title")}
    assert workers, "no worker process computed them"
    for context, scores in background.items():
        np.testing.assert_array_equal(scores, in_place.cosine("pairs", context, 3))
    assert (background["title_body"] < 0).any()  # not a comparison of zeros
    # The worker ends with the block; nothing was left pending.
    alive = [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    assert not [
        w
        for w in alive
        if "loky" in " ".join(w.cmdline()) and "resource_tracker" not in " ".join(w.cmdline())
    ]
    assert not behind._cosine_pending
