"""Hashed n-grams and the scipy-free scoring path: same numbers as the general path, stable hashes."""

import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from serving.features.ngrams import HashedNgrams, char_wb_grams, word_grams
from serving.features.prepare import CommentPreprocessor, PreparedComments, SequentialFeatureUnion
from serving.features.relation import ArticleRelation
from serving.features.signals import SpamSignals
from serving.model.moderation import _linear_scorer
from tests.conftest import REPO, tiny_training_frame

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def prepared() -> PreparedComments:
    return CommentPreprocessor().fit_transform(tiny_training_frame())


def _rows(prepared: PreparedComments, index: list[int]) -> PreparedComments:
    fields = ("raw_text", "text", "title", "body")
    return PreparedComments(*(tuple(getattr(prepared, f)[i] for i in index) for f in fields))


def _grams_of(found, doc: int) -> list[str]:
    picked = np.flatnonzero(found.doc == doc)
    return sorted(found.joined[found.begin[i] : found.end[i]] for i in picked)


def test_char_grams_stay_inside_padded_words() -> None:
    found = char_wb_grams(["ab c", "xyz"], (2, 5), bits=16)
    assert _grams_of(found, 0) == sorted([" a", "ab", "b ", " c", "c ", " ab", "ab ", " c ", " ab "])
    assert _grams_of(found, 1) == sorted(
        [" x", "xy", "yz", "z ", " xy", "xyz", "yz ", " xyz", "xyz ", " xyz "]
    )


def test_word_grams_do_not_pair_words_across_comments() -> None:
    found = word_grams(["الهلال بطل", "الدوري"], (1, 2), bits=16)
    assert _grams_of(found, 0) == sorted(["الهلال", "بطل", "الهلال بطل"])
    assert _grams_of(found, 1) == ["الدوري"]


def test_same_gram_same_bucket_wherever_it_appears() -> None:
    found = char_wb_grams(["واتساب", "رقم واتساب الان"], (2, 5), bits=18)
    buckets = {}
    for i in range(len(found.bucket)):
        gram = found.joined[found.begin[i] : found.end[i]]
        assert buckets.setdefault(gram, found.bucket[i]) == found.bucket[i]


def test_buckets_do_not_depend_on_the_process_or_hash_seed() -> None:
    code = (
        "from serving.features.ngrams import char_wb_grams, word_grams;"
        "print(char_wb_grams(['رقم واتساب 0555'], (2, 5), 19).bucket.tolist(),"
        " word_grams(['buy now call'], (1, 2), 18).bucket.tolist())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        ).stdout
        for seed in ("0", "1", "12345")
    }
    assert len(outputs) == 1


def test_init_only_stores_parameters() -> None:
    block = HashedNgrams(analyzer="word", ngram_range=(1, 2), n_bits=12)
    assert clone(block).get_params() == block.get_params()
    assert not [k for k in vars(block) if k.endswith("_")]


