"""Cross-source scaling: n-grams that mark the class in every source keep their weight."""

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline

from serving.features.agreement import CrossSourceScaling, scale_columns, source_agreement_scale
from serving.features.ngrams import HashedNgrams
from serving.features.prepare import CommentPreprocessor, SequentialFeatureUnion


def _matrix(rows: list[list[int]]) -> sp.csr_matrix:
    return sp.csr_matrix(np.array(rows, dtype=np.float32))


def test_a_column_that_marks_the_class_in_both_sources_outweighs_one_that_flips() -> None:
    # column 0: present in positives of both sources; column 1: positives of A, negatives of B.
    source_a = [[1, 1], [1, 1], [1, 1], [0, 0], [0, 0], [0, 0]]  # 3 positives, 3 negatives
    source_b = [[1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1]]
    x = _matrix([*source_a, *source_b])
    y = np.array([1, 1, 1, 0, 0, 0] * 2)
    sources = np.array(["a"] * 6 + ["b"] * 6)
    scale = source_agreement_scale(x, y, sources, floor=0.1, min_count=3)
    assert scale[0] > 1.0
    # The flipping column's median ratio sits between the two opposite votes: near zero.
    assert scale[1] < 0.5 * scale[0]


def test_a_column_only_one_source_votes_on_is_shrunk_and_unseen_columns_get_the_floor() -> None:
    x = _matrix([[1, 0, 0]] * 3 + [[0, 0, 0]] * 3 + [[0, 1, 0]] * 3 + [[0, 0, 0]] * 3)
    y = np.array([1, 1, 1, 0, 0, 0] * 2)
    sources = np.array(["a"] * 6 + ["b"] * 6)
    full = source_agreement_scale(x, y, sources, floor=0.0, min_count=3, single_source_shrink=1.0)
    shrunk = source_agreement_scale(x, y, sources, floor=0.0, min_count=3, single_source_shrink=0.5)
    np.testing.assert_allclose(shrunk[:2], 0.5 * full[:2])
    assert source_agreement_scale(x, y, sources, floor=0.1)[2] == np.float32(0.1)


def test_a_source_with_one_class_does_not_vote() -> None:
    x = _matrix([[1]] * 3 + [[0]] * 3 + [[1]] * 4)
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    with_spam_only = source_agreement_scale(x, y, np.array(["a"] * 6 + ["b"] * 4), min_count=3)
    alone = source_agreement_scale(x[:6], y[:6], np.array(["a"] * 6), min_count=3)
    np.testing.assert_allclose(with_spam_only, alone)


def test_scale_columns_multiplies_each_column_and_leaves_the_input_alone() -> None:
    x = _matrix([[1, 2], [3, 0]])
    scaled = scale_columns(x, np.array([2.0, 0.5], dtype=np.float32))
    np.testing.assert_allclose(scaled.toarray(), [[2, 1], [6, 0]])
    np.testing.assert_allclose(x.toarray(), [[1, 2], [3, 0]])


def test_fitting_through_a_pipeline_with_sources_equals_fitting_from_the_matrix() -> None:
    texts = ["يا كلب", "انت كلب", "شكرا لك", "مقال جميل", "يا حقير", "حقير جدا", "خبر مفيد", "شكرا جزيلا"]
    frame = pd.DataFrame({"text": texts})
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    sources = np.array(["a"] * 4 + ["b"] * 4)

    def union() -> SequentialFeatureUnion:
        return SequentialFeatureUnion([("char", HashedNgrams(ngram_range=(2, 3), n_bits=12, min_df=1))])

    pipeline = Pipeline(
        [
            ("prep", CommentPreprocessor()),
            ("features", CrossSourceScaling(union(), min_count=1)),
            ("clf", SGDClassifier(loss="log_loss", random_state=0)),
        ]
    )
    pipeline.fit(frame, y, features__sources=sources)
    by_hand = CrossSourceScaling(union(), min_count=1)
    prepared = CommentPreprocessor().transform(frame)
    matrix = by_hand.features.fit_transform(prepared)
    by_hand.fit_from_matrix(matrix, y, sources)
    np.testing.assert_allclose(pipeline.named_steps["features"].scale_, by_hand.scale_)
    np.testing.assert_allclose(
        pipeline.named_steps["features"].transform(prepared).toarray(),
        by_hand.scale_matrix(matrix).toarray(),
        atol=1e-6,
    )
    assert pipeline.named_steps["features"].block_layout()[0][0] == "char"
