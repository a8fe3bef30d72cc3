"""The delivery runner: claims due jobs, signs and delivers them, records what happened.

    await run_worker(stop)          # the long-running loop (`mailcloak worker`)
    process_due_jobs(limit=100)     # one pass, synchronously (tests, maintenance)

A claimed batch is grouped by destination domain. Each domain's messages go through a few
"lanes" that deliver one message after another, so consecutive messages reuse one SMTP
session; more lanes open only when enough messages wait (up to the per-domain limit). An
unexpected error while handling a delivery never loses its jobs: they are rescheduled, and
parked as bounces after repeated crashes (see mail.jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import signal
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import Error as DatabaseError
from django.db import connections, transaction

from mailcloak import settings as mailcloak_settings
from mailcloak.mail import eventloop
from mailcloak.mail.dbhealth import close_stale_connections
from mailcloak.mail.deliver import (
    Deliverer,
    DeliveryOptions,
    DeliveryResult,
    PermanentFailure,
    TemporaryFailure,
    to_crlf,
)
from mailcloak.mail.dkimkeys import DkimKeyError
from mailcloak.mail.jobs import (
    WORKER_LEASE,
    Delivery,
    claim_deliveries,
    record_crash,
    record_results,
    record_results_together,
    release_leases,
    renew_leases,
)
from mailcloak.mail.sign import SigningError, sign_message
from mailcloak.observability.logsetup import configure_logging, fields

log = logging.getLogger("mailcloak.worker")
T = TypeVar("T")

# Seconds between looks at the queue when there is nothing to do: mail queued by another
# process (smtpd) waits for the next look; a look that finds nothing costs one short query.
POLL_INTERVAL = 0.25
# After a claim that emptied the queue, new jobs are let gather this long before the next:
# a claim per job that arrives would cost a write transaction each (SQLite: a turn each).
CLAIM_GATHER = 0.02
DATABASE_RETRY = 5.0  # seconds to wait after the database failed us
MESSAGES_PER_LANE = 4  # a second session to a domain pays off once this many messages wait
SHUTDOWN_GRACE = 30.0  # seconds running deliveries get to finish when stopping
RENEW_EVERY = WORKER_LEASE.total_seconds() / 3  # leases of jobs in hand are renewed this often
RECORD_ATTEMPTS = 12  # an outcome the database did not take is tried again, DATABASE_RETRY apart


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class Outcome:
    delivery: Delivery
    sent: bytes = b""  # the signed message as handed to the receiving server
    results: list[DeliveryResult] | None = None
    error: BaseException | None = None  # an unexpected error: the shunt path
    record_attempts: int = 0  # attempts to record it that the database did not take


def prepare(delivery: Delivery) -> bytes:
    """CRLF line endings and the DKIM signatures, just before sending."""
    content = to_crlf(delivery.content)
    try:
        return sign_message(content, delivery.signing_domain)
    except SigningError as exc:
        log.warning("message goes out unsigned: %s", exc,
                    extra=fields(queue_id=delivery.queue_id))
        return content


def record_outcome(outcome: Outcome, worker_id: str) -> None:
    if outcome.results is not None:
        record_results(outcome.delivery, outcome.results, outcome.sent, worker_id)
    else:
        record_crash(outcome.delivery, outcome.error or RuntimeError("no result"), worker_id)


def record_outcomes(outcomes: list[Outcome], worker_id: str) -> list[Outcome]:
    """Record several outcomes in one transaction (one commit, one fsync). Returns the
    outcomes not recorded: those that failed, or all of them when the transaction is lost.

    All together first, with a handful of queries for the whole batch; if that fails (a
    deadlock with another worker, a row that will not write), one by one, each job in its
    own savepoint, so that one that fails does not undo the others."""
    try:
        with transaction.atomic():
            record_results_together([(outcome.delivery, outcome.results, outcome.sent)
                                     for outcome in outcomes if outcome.results is not None],
                                    worker_id)
            for outcome in outcomes:
                if outcome.results is None:
                    record_outcome(outcome, worker_id)
        return []
    except DatabaseError as exc:
        log.info("recording %d outcomes together failed (%s); one by one", len(outcomes),
                 type(exc).__name__)
    failed: list[Outcome] = []
    with transaction.atomic():
        for outcome in outcomes:
            try:
                record_outcome(outcome, worker_id)
            except DatabaseError:
                log.exception("recording the outcome of a delivery failed",
                              extra=fields(queue_id=outcome.delivery.queue_id))
                failed.append(outcome)
        if transaction.get_rollback():  # a savepoint could not be undone (connection lost)
            return list(outcomes)  # and leaving the block rolls everything back, silently
    return failed


class Runner:
    """Delivers claimed batches; `on_outcome` is awaited for each finished delivery."""

    def __init__(self, deliverer: Deliverer,
                 on_outcome: Callable[[Outcome], Awaitable[None]]) -> None:
        self.deliverer = deliverer
        self.on_outcome = on_outcome
        self.per_domain = deliverer.per_domain

    async def run_batch(self, deliveries: list[Delivery]) -> None:
        by_domain: dict[str, deque[Delivery]] = defaultdict(deque)
        for delivery in deliveries:
            by_domain[delivery.domain].append(delivery)
        lanes = []
        for waiting in by_domain.values():
            count = min(self.per_domain, math.ceil(len(waiting) / MESSAGES_PER_LANE))
            lanes += [self._lane(waiting) for _ in range(count)]
        await asyncio.gather(*lanes)

    async def _lane(self, waiting: deque[Delivery]) -> None:
        while waiting:
            delivery = waiting.popleft()
            await self.on_outcome(await self.attempt(delivery))

    async def attempt(self, delivery: Delivery) -> Outcome:
        if not delivery.content:
            return Outcome(delivery, results=[
                PermanentFailure(r, "5.3.0 the message content is gone")
                for r in delivery.recipients])
        try:
            sent = await asyncio.to_thread(prepare, delivery)
        except DkimKeyError as exc:
            log.error("cannot sign message: %s", exc, extra=fields(queue_id=delivery.queue_id))
            return Outcome(delivery, results=[TemporaryFailure(r, f"4.3.5 {exc}")
                                              for r in delivery.recipients])
        except Exception as exc:  # the shunt: keep the jobs, record the error
            log.exception("preparing a message failed", extra=fields(queue_id=delivery.queue_id))
            return Outcome(delivery, error=exc)
        try:
            results = await self.deliverer.deliver(delivery.mail_from, delivery.recipients,
                                                   sent)
        except Exception as exc:  # the shunt: keep the jobs, record the error
            log.exception("delivering a message failed",
                          extra=fields(queue_id=delivery.queue_id))
            return Outcome(delivery, sent, error=exc)
        return Outcome(delivery, sent, results)


# --- one synchronous pass ---------------------------------------------------------------------


def process_due_jobs(limit: int = 100, *, worker_id: str | None = None,
                     options: DeliveryOptions | None = None) -> int:
    """Claim up to `limit` due jobs, deliver them, record the results; returns the number of
    jobs handled. Database work happens in the calling thread."""
    worker_id = worker_id or new_worker_id()
    deliveries = claim_deliveries(worker_id, limit)
    if not deliveries:
        return 0
    outcomes: list[Outcome] = []

    async def collect(outcome: Outcome) -> None:
        outcomes.append(outcome)

    async def deliver_all() -> None:
        async with Deliverer(options) as deliverer:
            await Runner(deliverer, collect).run_batch(deliveries)

    asyncio.run(deliver_all())
    for outcome in outcomes:
        record_outcome(outcome, worker_id)
    return sum(len(delivery.job_ids) for delivery in deliveries)


# --- the long-running worker ------------------------------------------------------------------

_wakeups: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
_wakeups_lock = threading.Lock()


def wake() -> None:
    """Tell the workers of this process that new mail is queued (callable from any thread,
    e.g. `transaction.on_commit(wake)` after enqueueing)."""
    with _wakeups_lock:
        for loop, event in list(_wakeups):
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)


def _fresh_connection(function: Callable[..., T]) -> Callable[..., T]:
    """Long-running threads must drop database connections that went stale."""

    def call(*args: Any) -> T:
        close_stale_connections()
        return function(*args)

    return call


async def _db(function: Callable[..., T], *args: Any) -> T:
    """Run ORM code in Django's one sync thread, off the event loop."""
    return await sync_to_async(_fresh_connection(function), thread_sensitive=True)(*args)


