"""Queries of the mail path that must not grow with the tables around them (the benches
bench/rcpt_scale.py and bench/deferred_queue.py measure them at 1,000,000 aliases and 100,000
deferred deliveries; these check the plans on a few thousand rows, on SQLite and PostgreSQL).

- A worker finds the jobs it holds (after a claim, renewing and releasing its leases) through
  job_leased_idx instead of reading every deferred job.
- The RCPT check finds the rules naming the sender through blocked_sender_idx instead of
  reading every rule of an owner who blocks thousands of domains (PostgreSQL).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias, BlockedSender
from mailcloak.mail.addresses import Address
from mailcloak.mail.jobs import WORKER_LEASE, claim_jobs, release_leases, renew_leases
from mailcloak.mail.models import DeliveryJob, QueuedMessage
from mailcloak.mail.policy import Action, decide
from mailcloak.mail.queue import enqueue

DEFERRED = 3000
RULES = 3000
WORKER = "worker-under-test"


def load_deferred(count: int) -> None:
    now = timezone.now()
    messages = QueuedMessage.objects.bulk_create(
        QueuedMessage(queue_id=f"DEFERRED{n:08d}", kind=QueuedMessage.Kind.FORWARD,
                      mail_from="friend@sender.test", content=b"Subject: held\r\n\r\nx\r\n")
        for n in range(count))
    DeliveryJob.objects.bulk_create(
        DeliveryJob(message=message, recipient=f"owner@slow{n % 50}.test",
                    domain=f"slow{n % 50}.test", attempts=1 + n % 8,
                    next_attempt_at=now + timedelta(minutes=30 + n % 60),
                    expires_at=now + timedelta(days=5), last_error="451 4.7.1 try later")
        for n, message in enumerate(messages))
    analyze()


def analyze() -> None:
    if connection.vendor == "postgresql":  # statistics as autovacuum keeps them
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def plan_of(sql: str) -> str:
    prefix = "EXPLAIN QUERY PLAN" if connection.vendor == "sqlite" else "EXPLAIN"
    with connection.cursor() as cursor:
        cursor.execute(f"{prefix} {sql}")
        return "\n".join(str(row) for row in cursor.fetchall())


def where_clause(sql: str) -> str:
    return sql.rpartition(" WHERE ")[2]


@pytest.mark.django_db
def test_a_worker_finds_its_leases_by_index_beside_thousands_of_deferred_jobs() -> None:
    load_deferred(DEFERRED)
    for n in range(3):
        enqueue(kind=QueuedMessage.Kind.FORWARD, mail_from="friend@sender.test",
                recipients=[f"owner{n}@mailbox.test"], content=b"Subject: new\r\n\r\nx\r\n")

    with CaptureQueriesContext(connection) as captured:
        claimed = claim_jobs(WORKER, 10, WORKER_LEASE)
        renewed = renew_leases(WORKER, WORKER_LEASE)
        released = release_leases(WORKER)

    assert (len(claimed), renewed, released) == (3, 3, 3)
    own_jobs = [query["sql"] for query in captured.captured_queries
                if f"\"leased_by\" = '{WORKER}'" in where_clause(query["sql"])]
    # The renewal, the release, and on SQLite the claim's read-back (PostgreSQL's claim returns
    # the rows it leased).
    assert len(own_jobs) == (3 if connection.vendor == "sqlite" else 2)
    for sql in own_jobs:
        assert "job_leased_idx" in plan_of(sql), sql


@pytest.mark.django_db
def test_the_rcpt_check_reads_only_the_rules_naming_the_sender(user: User, alias: Alias
                                                               ) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite reads the owner's rules through the unique index (user_id, ...); "
                    "the many-rules case is PostgreSQL's")
    BlockedSender.objects.bulk_create(
        BlockedSender(user=user, kind=BlockedSender.Kind.DOMAIN, value=f"spam{n}.test")
        for n in range(RULES))
    analyze()
    sender = Address("friend", "sender.test")

    with CaptureQueriesContext(connection) as captured:
        decision = decide(sender, Address(*alias.address.split("@")))

    assert decision.action is Action.FORWARD
    lookup = captured.captured_queries[0]["sql"]
    assert "aliases_blockedsender" in lookup
    assert "blocked_sender_idx" in plan_of(lookup), lookup
