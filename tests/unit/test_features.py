"""Feature transformers: sklearn conventions, exactness of the fast path, neutral context."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from serving.features.ngrams import TextNgrams
from serving.features.prepare import CommentPreprocessor
from serving.features.relation import SIMILARITY_EDGES, ArticleRelation
from serving.features.signals import SpamSignals
from serving.text.tokens import content_tokens, light_stem
from tests.conftest import POLITICS_BODY, POLITICS_TITLE, SPORT_BODY, SPORT_TITLE, tiny_training_frame

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def prepared():
    return CommentPreprocessor().fit_transform(tiny_training_frame())


def test_init_only_stores_parameters() -> None:
    for transformer in (
        TextNgrams(analyzer="word", ngram_range=(1, 2)),
        ArticleRelation(n_components=7),
        SpamSignals(),
        CommentPreprocessor(),
    ):
        assert clone(transformer).get_params() == transformer.get_params()
        assert not [k for k in vars(transformer) if k.endswith("_")]


@pytest.mark.parametrize("analyzer", ["char_wb", "word"])
def test_fast_tfidf_matches_sklearn(prepared, analyzer: str) -> None:
    block = TextNgrams(analyzer=analyzer, min_df=1).fit(prepared)
    fast = block.transform(_head(prepared, 5)).toarray()
    slow = block.vectorizer_.transform(_head(prepared, 5).text).toarray()
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)


def _head(prepared, n):
    from serving.features.prepare import PreparedComments

    return PreparedComments(*(getattr(prepared, f)[:n] for f in ("raw_text", "text", "title", "body")))


def test_context_features_are_zero_without_an_article(prepared) -> None:
    relation = ArticleRelation(n_components=10, min_df=1).fit(prepared)
    bare = CommentPreprocessor().transform(pd.DataFrame({"text": ["الهلال بطل الدوري"]}))
    assert relation.transform(bare).nnz == 0


def test_related_article_scores_higher_than_unrelated(prepared) -> None:
    relation = ArticleRelation(n_components=10, min_df=1).fit(prepared)
    names = list(relation.get_feature_names_out())
    rows = CommentPreprocessor().transform(
        pd.DataFrame(
            {
                "text": ["الهلال فاز على النصر في الدوري"] * 2,
                "article_title": [SPORT_TITLE, POLITICS_TITLE],
                "article_text": [SPORT_BODY, POLITICS_BODY],
            }
        )
    )
    features = relation.transform(rows).toarray()
    lsa = names.index("ctx:lsa_article")
    shared = names.index("ctx:shared_words")
    assert features[0, lsa] > features[1, lsa]
    assert features[0, shared] > features[1, shared]


def test_spam_signals_see_masked_phone_and_url(prepared) -> None:
    rows = CommentPreprocessor().transform(pd.DataFrame({"text": ["واتساب ٠٥٥١٢٣٤٥٦٧ bit.ly/x", "رأي جميل"]}))
    signals = SpamSignals().fit(rows).transform(rows).toarray()
    names = list(SpamSignals.FEATURES)
    assert signals[0, names.index("sig:phone")] > 0 and signals[0, names.index("sig:url")] > 0
    assert signals[1, names.index("sig:phone")] == 0


def test_light_stem_and_content_tokens() -> None:
    assert light_stem("والحكومة") == "حكومة"
    assert light_stem("المدارس") == "مدارس"
    assert content_tokens("في الحكومه و المدارس xxurl 2024") == ["حكومه", "مدارس"]


def test_fitted_pipeline_pickles_without_per_process_caches(tiny_pipeline) -> None:
    frame = tiny_training_frame().head(3)
    before = tiny_pipeline.predict_proba(frame)
    restored = pickle.loads(pickle.dumps(tiny_pipeline))
    np.testing.assert_allclose(restored.predict_proba(frame), before)
    relation = restored.named_steps["features"].transformer_list[2][1]
    assert "_cache" not in pickle.loads(pickle.dumps(relation)).__dict__


def test_each_relation_row_follows_the_column_definitions(prepared) -> None:
    """Every column of the relation block against its definition, for every kind of context: title
    and body, title only, body only, none, and a Latin comment under an Arabic article."""
    relation = ArticleRelation(n_components=10, min_df=1).fit(prepared)
    names = list(relation.get_feature_names_out())
    comments = ["الهلال فاز على النصر في الدوري", "great match for the team", "الحكومة والقوات"]
    contexts = [(SPORT_TITLE, SPORT_BODY), (SPORT_TITLE, None), (None, POLITICS_BODY), (None, None)]
    frame = pd.DataFrame(
        [(text, title, body) for text in comments for title, body in contexts],
        columns=["text", "article_title", "article_text"],
    )
    rows = CommentPreprocessor().transform(frame)
    features = relation.dense(rows)
    similarities = relation._similarities(rows, relation._articles(rows))
    edges = np.asarray(SIMILARITY_EDGES)
    for i, (text, title, body) in enumerate(zip(rows.text, rows.title, rows.body, strict=True)):
        row = dict(zip(names, features[i].tolist(), strict=True))
        if not (title or body):
            assert not features[i].any()
            continue
        clipped = np.clip(similarities[i], 0.0, 1.0).astype(np.float32)
        assert (row["ctx:has_title"], row["ctx:has_body"]) == (float(bool(title)), float(bool(body)))
        assert row["ctx:lsa_title"] == (clipped[0] if title else 0.0)
        assert row["ctx:lsa_body"] == (clipped[1] if body else 0.0)
        assert (row["ctx:lsa_article"], row["ctx:tfidf_article"]) == (clipped[2], clipped[3])
        words = set(content_tokens(text))
        shared = len(words & set(content_tokens(f"{title} {body}")))
        assert row["ctx:shared_words"] == np.float32(min(shared, 5) / 5)
        assert row["ctx:shared_fraction"] == np.float32(shared / len(words) if words else 0.0)
        assert row["ctx:latin_comment_arabic_article"] == float(text.isascii())
        # one bin: of the body's similarity when there is a body, else of the title's
        kind, similarity = ("body", clipped[2]) if body else ("title", clipped[0])
        position = int(np.searchsorted(edges, max(similarity, clipped[3]), side="right"))
        bins = [n for n in names if n.startswith(("ctx:title_sim", "ctx:body_sim"))]
        assert [row[n] for n in bins] == [
            float(n == bins[position + (5 if kind == "body" else 0)]) for n in bins
        ]