class _WorkerLoop:
    def __init__(self, stop: asyncio.Event, worker_id: str, deliverer: Deliverer,
                 capacity: int) -> None:
        self.stop = stop
        self.worker_id = worker_id
        self.deliverer = deliverer
        self.capacity = capacity
        self.in_flight = 0  # jobs claimed and not yet recorded
        self.tasks: set[asyncio.Task[None]] = set()
        self.wakeup = asyncio.Event()
        self.runner = Runner(deliverer, self._record)
        self.outcomes: list[Outcome] = []  # finished deliveries waiting to be recorded
        self.recorder: asyncio.Task[None] | None = None
        self.renewed_at = time.monotonic()

    async def _record(self, outcome: Outcome) -> None:
        """Queue an outcome for the recorder; outcomes that finish together share one commit."""
        self.outcomes.append(outcome)
        if self.recorder is None or self.recorder.done():
            self.recorder = asyncio.create_task(self._record_pending(), name="recorder")

    async def _record_pending(self) -> None:
        while self.outcomes:
            batch, self.outcomes = self.outcomes, []
            try:
                unrecorded = await _db(record_outcomes, batch, self.worker_id)
            except DatabaseError:
                log.exception("recording the outcomes of %d deliveries failed", len(batch))
                unrecorded = batch
            except Exception:
                # The jobs keep their lease; when it runs out another attempt picks them up.
                log.exception("recording the outcomes of %d deliveries failed", len(batch))
                unrecorded = []
            retry = self._to_record_again(unrecorded)
            kept = {id(outcome) for outcome in retry}
            self.in_flight -= sum(len(outcome.delivery.job_ids) for outcome in batch
                                  if id(outcome) not in kept)
            self.wakeup.set()
            if retry:
                self.outcomes = retry + self.outcomes
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), DATABASE_RETRY)

    def _to_record_again(self, unrecorded: list[Outcome]) -> list[Outcome]:
        """The mail went out: record it once the database is back (its leases are renewed
        meanwhile) rather than send it again when they run out; within limits, and not while
        stopping (the leases then run out, and the jobs are retried)."""
        for outcome in unrecorded:
            outcome.record_attempts += 1
        if self.stop.is_set():
            return []
        return [outcome for outcome in unrecorded if outcome.record_attempts < RECORD_ATTEMPTS]

    async def run(self) -> None:
        while not self.stop.is_set():
            pause = await self._claim_and_start()
            await self._renew_leases()
            await self.deliverer.close_idle()
            if pause:
                await self._sleep(pause)
        await self._shutdown()

    async def _renew_leases(self) -> None:
        """Keep the jobs in hand ours; a worker killed stops renewing, and they come back."""
        if time.monotonic() - self.renewed_at < RENEW_EVERY:
            return
        self.renewed_at = time.monotonic()
        if self.in_flight:
            try:
                await _db(renew_leases, self.worker_id, WORKER_LEASE)
            except DatabaseError:
                log.exception("renewing leases failed")

    async def _claim_and_start(self) -> float:
        """Start delivering whatever is due; returns how long to pause (0: look again now)."""
        free = self.capacity - self.in_flight
        if free <= 0:
            return POLL_INTERVAL
        try:
            deliveries = await _db(claim_deliveries, self.worker_id, free, WORKER_LEASE)
        except DatabaseError:
            log.exception("claiming jobs failed")
            return DATABASE_RETRY
        if not deliveries:
            return POLL_INTERVAL
        claimed = sum(len(delivery.job_ids) for delivery in deliveries)
        self.in_flight += claimed
        task = asyncio.create_task(self.runner.run_batch(deliveries), name="deliveries")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        if claimed < free:  # the queue is empty for now: let the next jobs gather
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), CLAIM_GATHER)
        return 0.0

    async def _sleep(self, seconds: float) -> None:
        self.wakeup.clear()
        waiters = [asyncio.create_task(self.stop.wait()), asyncio.create_task(self.wakeup.wait())]
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def _shutdown(self) -> None:
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.recorder is not None:
            await self.recorder  # what was delivered gets recorded before the leases go
        try:
            await _db(release_leases, self.worker_id)
        except DatabaseError:
            log.exception("releasing leases failed; they expire by themselves")
        await _db(connections.close_all)


async def run_worker(stop: asyncio.Event, *, worker_id: str | None = None,
                     options: DeliveryOptions | None = None) -> None:
    """Deliver queued mail until `stop` is set."""
    worker_id = worker_id or new_worker_id()
    workers = max(1, mailcloak_settings.get().delivery_workers)
    log.info("delivery worker %s started (%s event loop)", worker_id,
             eventloop.running_loop_name())
    async with Deliverer(options) as deliverer:
        loop = _WorkerLoop(stop, worker_id, deliverer, capacity=workers * 2)
        registration = (asyncio.get_running_loop(), loop.wakeup)
        with _wakeups_lock:
            _wakeups.add(registration)
        try:
            await loop.run()
        finally:
            with _wakeups_lock:
                _wakeups.discard(registration)
    log.info("delivery worker %s stopped", worker_id)


def serve() -> int:
    """`mailcloak worker`: run until SIGINT or SIGTERM."""
    configure_logging(mailcloak_settings.get())

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        from mailcloak.maintenance import run_maintenance

        await asyncio.gather(run_worker(stop), run_maintenance(stop))

    eventloop.serve(main())
    return 0
