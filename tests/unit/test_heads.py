"""The abusive head's data rules, its left-out protocol and its threshold rule."""

import numpy as np
import pytest

from serving.text.normalize import normalize
from training.data.contract import LabeledRecord
from training.data.insults import has_insult
from training.experiment.config import AbuseHeadConfig
from training.experiment.heads import (
    LeftOut,
    featurise_head,
    head_rows,
    is_noisy,
    left_out_predictions,
    left_out_table,
    left_out_thresholds,
    scored_matrix,
    scored_rows,
    table_markdown,
)


def _record(text: str, label: str, source: str, comment_id: str | None = None) -> LabeledRecord:
    return LabeledRecord(text=text, label=label, source=source, comment_id=comment_id or f"{source}:{text}")


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("يا كلب", True),
        ("والكلاب تنبح", True),
        ("لعنة الله عليك", True),
        ("ya 7mar", True),
        ("يا أخي الكريم شكرا", False),
        ("الحكومة قوية ومتماسكة", False),
        ("كلبية", False),  # a word that merely starts like an EXACT entry
    ],
)
def test_the_insult_lexicon_reads_normalised_text(text: str, hit: bool) -> None:
    assert has_insult(normalize(text)) is hit


def test_negatives_with_an_insult_are_dropped_except_from_trusted_sources() -> None:
    config = AbuseHeadConfig(max_per_cell=None)
    rows = head_rows(
        config,
        [
            _record("يا كلب انت", "on_topic", "myc"),
            _record("تعليق مهذب", "on_topic", "myc"),
            _record("يا كلب انت", "on_topic", "starter"),
            _record("يا حقير", "abusive", "myc"),
        ],
        seed=1,
    )
    kept = {(r.source, r.text, r.label) for r in rows.records}
    assert ("myc", "يا كلب انت", "on_topic") not in kept
    assert ("starter", "يا كلب انت", "on_topic") in kept
    assert ("myc", "يا حقير", "abusive") in kept
    assert rows.dropped_insult_negatives == {"myc": 1}


def test_every_cell_weighs_the_same_and_noisy_halves_weigh_less() -> None:
    config = AbuseHeadConfig(max_per_cell=None, noisy_weight=0.5, drop_insult_negatives=False)
    records = [_record(f"نص {i}", "abusive", "big") for i in range(30)]
    records += [_record(f"نص آخر {i}", "on_topic", "big") for i in range(10)]
    records += [
        _record("جميل", "on_topic", "myc", "myc:pos_1"),
        _record("سيء", "on_topic", "myc", "myc:neg_2"),
    ]
    rows = head_rows(config, records, seed=1)
    cell_mass = {
        key: rows.weights[(rows.sources == key[0]) & (rows.y == key[1])].sum()
        for key in (("big", 1), ("big", 0), ("myc", 0))
    }
    assert cell_mass[("big", 1)] == pytest.approx(cell_mass[("big", 0)])
    assert cell_mass[("big", 1)] == pytest.approx(cell_mass[("myc", 0)])
    noisy = rows.weights[[r.comment_id == "myc:neg_2" for r in rows.records]][0]
    clean = rows.weights[[r.comment_id == "myc:pos_1" for r in rows.records]][0]
    assert noisy == pytest.approx(0.5 * clean)
    assert is_noisy(records[-1]) and not is_noisy(records[-2])


def test_cells_are_capped_with_a_seed_and_excluded_sources_are_left_out() -> None:
    config = AbuseHeadConfig(max_per_cell=5, max_rows={"aoc_sentences": 2}, exclude_sources=("aljazeera",))
    records = [_record(f"نص {i}", "on_topic", "osact") for i in range(20)]
    records += [_record(f"جملة {i}", "on_topic", "aoc_sentences") for i in range(20)]
    records += [_record(f"حذف {i}", "abusive", "aljazeera") for i in range(20)]
    first = head_rows(config, records, seed=3)
    again = head_rows(config, records, seed=3)
    counts = {s: int((first.sources == s).sum()) for s in ("osact", "aoc_sentences", "aljazeera")}
    assert counts == {"osact": 5, "aoc_sentences": 2, "aljazeera": 0}
    assert [r.text for r in first.records] == [r.text for r in again.records]


def _two_families() -> list[LabeledRecord]:
    # Each family writes each class with made-up words of its own: a head trained on a family
    # learns its words; a head that never saw the family meets only unknown words in both classes.
    records = []
    for i in range(40):
        records.append(_record(f"زرقوم {i}", "abusive", "alpha", f"alpha:a{i}"))
        records.append(_record(f"بلبوس {i}", "on_topic", "alpha", f"alpha:n{i}"))
        records.append(_record(f"فرشوط {i}", "abusive", "beta", f"beta:a{i}"))
        records.append(_record(f"قمقوم {i}", "on_topic", "beta", f"beta:n{i}"))
    return records


def test_each_family_is_scored_by_a_head_that_never_saw_it() -> None:
    config = AbuseHeadConfig(
        evaluated_sources=("alpha", "beta"), drop_insult_negatives=False, min_df=1, alpha=1e-4
    )
    records = _two_families()
    rows = head_rows(config, records, seed=1)
    featurised = featurise_head(config, rows)
    scored = scored_rows(config, records, seed=1, per_source=None)
    left_out = left_out_predictions(config, rows, featurised, scored, seed=1, n_folds=0)
    assert left_out is not None and left_out.protocol == "leave-one-source-out"
    # Trained on its own family, a head separates it perfectly; left out, the made-up word is
    # unknown and the abusive rows score no higher than the clean ones of the same family.
    from sklearn.metrics import roc_auc_score

    for source in ("alpha", "beta"):
        mask = left_out.sources == source
        assert roc_auc_score(left_out.y[mask], left_out.p[mask]) < 0.75


