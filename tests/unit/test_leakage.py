"""The corpus-leakage check flags sources that the features alone can tell apart."""

import pytest
from sklearn.pipeline import Pipeline

from training.data.contract import LabeledRecord
from training.data.gather import to_frame
from training.experiment.train import corpus_leakage

pytestmark = pytest.mark.unit


def _featurizer(tiny_pipeline) -> Pipeline:
    return Pipeline(tiny_pipeline.steps[:2])


def _records(style_a: str, style_b: str) -> list[LabeledRecord]:
    words = ["الحكومة", "الدوري", "النفط", "المدارس", "الطقس", "المترو", "السياحة", "الانتخابات"]
    out = []
    for i in range(120):
        w = words[i % len(words)]
        out.append(
            LabeledRecord(
                text=style_a.format(w=w, i=i), label="on_topic", comment_id=f"a{i}", source="corpus_a"
            )
        )
        out.append(
            LabeledRecord(
                text=style_b.format(w=w, i=i), label="on_topic", comment_id=f"b{i}", source="corpus_b"
            )
        )
    return out


def test_distinct_corpora_are_flagged(tiny_pipeline) -> None:
    report = corpus_leakage(
        _featurizer(tiny_pipeline), _records("RT {w} !!! http://x.example/{i}", "رأيي في {w} أنه جيد"), seed=0
    )
    assert report["source_accuracy"] > 0.95
    assert report["majority_baseline"] == pytest.approx(0.5)


def test_indistinguishable_corpora_stay_near_chance(tiny_pipeline) -> None:
    report = corpus_leakage(
        _featurizer(tiny_pipeline), _records("رأيي في {w} أنه جيد", "رأيي في {w} أنه جيد"), seed=0
    )
    assert report["source_accuracy"] < 0.7


def test_rows_handed_in_and_threads_give_the_report_made_from_scratch(tiny_pipeline) -> None:
    # Training hands in the rows it already featurised and fits the one-vs-rest classifiers in
    # threads; both must leave the report as it is when everything is made here, one thread.
    featurizer = _featurizer(tiny_pipeline)
    records = _records("RT {w} !!! http://x.example/{i}", "رأيي في {w} أنه جيد")
    records += [
        LabeledRecord(text=f"تعليق {i} عن {i % 7}", label="on_topic", comment_id=f"c{i}", source="corpus_c")
        for i in range(60)
    ]
    alone = corpus_leakage(featurizer, records, seed=3, n_jobs=1)
    handed = corpus_leakage(
        featurizer, records, seed=3, features=featurizer.transform(to_frame(records)), n_jobs=2
    )
    assert alone["n_sources"] == 3
    assert handed == alone
