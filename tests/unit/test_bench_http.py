"""The HTTP bench section's choice of the open-loop run it reports."""

import pytest

from training.bench.http import median_by_p99, open_runs_line

pytestmark = pytest.mark.unit


def _run(p99: float | None, errors: int = 0, lag: float = 0.5) -> dict[str, object]:
    return {"p99_ms": p99, "p50_ms": 5.0, "errors": errors, "send_lag_p99_ms": lag}


def test_the_reported_run_is_the_one_with_the_median_p99() -> None:
    runs = [_run(22.7, lag=5.5), _run(7.3), _run(9.1)]
    assert median_by_p99(runs)["p99_ms"] == 9.1


def test_a_run_without_any_answer_counts_as_the_slowest() -> None:
    assert median_by_p99([_run(None, errors=2000), _run(6.0), _run(8.0)])["p99_ms"] == 8.0


def test_the_errors_reported_are_every_run_s() -> None:
    chosen = median_by_p99([_run(6.0, errors=1), _run(7.0), _run(8.0, errors=2)])
    assert chosen["p99_ms"] == 7.0 and chosen["errors"] == 3


def test_each_run_is_listed_in_the_order_it_ran() -> None:
    line = open_runs_line([_run(22.7, lag=5.46), _run(7.26, lag=1.25)])
    assert line.index("22.70 ms") < line.index("7.26 ms")
    assert "lag 5.46 ms" in line and "lag 1.25 ms" in line


class _CountingModel:
    def __init__(self) -> None:
        self.scored: list[tuple[str, object]] = []

    def score(self, items, thresholds=None, explain=True):  # type: ignore[no-untyped-def]
        self.scored += [(item.text, thresholds) for item in items]
        return [f"{item.text}:{explain}" for item in items]


def test_the_memoised_model_scores_each_comment_once_and_answers_it_alike() -> None:
    from serving.model.moderation import CommentInput
    from training.bench.http import memoise_scores

    memoise_scores(_CountingModel)
    model = _CountingModel()
    first = model.score([CommentInput("a"), CommentInput("b", "title")], ["site-a", "site-b"])
    again = model.score([CommentInput("b", "title"), CommentInput("a"), CommentInput("a", "title")])
    assert first == ["a:True", "b:True"]
    assert again == ["b:True", "a:True", "a:True"]
    # Each distinct comment (text and article) reached the model once, with its own row's thresholds.
    assert model.scored == [("a", ["site-a"]), ("b", ["site-b"]), ("a", None)]
    assert model.score([CommentInput("a")], explain=False) == ["a:False"]
    assert len(model.scored) == 4