def test_scored_rows_it_trains_on_reuse_their_rows_and_the_others_are_featurised_in_order() -> None:
    config = AbuseHeadConfig(
        evaluated_sources=("alpha", "beta", "gamma"), drop_insult_negatives=False, min_df=1, max_per_cell=25
    )
    records = _two_families()
    # A source the head does not train on: its rows are scored but have no training row.
    records += [_record(f"زرقوم فرشوط {i}", "on_topic", "gamma", f"gamma:{i}") for i in range(5)]
    config = config.model_copy(update={"exclude_sources": ("gamma",)})
    rows = head_rows(config, records, seed=1)  # capped: some scored rows of alpha and beta are not in it
    featurised = featurise_head(config, rows)
    scored = scored_rows(config, records, seed=2, per_source=None)
    from training.experiment.heads import _text_frame

    trained = {id(r) for r in rows.records}
    assert 0 < sum(id(r) in trained for r in scored) < len(scored)
    expected = featurised.union.transform(featurised.preprocessor.transform(_text_frame(scored)))
    found = scored_matrix(featurised, rows, scored)
    assert found.shape == expected.shape
    assert (found != expected).nnz == 0


def test_a_head_trained_on_every_family_would_have_separated_them() -> None:
    # The control for the test above: the same rows, scored in distribution, are easy.
    config = AbuseHeadConfig(evaluated_sources=("alpha",), drop_insult_negatives=False, min_df=1, alpha=1e-4)
    records = _two_families()
    rows = head_rows(config, records, seed=1)
    featurised = featurise_head(config, rows)
    from training.experiment.heads import fit_head

    head = fit_head(config, rows, featurised, seed=1)
    from training.data.gather import to_frame

    p = head.predict_proba(to_frame(records))[:, 1]
    y = np.array([r.label == "abusive" for r in records])
    assert p[y].min() > p[~y].max()


def test_families_group_relatives_so_they_are_held_out_together() -> None:
    config = AbuseHeadConfig(
        evaluated_sources=("alpha", "beta", "gamma"),
        families={"alpha": "site", "beta": "site"},
        drop_insult_negatives=False,
        min_df=1,
    )
    records = _two_families() + [
        _record(f"{word} {i}", label, "gamma")
        for i in range(10)
        for word, label in (("شتيمة", "abusive"), ("سلام", "on_topic"))
    ]
    rows = head_rows(config, records, seed=1)
    left_out = left_out_predictions(
        config, rows, featurise_head(config, rows), scored_rows(config, records, 1, None), seed=1, n_folds=0
    )
    assert left_out is not None
    # Two families (site, gamma): alpha is never scored by a head that trained on beta's rows,
    # so beta's word cannot help it either.
    assert "2 families" in left_out.protocol or left_out.protocol == "leave-one-source-out"


def _left_out(p_by_source: dict[str, tuple[list[float], list[int]]]) -> LeftOut:
    sources, p, y = [], [], []
    for source, (scores, labels) in p_by_source.items():
        sources += [source] * len(scores)
        p += scores
        y += labels
    records = [_record("تعليق عادي", "on_topic", source) for source in sources]
    return LeftOut(records, np.array(y), np.array(sources, dtype=object), np.array(p), "test", 0.0)


def test_review_at_is_the_lowest_threshold_holding_every_source_and_the_published_limit() -> None:
    config = AbuseHeadConfig(
        evaluated_sources=("a", "b"),
        threshold_sources=("a", "b"),
        published_sources=("pub",),
        published_goal_sources=("pub",),
        max_held=0.05,
        max_published_held=0.02,
        reject_max_held=0.01,
    )
    negatives_a = [0.1] * 95 + [0.6] * 5  # 5 % at 0.6
    negatives_b = [0.1] * 90 + [0.7] * 10  # 10 % at 0.7: review must sit above 0.7
    published = [0.05] * 98 + [0.65] * 2
    left_out = _left_out(
        {
            "a": (negatives_a + [0.9] * 10, [0] * 100 + [1] * 10),
            "b": (negatives_b + [0.95] * 10, [0] * 100 + [1] * 10),
            "pub": (published, [0] * 100),
        }
    )
    chosen = left_out_thresholds(config, left_out)
    assert chosen is not None
    assert 0.7 < chosen["review_at"] <= 0.705
    assert chosen["reject_at"] >= chosen["review_at"]
    table = left_out_table(config, left_out, chosen["review_at"], chosen["reject_at"])
    by_source = {row["source"]: row for row in table}
    assert by_source["b"]["held_at_review"] == 0.0
    assert by_source["b"]["caught_at_review"] == 1.0
    assert by_source["pub"]["kind"] == "published" and by_source["pub"]["roc_auc"] is None
    assert by_source["pub"]["held_at_review_without_insult_words"] == by_source["pub"]["held_at_review"]
    assert "| b | insult |" in table_markdown(table)


def test_no_threshold_source_means_no_left_out_thresholds() -> None:
    left_out = _left_out({"x": ([0.2, 0.8], [0, 1])})
    assert left_out_thresholds(AbuseHeadConfig(threshold_sources=("a",)), left_out) is None