@pytest.mark.parametrize("analyzer", ["char_wb", "word"])
def test_small_and_large_batches_give_the_same_rows(prepared: PreparedComments, analyzer: str) -> None:
    block = HashedNgrams(analyzer=analyzer, ngram_range=(1, 3), n_bits=14, min_df=1).fit(prepared)
    indices = list(range(len(prepared)))
    big = block.transform(_rows(prepared, indices * (70 // len(indices) + 1)))  # > 64 rows
    for i in indices[:5]:
        single = block.transform(_rows(prepared, [i]))
        np.testing.assert_allclose(single.toarray()[0], big[i].toarray()[0], rtol=1e-6)
    assert np.allclose(np.asarray(big.multiply(big).sum(axis=1)).ravel(), 1.0, atol=1e-5)


def test_fit_transform_equals_fit_then_transform(prepared: PreparedComments) -> None:
    block = HashedNgrams(n_bits=14, min_df=1)
    fitted = block.fit_transform(prepared)
    np.testing.assert_allclose(fitted.toarray(), block.transform(prepared).toarray(), rtol=1e-6)


@pytest.mark.parametrize("analyzer", ["char_wb", "word"])
def test_fit_transform_in_chunks_equals_one_chunk(
    prepared: PreparedComments, analyzer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Training featurises ~100k comments chunk by chunk; rows, columns, IDF and weights must be
    # exactly those of one pass, whichever chunk a comment falls in (and min_df counts across chunks).
    import serving.features.ngrams as ngrams

    indices = list(range(len(prepared)))
    many = _rows(prepared, indices * (90 // len(indices) + 1))
    whole = HashedNgrams(analyzer=analyzer, ngram_range=(1, 3), n_bits=14, min_df=3, max_features=400)
    expected = whole.fit_transform(many)
    monkeypatch.setattr(ngrams, "_HASH_CHUNK", 7)
    chunked = HashedNgrams(analyzer=analyzer, ngram_range=(1, 3), n_bits=14, min_df=3, max_features=400)
    found = chunked.fit_transform(many)
    assert len(many) > 7 * 10 and found.shape == expected.shape
    np.testing.assert_array_equal(chunked.columns_, whole.columns_)
    np.testing.assert_array_equal(chunked.idf_, whole.idf_)
    np.testing.assert_array_equal(found.indptr, expected.indptr)
    np.testing.assert_array_equal(found.indices, expected.indices)
    np.testing.assert_array_equal(found.data, expected.data)
    refit = HashedNgrams(analyzer=analyzer, ngram_range=(1, 3), n_bits=14, min_df=3, max_features=400)
    np.testing.assert_array_equal(refit.fit(many).idf_, whole.idf_)  # `fit` counts in chunks too


def test_min_df_and_max_features_prune_columns(prepared: PreparedComments) -> None:
    everything = HashedNgrams(n_bits=16, min_df=1, max_features=None).fit(prepared)
    capped = HashedNgrams(n_bits=16, min_df=1, max_features=50).fit(prepared)
    assert capped.output_width == 50 < everything.output_width
    assert capped.transform(prepared).shape[1] == 50


def test_explain_names_are_grams_of_the_text(prepared: PreparedComments) -> None:
    block = HashedNgrams(analyzer="word", ngram_range=(1, 2), n_bits=16, min_df=1).fit(prepared)
    text = prepared.text[0]
    names = block.explain_names(text)
    row = block.transform(_rows(prepared, [0]))
    assert set(row.indices.tolist()) <= set(names)
    assert all(name in text for name in names.values())


@pytest.mark.parametrize("analyzer", ["char_wb", "word"])
def test_a_batch_row_names_its_columns_as_the_text_alone_does(
    prepared: PreparedComments, analyzer: str
) -> None:
    # Explanations read a row's grams from the batch the features hashed instead of hashing it again.
    block = HashedNgrams(analyzer=analyzer, ngram_range=(1, 3), n_bits=12, min_df=1).fit(prepared)
    batch = _rows(prepared, list(range(len(prepared))))
    assert block.row_grams(batch, 0) is None  # nothing hashed for this batch yet
    block.sparse_parts(batch)
    # 12 bits: many grams share a bucket, so which gram names a column depends on their order too.
    for row in range(len(batch)):
        found = block.row_grams(batch, row)
        assert found is not None
        assert block.explain_names(batch.text[row], found=found) == block.explain_names(batch.text[row])
        columns = sorted(block.explain_names(batch.text[row]))[::2]
        assert block.explain_names(batch.text[row], columns, found=found) == {
            column: name for column, name in block.explain_names(batch.text[row]).items() if column in columns
        }
    assert block.row_grams(batch, len(batch) + 3).bucket.size == 0


def test_pickled_block_transforms_identically(prepared: PreparedComments) -> None:
    block = HashedNgrams(n_bits=14, min_df=1).fit(prepared)
    copy = pickle.loads(pickle.dumps(block))
    np.testing.assert_array_equal(copy.transform(prepared).toarray(), block.transform(prepared).toarray())


def test_article_relation_single_rows_match_the_batch_path(prepared: PreparedComments) -> None:
    relation = ArticleRelation(n_components=8, min_df=1).fit(prepared)
    indices = list(range(len(prepared)))
    big = relation.dense(_rows(prepared, indices * (70 // len(indices) + 1)))
    for i in indices:
        np.testing.assert_allclose(relation.dense(_rows(prepared, [i]))[0], big[i], atol=1e-5)


def test_union_transform_is_the_stack_of_its_blocks(prepared: PreparedComments) -> None:
    union = SequentialFeatureUnion(
        [
            ("char", HashedNgrams(n_bits=12, min_df=1)),
            ("context", ArticleRelation(n_components=5, min_df=1)),
            ("signals", SpamSignals()),
        ],
        transformer_weights={"context": 0.5},
    ).fit(prepared)
    stacked = union.transform(prepared).toarray()
    blocks = [b.transform(prepared).toarray() for _, b in union.transformer_list]
    np.testing.assert_allclose(stacked, np.hstack([blocks[0], 0.5 * blocks[1], blocks[2]]), rtol=1e-6)
    assert [w for *_, w in union.block_layout()] == [b.shape[1] for b in blocks]


@pytest.mark.parametrize("n_classes", [2, 4])
def test_linear_scorer_reproduces_predict_proba(prepared: PreparedComments, n_classes: int) -> None:
    block = HashedNgrams(n_bits=12, min_df=1).fit(prepared)
    matrix = block.transform(prepared)
    labels = np.arange(len(prepared)) % n_classes
    classifier = LogisticRegression(max_iter=500).fit(matrix, labels)
    scorer = _linear_scorer(classifier, n_classes)
    assert scorer is not None
    np.testing.assert_allclose(scorer.proba(matrix), classifier.predict_proba(matrix), atol=1e-5)


def test_linear_scorer_declines_other_classifiers(prepared: PreparedComments) -> None:
    from sklearn.naive_bayes import ComplementNB

    matrix = HashedNgrams(n_bits=12, min_df=1).fit(prepared).transform(prepared)
    classifier = ComplementNB().fit(matrix, np.arange(len(prepared)) % 2)
    assert _linear_scorer(classifier, 2) is None


def test_empty_and_symbol_only_comments_give_empty_rows(prepared: PreparedComments) -> None:
    block = HashedNgrams(analyzer="word", n_bits=12, min_df=1).fit(prepared)
    rows = CommentPreprocessor().transform(pd.DataFrame({"text": ["", "!!! ؟؟", "\u200f"]}))
    assert block.transform(rows).nnz == 0


def test_blocks_with_the_same_hashing_share_one_comment_s_grams_and_stay_correct() -> None:
    # The base and a label head hash the same comment alike: the second block reuses the grams,
    # and its own kept columns and IDF still apply.
    fitted = [
        HashedNgrams(analyzer="char_wb", ngram_range=(2, 4), n_bits=12, min_df=1, max_features=k).fit(
            PreparedComments(("",) * 2, ("شكرا على الخبر", "خبر مهم جدا"), ("", ""), ("", ""))
        )
        for k in (None, 5)
    ]
    one = PreparedComments(("",), ("شكرا على الخبر",), ("",), ("",))
    first, second = (block.transform(one) for block in fitted)
    assert first.shape[1] != second.shape[1]
    fresh = HashedNgrams(analyzer="char_wb", ngram_range=(2, 4), n_bits=12, min_df=1, max_features=5)
    fresh.fit(PreparedComments(("",) * 2, ("شكرا على الخبر", "خبر مهم جدا"), ("", ""), ("", "")))
    np.testing.assert_allclose(second.toarray(), fresh.transform(one).toarray())
