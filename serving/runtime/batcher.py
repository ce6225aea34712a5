"""Requests that wait for the model at the same time, scored together in one call ("micro-batching").

A comment costs much less per comment in a batch than alone: the vectorised feature code pays its
fixed costs once per call (measured on the champion, one thread, with explanations: 1.45 ms for one
comment, 0.77 ms each in a call of 8, 0.59 ms each in a call of 16). So `/v1/score` hands its comment
to a `Batcher` instead of calling the model itself.

How it batches, on the event loop and without a timer:
- the first comment that finds the batcher idle schedules a flush for the loop's next turn
  (`call_soon`), so a lone request waits for nothing but that turn;
- every comment submitted before the flush runs (requests whose handlers ran in the same turn, or
  that arrived while the model was busy) joins it, up to `max_batch`;
- a flush whose comments are cheap (estimated cost within `inline_budget`) is scored right there on
  the loop, which spares a thread hand-off; a costlier one goes to one scoring thread, so the loop
  keeps answering (/healthz, the other requests' I/O) while it runs, and what arrives meanwhile
  becomes the next batch.

Measured on this repository's champion behind uvicorn, 2 cores, wrk closed loop at 16 connections,
the designs served in turn (medians of 5 runs): each request alone 210 requests/s (201–243), ~5 ms of
server CPU per request; every batch on the scoring thread ("batch while busy") 379 (348–489), 2.7 ms;
this design 475 (454–547), 2.1 ms; every batch inline 505 (430–544). The thread costs more because
the model shares the GIL with the loop: 1.3 ms of CPU per comment there (2.1 ms wall, waiting for the
GIL) against 0.9–1.0 ms inline, at the same ~8 comments per call. The thread kept /healthz quicker
under that load (p50 4 ms against 11 ms; p99 20 against ~120 ms, as alone). One connection: alone
and batched alike (6 interleaved runs: 208 and 212 requests/s, p50 4.6 and 4.5 ms). Kept: this one,
for the throughput, with the costly batches on the thread so the loop's stalls stay bounded.

The batcher is generic: keys (which loaded model: a batch never mixes two), items (requests) and a
function that scores a list of items under one key. If a batched call fails, each of its items is
scored alone, so one bad comment cannot fail the comments it happened to wait with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Key = TypeVar("Key")
Item = TypeVar("Item")
Result = TypeVar("Result")

logger = logging.getLogger("raqib.batcher")


@dataclass(slots=True)
class _Waiting(Generic[Key, Item, Result]):
    """One submitted item and the future its request awaits."""

    key: Key
    item: Item
    future: asyncio.Future[Result]


def _groups(batch: Sequence[_Waiting[Key, Item, Result]]) -> list[list[_Waiting[Key, Item, Result]]]:
    """The batch split by key (the same object, not an equal one), in order of first appearance."""
    groups: list[list[_Waiting[Key, Item, Result]]] = []
    for waiting in batch:
        for group in groups:
            if group[0].key is waiting.key:
                group.append(waiting)
                break
        else:
            groups.append([waiting])
    return groups


def _outcomes(
    score: Callable[[Key, Sequence[Item]], Sequence[Result]], group: Sequence[_Waiting[Key, Item, Result]]
) -> list[Result | BaseException]:
    """Each item's result from one call for the group; when that call fails, each item's own call."""
    key = group[0].key
    try:
        results = list(score(key, [waiting.item for waiting in group]))
        if len(results) != len(group):
            raise RuntimeError(f"scored {len(results)} results for {len(group)} items")
        return list(results)
    except Exception as exc:
        if len(group) == 1:
            return [exc]
    logger.warning("a batch of %d comments failed; scoring them one by one", len(group))
    outcomes: list[Result | BaseException] = []
    for waiting in group:
        try:
            outcomes.append(score(key, [waiting.item])[0])
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # its request was cancelled (the client went away) while it waited
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class Batcher(Generic[Key, Item, Result]):
    """Coalesces `submit`ted items into calls of `score(key, items)` of at most `max_batch` items.

    Used from one event loop (the server's). `on_batch(n)` is told the size of every call made.
    """

    def __init__(
        self,
        score: Callable[[Key, Sequence[Item]], Sequence[Result]],
        max_batch: int,
        cost: Callable[[Item], int],
        inline_budget: int,
        on_batch: Callable[[int], None] | None = None,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._score = score
        self.max_batch = max_batch
        self._cost = cost
        self._inline_budget = inline_budget
        self._on_batch = on_batch
        self._pending: list[_Waiting[Key, Item, Result]] = []
        self._scheduled = False
        self._busy = False  # a batch is being scored on the scoring thread
        self._idle: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def submit(self, key: Key, item: Item) -> Result:
        """The item's result, scored together with whatever waits with it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append(_Waiting(key, item, future))
        self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._pending and not self._scheduled and not self._busy:
            self._scheduled = True
            loop.call_soon(self._flush, loop)

    def _take(self) -> list[_Waiting[Key, Item, Result]]:
        live = [w for w in self._pending if not w.future.done()]
        batch, self._pending = live[: self.max_batch], live[self.max_batch :]
        return batch

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        batch = self._take()
        if not batch:
            self._set_idle()
            return
        groups = _groups(batch)
        if sum(self._cost(w.item) for w in batch) <= self._inline_budget:
            for group, outcomes in zip(groups, self._score_groups(groups), strict=True):
                self._settle_group(group, outcomes)
            self._schedule(loop)
            if not self._pending:
                self._set_idle()
            return
        self._busy = True
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="raqib-scorer")
        done = loop.run_in_executor(self._executor, self._score_groups, groups)
        done.add_done_callback(lambda finished: self._finished(loop, groups, finished))

    def _score_groups(self, groups: list[list[_Waiting[Key, Item, Result]]]) -> list[list[Any]]:
        out = []
        for group in groups:
            if self._on_batch is not None:
                self._on_batch(len(group))
            out.append(_outcomes(self._score, group))
        return out

    @staticmethod
    def _settle_group(group: Sequence[_Waiting[Key, Item, Result]], outcomes: Sequence[Any]) -> None:
        for waiting, outcome in zip(group, outcomes, strict=True):
            _settle(waiting.future, outcome)

    def _finished(
        self, loop: asyncio.AbstractEventLoop, groups: list[list[_Waiting[Key, Item, Result]]], done: Any
    ) -> None:
        self._busy = False
        try:
            results = done.result()
        except BaseException as exc:  # the scoring thread itself failed: every waiting item hears it
            results = [[exc] * len(group) for group in groups]
        for group, outcomes in zip(groups, results, strict=True):
            self._settle_group(group, outcomes)
        self._schedule(loop)
        if not self._pending:
            self._set_idle()

    def _set_idle(self) -> None:
        if self._idle is not None:
            self._idle.set()

    async def close(self) -> None:
        """Score what was already submitted, then stop the scoring thread."""
        while self._pending or self._busy or self._scheduled:
            self._idle = asyncio.Event()
            await self._idle.wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
