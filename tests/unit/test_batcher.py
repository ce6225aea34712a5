"""The batcher: comments that wait together are scored in one call, each still gets its own answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from serving.runtime.batcher import Batcher


class Model:
    """A stand-in scorer that records every call: (key, items, thread name)."""

    def __init__(self, fail_on: str | None = None, delay: float = 0.0):
        self.calls: list[tuple[Any, list[str], str]] = []
        self.fail_on = fail_on
        self.delay = delay

    def score(self, key: Any, items: Sequence[str]) -> list[str]:
        self.calls.append((key, list(items), threading.current_thread().name))
        if self.delay:
            threading.Event().wait(self.delay)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot score {self.fail_on}")
        return [f"{key}:{item}" for item in items]


def batcher(
    model: Model, max_batch: int = 16, budget: int = 1_000, sizes: list[int] | None = None
) -> Batcher:
    return Batcher(
        model.score,
        max_batch,
        cost=len,
        inline_budget=budget,
        on_batch=sizes.append if sizes is not None else None,
    )


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_comments_submitted_together_make_one_call_and_each_gets_its_own_answer() -> None:
    model, sizes = Model(), []
    scorer = batcher(model, sizes=sizes)

    async def main() -> list[str]:
        return await asyncio.gather(*(scorer.submit("m", f"c{n}") for n in range(5)))

    assert run(main()) == [f"m:c{n}" for n in range(5)]
    assert [items for _, items, _ in model.calls] == [[f"c{n}" for n in range(5)]]
    assert sizes == [5]


def test_a_lone_comment_is_scored_at_once_on_the_loop() -> None:
    model = Model()
    scorer = batcher(model)

    async def main() -> str:
        return await scorer.submit("m", "alone")

    assert run(main()) == "m:alone"
    assert model.calls == [("m", ["alone"], threading.main_thread().name)]


def test_no_call_exceeds_max_batch() -> None:
    model = Model()
    scorer = batcher(model, max_batch=4)

    async def main() -> list[str]:
        return await asyncio.gather(*(scorer.submit("m", f"c{n}") for n in range(10)))

    assert run(main()) == [f"m:c{n}" for n in range(10)]
    assert [len(items) for _, items, _ in model.calls] == [4, 4, 2]


def test_comments_for_two_models_are_never_scored_in_one_call() -> None:
    model = Model()
    scorer = batcher(model)
    old, new = object(), object()  # a hot swap between two requests: two loaded models

    async def main() -> list[str]:
        return await asyncio.gather(
            scorer.submit(old, "a"), scorer.submit(new, "b"), scorer.submit(old, "c"), scorer.submit(new, "d")
        )

    answers = run(main())
    assert answers == [f"{old}:a", f"{new}:b", f"{old}:c", f"{new}:d"]
    assert [(key, items) for key, items, _ in model.calls] == [(old, ["a", "c"]), (new, ["b", "d"])]


def test_one_bad_comment_fails_alone_and_the_others_are_answered() -> None:
    model = Model(fail_on="bad")
    scorer = batcher(model)

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(scorer.submit("m", text) for text in ("a", "bad", "b")), return_exceptions=True
        )

    a, bad, b = run(main())
    assert (a, b) == ("m:a", "m:b")
    assert isinstance(bad, ValueError) and "bad" in str(bad)
    # the batch, then each comment alone
    assert [items for _, items, _ in model.calls] == [["a", "bad", "b"], ["a"], ["bad"], ["b"]]


def test_a_lone_failing_comment_gets_its_error() -> None:
    scorer = batcher(Model(fail_on="bad"))

    async def main() -> str:
        return await scorer.submit("m", "bad")

    with pytest.raises(ValueError, match="cannot score bad"):
        run(main())


def test_a_request_cancelled_while_waiting_is_not_scored_and_the_others_are() -> None:
    model = Model()
    scorer = batcher(model)

    async def main() -> list[Any]:
        gone = asyncio.ensure_future(scorer.submit("m", "gone"))
        kept = asyncio.ensure_future(scorer.submit("m", "kept"))
        await asyncio.sleep(0)  # both submitted, the flush not run yet
        gone.cancel()
        return await asyncio.gather(gone, kept, return_exceptions=True)

    gone, kept = run(main())
    assert isinstance(gone, asyncio.CancelledError) and kept == "m:kept"
    assert [items for _, items, _ in model.calls] == [["kept"]]


def test_a_costly_batch_is_scored_off_the_loop_which_keeps_answering() -> None:
    model = Model(delay=0.2)
    scorer = batcher(model, budget=10)

    async def main() -> tuple[str, int]:
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beating = asyncio.ensure_future(heartbeat())
        answer = await scorer.submit("m", "a long comment over the budget")
        beating.cancel()
        return answer, ticks

    answer, ticks = run(main())
    assert answer == "m:a long comment over the budget"
    ((_, _, thread),) = model.calls
    assert thread.startswith("raqib-scorer")
    assert ticks >= 5  # the loop ran other work during the 0.2 s the model took


def test_comments_arriving_while_the_model_is_busy_become_the_next_batch() -> None:
    model = Model(delay=0.1)
    scorer = batcher(model, budget=0)  # every batch on the scoring thread

    async def main() -> list[str]:
        first = asyncio.ensure_future(scorer.submit("m", "first"))
        await asyncio.sleep(0.03)  # the first call is running on the scoring thread now
        later = [asyncio.ensure_future(scorer.submit("m", f"later{n}")) for n in range(3)]
        return await asyncio.gather(first, *later)

    assert run(main()) == ["m:first", "m:later0", "m:later1", "m:later2"]
    assert [items for _, items, _ in model.calls] == [["first"], ["later0", "later1", "later2"]]


def test_close_answers_what_was_submitted_before_it() -> None:
    model = Model(delay=0.05)
    scorer = batcher(model, budget=0)

    async def main() -> list[str]:
        waiting = [asyncio.ensure_future(scorer.submit("m", f"c{n}")) for n in range(3)]
        await asyncio.sleep(0)
        await scorer.close()
        assert all(task.done() for task in waiting)
        return [task.result() for task in waiting]

    assert run(main()) == ["m:c0", "m:c1", "m:c2"]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        batcher(Model(), max_batch=0)
