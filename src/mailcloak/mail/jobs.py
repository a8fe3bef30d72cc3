"""The delivery job store: claiming due jobs with a lease, and recording what became of them.

Claims are atomic: PostgreSQL workers skip each other's locked rows (SELECT ... FOR UPDATE
SKIP LOCKED); SQLite has a single writer and claims with one UPDATE ... WHERE id IN (...).
A claimed job carries a lease; a job whose worker died is claimed again once the lease
expires, with its crash count raised so a message that kills every worker is parked in the
end. The long-running worker records a batch of outcomes together (record_results_together),
falling back to one job per savepoint (record_results) when that fails; once every job of a
message is finished, the message content is deleted (forwarded mail is not kept). The
statements every claim and batch run are written out in SQL in mail.queue_sql.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.mail import queue_sql, reputation
from mailcloak.mail.deliver import (
    Delivered,
    DeliveryResult,
    KeptInLocalOutbox,
    PermanentFailure,
    TemporaryFailure,
    store_in_local_outbox,
)
from mailcloak.mail.models import Bounce, DeliveryJob, QueuedMessage
from mailcloak.mail.queue import recipient_domain
from mailcloak.observability.instruments import DELIVERY_ATTEMPTS
from mailcloak.observability.logsetup import fields
from mailcloak.observability.redaction import scrub_addresses

log = logging.getLogger("mailcloak.worker")

# A running worker renews its leases, so a short one brings a killed worker's jobs back soon.
WORKER_LEASE = timedelta(seconds=30)
# A one-off pass (process_due_jobs) renews nothing: longer than any attempt with its timeouts.
BATCH_LEASE = timedelta(minutes=15)
MAX_CRASHES = 5
BACKOFF_FIRST = 60.0  # seconds; doubles with each attempt...
BACKOFF_CAP = 3600.0  # ...up to an hour
LOCAL_OUTBOX = "local outbox"


def backoff(attempts: int) -> timedelta:
    """Wait before attempt `attempts` + 1: 1m, 2m, 4m ... capped at 1h, with ±20% jitter
    so that jobs failing together do not retry together."""
    delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** max(0, attempts - 1))
    return timedelta(seconds=delay * random.uniform(0.8, 1.2))


@dataclass
class Delivery:
    """One message to the recipients it has at one domain: one SMTP transaction."""

    message_id: int
    mail_from: str
    domain: str
    signing_domain: str
    content: bytes
    job_ids: dict[str, int] = field(default_factory=dict)  # recipient -> job id
    queue_id: str = ""  # the message's name in logs

    @property
    def recipients(self) -> list[str]:
        return list(self.job_ids)


# --- claiming -------------------------------------------------------------------------------


def claim_jobs(worker_id: str, limit: int, lease: timedelta = BATCH_LEASE
               ) -> list[DeliveryJob]:
    """Lease up to `limit` due jobs to `worker_id`, oldest due first, and return them with
    the fields delivery reads (the others load on first use). PostgreSQL workers skip the
    rows other workers hold; a job whose lease ran out has its crash count raised."""
    now = timezone.now()
    with transaction.atomic():
        return queue_sql.claim(worker_id, limit, now=now, lease_until=now + lease)


def _signing_domain(mail_from: str, kind: str, ours: set[str], primary: str) -> str:
    """DKIM d=: the envelope sender's domain when it is one of ours, else the primary."""
    domain = recipient_domain(mail_from) if "@" in mail_from else ""
    if kind == QueuedMessage.Kind.SYSTEM or domain not in ours:
        return primary
    return domain


def plan_deliveries(jobs: list[DeliveryJob], worker_id: str) -> list[Delivery]:
    """Group claimed jobs into deliveries; park jobs that crashed too often."""
    config = mailcloak_settings.get()
    crashed = [job for job in jobs if job.crashes >= MAX_CRASHES]
    for job in crashed:
        record_crash_limit(job, worker_id)
    jobs = [job for job in jobs if job.crashes < MAX_CRASHES]
    messages = queue_sql.messages_to_send(sorted({job.message_id for job in jobs}))
    ours = set(config.domains) | queue_sql.active_domains()
    deliveries: dict[tuple[int, str], Delivery] = {}
    for job in jobs:
        message_id, queue_id, kind, mail_from, content = messages[job.message_id]
        key = (message_id, job.domain)
        if key not in deliveries:
            deliveries[key] = Delivery(
                message_id, mail_from, job.domain,
                _signing_domain(mail_from, kind, ours, config.primary_domain),
                bytes(content) if content is not None else b"", queue_id=queue_id)
        deliveries[key].job_ids[job.recipient] = job.id
    return list(deliveries.values())


def claim_deliveries(worker_id: str, limit: int, lease: timedelta = BATCH_LEASE
                     ) -> list[Delivery]:
    return plan_deliveries(claim_jobs(worker_id, limit, lease), worker_id)


