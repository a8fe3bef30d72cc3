"""Group commit: messages that arrive together share one transaction and one fsync.

The SMTP server hands each accepted message to one writer thread. While that thread commits a
batch, new messages queue up; the next batch takes all of them (up to a limit). A message that
fails is rolled back alone: the batch runs without savepoints first, and only when something
failed again with one savepoint per message. Each caller gets its result only after the shared
commit, so a 250 still means "durably stored". If the commit itself fails, every message of
the batch gets the error (and the client a 4xx), none is half-stored. A message that met a
deadlock with another writer is tried again in a batch of its own.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import DatabaseError, connections, transaction

from mailcloak.mail.dbhealth import close_stale_connections

log = logging.getLogger("mailcloak.smtpd")
T = TypeVar("T")

MAX_BATCH = 64
TRANSIENT_ATTEMPTS = 3
TRANSIENT_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure


@dataclass
class _Work(Generic[T]):
    func: Callable[..., T]
    args: tuple[Any, ...]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]


class GroupCommitter:
    def __init__(self, max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        self.batches = 0  # for tests and the curious: how many commits so far
        self._queue: queue.SimpleQueue[_Work[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="smtpd-commit", daemon=True)
        self._thread.start()

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run `func(*args)` in the writer thread inside the next batch's transaction; returns
        (or raises) once that transaction has committed (or failed)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Work(func, args, loop, future))
        return await future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._commit(batch)
        finally:
            connections.close_all()

    def _next_batch(self) -> list[_Work[Any]] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                break
            if work is None:
                self._queue.put(None)  # stop after this batch
                break
            batch.append(work)
        return batch

    def _commit_together(self, batch: list[_Work[Any]]) -> list[tuple[bool, Any]] | None:
        """The usual case, without a savepoint per message (two round trips each saved).
        None when anything failed in a batch of several: then nothing of it is stored, and it
        is done again message by message."""
        try:
            with transaction.atomic():
                return [(True, work.func(*work.args)) for work in batch]
        except Exception as exc:
            return [(False, exc)] if len(batch) == 1 else None

    def _commit_each(self, batch: list[_Work[Any]]) -> list[tuple[bool, Any]]:
        """Each message in a savepoint of its own, so one that fails is the only one lost."""
        results: list[tuple[bool, Any]] = []
        try:
            with transaction.atomic():
                for work in batch:
                    results.append(self._run_one(work))
                if transaction.get_rollback():
                    # A savepoint could not be undone (the connection broke): leaving the block
                    # would roll the whole batch back without a word. None of it is stored.
                    raise DatabaseError("the transaction was lost")
        except Exception as exc:  # the commit failed: nothing of the batch is stored
            results = [(False, exc)] * len(batch)
        return results

    def _run_one(self, work: _Work[Any]) -> tuple[bool, Any]:
        """One message in its own savepoint: a failure undoes this one only."""
        try:
            with transaction.atomic():
                return True, work.func(*work.args)
        except Exception as exc:
            return False, exc

    def _commit(self, batch: list[_Work[Any]], attempt: int = 1) -> None:
        close_stale_connections()  # a connection that broke or outlived CONN_MAX_AGE
        results = self._commit_together(batch)
        if results is None:
            results = self._commit_each(batch)
        self.batches += 1
        # A deadlock is tried again only after this commit: trying at once, inside the batch,
        # would still hold the locks of the messages before it, and deadlock again.
        again = [work for work, (ok, value) in zip(batch, results, strict=True)
                 if not ok and attempt < TRANSIENT_ATTEMPTS and _is_transient(value)]
        retried = {id(work) for work in again}
        for work, (ok, value) in zip(batch, results, strict=True):
            if id(work) not in retried:
                work.loop.call_soon_threadsafe(_settle, work.future, ok, value)
        if again:
            log.info("%d message(s) met a deadlock; trying again", len(again))
            self._commit(again, attempt + 1)


def _is_transient(exc: Exception) -> bool:
    """A deadlock or serialization failure: another writer got in the way; trying again is
    safe and usually succeeds (PostgreSQL, with several SMTP processes or nodes)."""
    return getattr(exc.__cause__, "sqlstate", None) in TRANSIENT_SQLSTATES


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
