"""The service's figures, read from the shared database: the same answer on every node.

Metrics (metrics.py) and the operator page (operator.py) both read these at request time, so
nothing needs to be counted on the side, and a node that just started knows the cluster's
history. The records are those the mail path keeps anyway; quarantined mail and rejections
count while their rows exist (their retention is MAILCLOAK_QUARANTINE_DAYS, and owners may
delete held mail sooner).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q, QuerySet
from django.db.models.functions import TruncHour

from mailcloak.mail.analysis import DMARC_REJECT_SUMMARY
from mailcloak.mail.jobs import LOCAL_OUTBOX
from mailcloak.mail.models import Bounce, DeliveryJob, QueuedMessage, RefusedReply
from mailcloak.quarantine.models import QuarantinedMessage, RejectionLog

TOP_DOMAINS = 20  # remote domains named in delivery figures; the rest are "other"
OTHER = "other"


@dataclass(frozen=True)
class QueueState:
    waiting: int  # jobs not yet delivered or bounced
    deferred: int  # of those, jobs that failed at least once and wait for a retry
    oldest_age: float  # seconds since the oldest waiting message was queued (0: none)


def queue_state(now: datetime) -> QueueState:
    totals = DeliveryJob.objects.filter(state=DeliveryJob.State.QUEUED).aggregate(
        waiting=Count("id"), deferred=Count("id", filter=Q(attempts__gt=0)),
        oldest=Min("message__created_at"))
    oldest = totals["oldest"]
    return QueueState(totals["waiting"], totals["deferred"],
                      max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)


def deliveries(since: datetime) -> Counter[tuple[str, str]]:
    """(result, remote domain) -> recipients: delivered, bounced and local_outbox for jobs
    finished since `since`, deferred for jobs that failed an attempt since then and wait."""
    counts: Counter[tuple[str, str]] = Counter()
    finished = DeliveryJob.objects.filter(finished_at__gte=since)
    for row in _count_by(finished, "state", "domain", "delivered_to"):
        result = "local_outbox" if row["delivered_to"] == LOCAL_OUTBOX else row["state"]
        counts[(result, row["domain"])] += row["n"]
    deferred = DeliveryJob.objects.filter(state=DeliveryJob.State.QUEUED, attempts__gt=0,
                                          last_attempt_at__gte=since)
    for row in _count_by(deferred, "domain"):
        counts[("deferred", row["domain"])] += row["n"]
    return _top_domains(counts)


def _top_domains(counts: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
    per_domain: Counter[str] = Counter()
    for (_, domain), count in counts.items():
        per_domain[domain] += count
    named = {domain for domain, _ in per_domain.most_common(TOP_DOMAINS)}
    folded: Counter[tuple[str, str]] = Counter()
    for (result, domain), count in counts.items():
        folded[(result, domain if domain in named else OTHER)] += count
    return folded


def mail_outcomes(since: datetime) -> Counter[tuple[str, str]]:
    """(outcome, reason) -> messages since `since`: what became of the mail we took in.

    forwarded / sent (from an alias) / system, by kind; quarantined by direction; rejected
    (refused in SMTP for spam or DMARC, per alias); refused (mail from an alias that was not
    its owner's, or over a limit, by kind); bounce_reported (bounces and complaints that came
    back, by source). Refusals at RCPT time leave no record: see mailcloak_smtp_replies.
    """
    counts: Counter[tuple[str, str]] = Counter()
    kinds = {QueuedMessage.Kind.FORWARD: "forwarded", QueuedMessage.Kind.REPLY: "sent",
             QueuedMessage.Kind.SYSTEM: "system"}
    for row in _count_by(QueuedMessage.objects.filter(created_at__gte=since), "kind"):
        counts[(kinds.get(row["kind"], row["kind"]), row["kind"])] += row["n"]
    for row in _count_by(QuarantinedMessage.objects.filter(received_at__gte=since),
                         "direction"):
        counts[("quarantined", row["direction"])] += row["n"]
    rejections = RejectionLog.objects.filter(created_at__gte=since).aggregate(
        dmarc=Count("id", filter=Q(reason=DMARC_REJECT_SUMMARY)), total=Count("id"))
    if rejections["total"]:
        counts[("rejected", "dmarc")] += rejections["dmarc"]
        counts[("rejected", "spam")] += rejections["total"] - rejections["dmarc"]
    for row in _count_by(RefusedReply.objects.filter(created_at__gte=since), "kind"):
        counts[("refused", row["kind"])] += row["n"]
    for row in _count_by(Bounce.objects.filter(created_at__gte=since), "source"):
        counts[("bounce_reported", row["source"])] += row["n"]
    return +counts  # drops zero counts


def _count_by(rows: QuerySet[Any], *fields: str) -> QuerySet[Any, dict[str, Any]]:
    """`SELECT fields, COUNT(*) ... GROUP BY fields` (each row has the count as `n`)."""
    return rows.values(*fields).annotate(n=Count("id")).order_by()


# --- the day by the hour (the operator page's charts) ----------------------------------------


@dataclass(frozen=True)
class DaySeries:
    title: str
    hours: list[int]  # 24 counts, 00:00-01:00 UTC first

    @property
    def total(self) -> int:
        return sum(self.hours)


def day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day_by_hour(now: datetime) -> list[DaySeries]:
    """Today's figures (UTC), hour by hour."""
    start = day_start(now)
    end = start + timedelta(days=1)
    jobs = DeliveryJob.objects.filter(finished_at__gte=start, finished_at__lt=end)
    return [
        DaySeries("Forwarded to owners", _hours(
            QueuedMessage.objects.filter(kind=QueuedMessage.Kind.FORWARD), "created_at", start)),
        DaySeries("Sent from aliases", _hours(
            QueuedMessage.objects.filter(kind=QueuedMessage.Kind.REPLY), "created_at", start)),
        DaySeries("Quarantined", _hours(QuarantinedMessage.objects.all(), "received_at", start)),
        DaySeries("Rejected as spam", _hours(RejectionLog.objects.all(), "created_at", start)),
        DaySeries("Delivered", _hours(jobs.filter(state=DeliveryJob.State.DELIVERED),
                                      "finished_at", start)),
        DaySeries("Bounced", _hours(jobs.filter(state=DeliveryJob.State.BOUNCED),
                                    "finished_at", start)),
    ]


def _hours(rows: QuerySet[Any], field: str, start: datetime) -> list[int]:
    hours = [0] * 24
    buckets = (rows.filter(**{f"{field}__gte": start, f"{field}__lt": start + timedelta(days=1)})
               .annotate(hour=TruncHour(field, tzinfo=UTC)).values("hour")
               .annotate(n=Count("id")).order_by())
    for bucket in buckets:
        index = int((bucket["hour"] - start).total_seconds() // 3600)
        if 0 <= index < 24:
            hours[index] += bucket["n"]
    return hours