def renew_leases(worker_id: str, lease: timedelta) -> int:
    """Extend the leases of the jobs `worker_id` is still working on."""
    return DeliveryJob.objects.filter(leased_by=worker_id, state=DeliveryJob.State.QUEUED
                                      ).update(lease_expires_at=timezone.now() + lease)


# --- recording outcomes ---------------------------------------------------------------------


def _leased_job(job_id: int, worker_id: str) -> DeliveryJob | None:
    """The job, locked, if it is still ours: a worker whose lease ran out must not write."""
    job = (DeliveryJob.objects.select_for_update()
           .filter(id=job_id, leased_by=worker_id, state=DeliveryJob.State.QUEUED).first())
    if job is None:
        log.warning("job %s is no longer leased to %s; its result is dropped", job_id, worker_id,
                    extra=fields(job=job_id))
    return job


def _lock_message(message_id: int) -> QueuedMessage:
    """Lock the message row so two workers finishing its last jobs see each other."""
    return (QueuedMessage.objects.select_for_update()
            .only("id", "queue_id", "kind", "mail_from", "alias_id").get(id=message_id))


def _finish(job: DeliveryJob, state: str, now: datetime) -> None:
    job.state = state
    job.finished_at = now
    job.lease_expires_at = None
    job.leased_by = ""
    job.save()


def _bounce(job: DeliveryJob, message: QueuedMessage, reason: str, now: datetime) -> None:
    job.last_error = reason
    _finish(job, DeliveryJob.State.BOUNCED, now)
    Bounce.objects.create(alias_id=message.alias_id, recipient=job.recipient,
                          source=Bounce.Source.DELIVERY, reason=reason, created_at=now,
                          kind=message.kind)
    log.info("delivery bounced", extra=fields(
        queue_id=message.queue_id, job=job.id, decision="bounce", domain=job.domain,
        attempts=job.attempts, reason=scrub_addresses(reason)))
    if message.kind == QueuedMessage.Kind.REPLY:
        reputation.review(message.alias_id)


def _retry_or_expire(job: DeliveryJob, message: QueuedMessage, reason: str,
                     now: datetime) -> None:
    if now >= job.expires_at:
        _bounce(job, message, f"gave up after {job.attempts} attempts: {reason}", now)
        return
    job.last_error = reason
    job.next_attempt_at = min(now + backoff(job.attempts), job.expires_at)
    job.lease_expires_at = None
    job.leased_by = ""
    job.save()
    log.info("delivery deferred", extra=fields(
        queue_id=message.queue_id, job=job.id, decision="defer", domain=job.domain,
        attempts=job.attempts, reason=scrub_addresses(reason),
        next_attempt=job.next_attempt_at.isoformat(timespec="seconds")))


def _drop_content_when_done(message_id: int) -> None:
    if not DeliveryJob.objects.filter(message_id=message_id,
                                      state=DeliveryJob.State.QUEUED).exists():
        QueuedMessage.objects.filter(id=message_id).update(content=None)


def _apply(job: DeliveryJob, message: QueuedMessage, result: DeliveryResult, sent: bytes,
           now: datetime) -> None:
    job.attempts += 1
    DELIVERY_ATTEMPTS.labels(_RESULT_NAMES.get(type(result), "other")).inc()
    if isinstance(result, Delivered):
        job.delivered_to, job.tls, job.last_error = result.remote[:300], result.tls, ""
        _finish(job, DeliveryJob.State.DELIVERED, now)
        log.info("delivered", extra=fields(
            queue_id=message.queue_id, job=job.id, decision="deliver", domain=job.domain,
            remote=result.remote, tls=result.tls, reply=result.reply[:3]))
    elif isinstance(result, KeptInLocalOutbox):
        store_in_local_outbox(message.mail_from, job.recipient, sent)
        job.delivered_to, job.last_error = LOCAL_OUTBOX, result.reason
        _finish(job, DeliveryJob.State.DELIVERED, now)
    elif isinstance(result, PermanentFailure):
        _bounce(job, message, result.reason, now)
    elif isinstance(result, TemporaryFailure):
        _retry_or_expire(job, message, result.reason, now)


_RESULT_NAMES = {Delivered: "delivered", KeptInLocalOutbox: "local_outbox",
                 PermanentFailure: "permanent_failure", TemporaryFailure: "temporary_failure"}


def record_results(delivery: Delivery, results: list[DeliveryResult], sent: bytes,
                   worker_id: str) -> None:
    """Write each recipient's outcome, one transaction per job. `sent` is the signed message
    (kept in the local outbox when that is where it went)."""
    for result in results:
        job_id = delivery.job_ids.get(result.recipient)
        if job_id is None:
            continue
        now = timezone.now()
        with transaction.atomic():
            message = _lock_message(delivery.message_id)
            job = _leased_job(job_id, worker_id)
            if job is not None:
                _apply(job, message, result, sent, now)
                _drop_content_when_done(delivery.message_id)


