"""Audit rows of concurrent requests committed together: one transaction, one fsync."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager

from serving.store.errors import StoreError
from serving.store.records import AuditEntry
from serving.store.writer import StoreWriter


class GroupCommit:
    """Commits the audit rows of concurrent requests together: one transaction, one fsync.

    Every scored comment is audited before its answer goes out, and with synchronous=FULL each
    commit waits for the disk (~3-4 ms measured here, against ~0.3 ms without the fsync).
    Requests that arrive while a commit is under way share the next one, so throughput under
    concurrency is not bounded by one fsync per comment.
    """

    MAX_BATCH = 1000

    def __init__(self, write: Callable[[], AbstractContextManager[StoreWriter]]):
        # The store's own write transaction, passed in so this module needs no Store.
        self._write = write
        self._queue: queue.SimpleQueue[tuple[list[AuditEntry], Future[list[int]]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, entries: list[AuditEntry]) -> Future[list[int]]:
        """Queue rows; the future gets their ids, or the StoreError that kept them out."""
        future: Future[list[int]] = Future()
        with self._lock:
            if self._closed:
                future.set_exception(StoreError("the store is closed"))
                return future
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="raqib-audit-writer", daemon=True)
                self._thread.start()
            self._queue.put((entries, future))
        return future

    def close(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout=30)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[tuple[list[AuditEntry], Future[list[int]]]]) -> None:
        try:
            with self._write() as writer:
                ids = [writer.add_audit(entries) for entries, _ in batch]
        except Exception as exc:  # every waiting request hears why, none is left hanging
            failure = (
                exc if isinstance(exc, StoreError) else StoreError(f"cannot write: {type(exc).__name__}")
            )
            for _, future in batch:
                future.set_exception(failure)
            return
        for (_, future), row_ids in zip(batch, ids, strict=True):
            future.set_result(row_ids)