def record_results_together(deliveries: list[tuple[Delivery, list[DeliveryResult], bytes]],
                            worker_id: str) -> None:
    """`record_results` for several deliveries at once, in the caller's transaction: the rows
    are locked with one query per table (messages first, then jobs, each in id order, as the
    one-at-a-time path locks them), the delivered jobs are written with one UPDATE, and the
    content of every message that has nothing left to deliver is dropped with one more."""
    wanted = [(delivery, result) for delivery, results, _ in deliveries for result in results
              if result.recipient in delivery.job_ids]
    message_ids = sorted({delivery.message_id for delivery, _ in wanted})
    job_ids = sorted(delivery.job_ids[result.recipient] for delivery, result in wanted)
    messages, leased = queue_sql.lock_for_results(message_ids, job_ids, worker_id)
    sent_by_message = {delivery.message_id: sent for delivery, _, sent in deliveries}
    delivered: dict[tuple[str, bool], list[int]] = defaultdict(list)  # by where it went
    now = timezone.now()
    for delivery, result in wanted:
        job_id = delivery.job_ids[result.recipient]
        if job_id not in leased:
            _leased_job(job_id, worker_id)  # says why in the log
            continue
        message = messages[delivery.message_id]
        if isinstance(result, Delivered):
            DELIVERY_ATTEMPTS.labels("delivered").inc()
            delivered[result.remote[:300], result.tls].append(job_id)
            log.info("delivered", extra=fields(
                queue_id=message.queue_id, job=job_id, decision="deliver",
                domain=leased[job_id], remote=result.remote, tls=result.tls,
                reply=result.reply[:3]))
        else:  # the rarer outcomes take the one-at-a-time path, on the whole row
            _apply(DeliveryJob.objects.get(id=job_id), message, result,
                   sent_by_message[delivery.message_id], now)
    queue_sql.mark_delivered(delivered, now)
    queue_sql.drop_finished_content(message_ids)


def record_crash(delivery: Delivery, error: BaseException, worker_id: str) -> None:
    """An unexpected error while handling the delivery: keep its jobs, retry them later."""
    reason = f"internal error: {type(error).__name__}: {error}"[:1000]
    for job_id in delivery.job_ids.values():
        now = timezone.now()
        with transaction.atomic():
            message = _lock_message(delivery.message_id)
            job = _leased_job(job_id, worker_id)
            if job is None:
                continue
            job.crashes += 1
            if job.crashes >= MAX_CRASHES:
                _bounce(job, message, f"4.3.0 {reason} (gave up after {job.crashes} tries)",
                        now)
                _drop_content_when_done(delivery.message_id)
            else:
                job.last_error = reason
                job.next_attempt_at = now + backoff(job.crashes)
                job.lease_expires_at, job.leased_by = None, ""
                job.save()


def record_crash_limit(job: DeliveryJob, worker_id: str) -> None:
    """A job whose workers kept dying with it: park it as a bounce."""
    now = timezone.now()
    with transaction.atomic():
        message = _lock_message(job.message_id)
        locked = _leased_job(job.id, worker_id)
        if locked is not None:
            _bounce(locked, message, f"4.3.0 delivery crashed {locked.crashes} times; "
                                     "the message was set aside", now)
            _drop_content_when_done(job.message_id)


def release_leases(worker_id: str) -> int:
    """Hand back jobs this worker claimed but did not finish (on shutdown)."""
    return DeliveryJob.objects.filter(leased_by=worker_id, state=DeliveryJob.State.QUEUED
                                      ).update(lease_expires_at=None, leased_by="")



# --- an operator's decisions (the admin's queue page) -----------------------------------------


def _waiting(job_ids: list[int], now: datetime) -> Q:
    """Jobs still waiting and in no worker's hands (a leased job may be being delivered)."""
    lease_free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now)
    return Q(id__in=job_ids, state=DeliveryJob.State.QUEUED) & lease_free


def retry_now(job_ids: list[int]) -> int:
    """Make waiting jobs due at once; returns how many (a worker takes them within a poll)."""
    now = timezone.now()
    return DeliveryJob.objects.filter(_waiting(job_ids, now)).update(next_attempt_at=now)


def give_up(job_ids: list[int]) -> int:
    """Bounce waiting jobs now, the way expiry does: a bounce recorded against the alias for its
    owner to see, the content dropped once nothing waits for it. Returns how many."""
    done = 0
    for job_id in job_ids:
        now = timezone.now()
        message_id = (DeliveryJob.objects.filter(_waiting([job_id], now))
                      .values_list("message_id", flat=True).first())
        if message_id is None:
            continue
        with transaction.atomic():
            message = _lock_message(message_id)  # the message first, as the workers lock
            job = DeliveryJob.objects.select_for_update().filter(_waiting([job_id], now)).first()
            if job is None:
                continue
            _bounce(job, message, f"5.4.7 delivery given up by the operator after "
                                  f"{job.attempts} attempts: {job.last_error or 'no error'}", now)
            _drop_content_when_done(message_id)
            done += 1
    return done
