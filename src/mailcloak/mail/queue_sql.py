"""The delivery queue's hottest statements, in SQL written out.

Every claim and every recorded batch of a worker runs these. The ORM would build and compile
each statement anew at every call, at several times what the database spends on it; written
out once here (SQL that SQLite and PostgreSQL both speak, table names from the models), they
cost little more than the round trip. mail.jobs says what they are for and when they run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection

from mailcloak.aliases.models import Domain
from mailcloak.mail.models import DeliveryJob, QueuedMessage
from mailcloak.mail.sql import placeholders, table

CLAIMED_FIELDS = ["id", "message_id", "recipient", "domain", "crashes"]


def claim(worker_id: str, limit: int, *, now: datetime, lease_until: datetime
          ) -> list[DeliveryJob]:
    """Lease up to `limit` due jobs (the caller's transaction): PostgreSQL claims and returns
    them in one statement, skipping rows other workers hold; SQLite, whose single writer
    needs no such care, reads them back."""
    ops = connection.ops
    at, until = ops.adapt_datetimefield_value(now), ops.adapt_datetimefield_value(lease_until)
    job_table = table(DeliveryJob)
    # A lease that ran out means the worker holding it died with the job.
    lease_and_count = (
        "leased_by = %s, lease_expires_at = %s, last_attempt_at = %s,"
        f" crashes = CASE WHEN {job_table}.lease_expires_at IS NULL THEN {job_table}.crashes"
        f" ELSE {job_table}.crashes + 1 END")
    due = (f"SELECT id FROM {job_table} WHERE state = %s AND next_attempt_at <= %s"  # noqa: S608
           " AND (lease_expires_at IS NULL OR lease_expires_at <= %s)"
           " ORDER BY next_attempt_at, id LIMIT %s")
    due_params: list[Any] = [DeliveryJob.State.QUEUED, at, at, limit]
    lease_params: list[Any] = [worker_id, until, at]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            returning = ", ".join(f"{job_table}.{column}" for column in CLAIMED_FIELDS)
            cursor.execute(
                f"WITH due AS ({due} FOR UPDATE SKIP LOCKED) UPDATE {job_table}"  # noqa: S608
                f" SET {lease_and_count} FROM due WHERE {job_table}.id = due.id"
                f" RETURNING {returning}", due_params + lease_params)
        else:
            cursor.execute(f"UPDATE {job_table} SET {lease_and_count}"  # noqa: S608
                           f" WHERE id IN ({due})", lease_params + due_params)
            cursor.execute(f"SELECT {', '.join(CLAIMED_FIELDS)} FROM {job_table}"  # noqa: S608
                           ' WHERE "leased_by" = %s AND lease_expires_at = %s AND state = %s',
                           [worker_id, until, DeliveryJob.State.QUEUED])
        rows = cursor.fetchall()
    return [DeliveryJob.from_db(connection.alias, CLAIMED_FIELDS, row) for row in sorted(rows)]


def messages_to_send(ids: list[int]) -> dict[int, tuple[Any, ...]]:
    """id -> (id, queue_id, kind, mail_from, content) of the claimed jobs' messages."""
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, queue_id, kind, mail_from, content"  # noqa: S608
                       f" FROM {table(QueuedMessage)} WHERE id IN ({placeholders(ids)})", ids)
        return {row[0]: row for row in cursor.fetchall()}


def active_domains() -> set[str]:
    """Our alias domains: a message from one of them is signed with its name."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT name FROM {table(Domain)} WHERE active = %s",  # noqa: S608
                       [True])
        return {name for (name,) in cursor.fetchall()}


def lock_for_results(message_ids: list[int], job_ids: list[int], worker_id: str
                     ) -> tuple[dict[int, QueuedMessage], dict[int, str]]:
    """Lock the messages, then the jobs still leased to `worker_id`, each in id order (as the
    one-at-a-time path locks them). Returns the messages, and the leased jobs' domains."""
    for_update = " FOR UPDATE" if connection.features.has_select_for_update else ""
    message_table, job_table = table(QueuedMessage), table(DeliveryJob)
    message_fields = ["id", "queue_id", "kind", "mail_from", "alias_id"]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(message_fields)} FROM {message_table}"  # noqa: S608
                       f" WHERE id IN ({placeholders(message_ids)}) ORDER BY id{for_update}",
                       message_ids)
        messages = {row[0]: QueuedMessage.from_db(connection.alias, message_fields, row)
                    for row in cursor.fetchall()}
        cursor.execute(f"SELECT id, domain FROM {job_table}"  # noqa: S608
                       f" WHERE id IN ({placeholders(job_ids)}) AND leased_by = %s"
                       f" AND state = %s ORDER BY id{for_update}",
                       [*job_ids, worker_id, DeliveryJob.State.QUEUED])
        return messages, dict(cursor.fetchall())


def mark_delivered(delivered: dict[tuple[str, bool], list[int]], now: datetime) -> None:
    """Finish the jobs delivered to each (remote, tls): one UPDATE per destination."""
    job_table = table(DeliveryJob)
    finished = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        for (remote, tls), ids in delivered.items():
            cursor.execute(
                f"UPDATE {job_table} SET attempts = attempts + 1, delivered_to = %s, tls = %s,"  # noqa: S608
                " last_error = '', state = %s, finished_at = %s, lease_expires_at = NULL,"
                f" leased_by = '' WHERE id IN ({placeholders(ids)})",
                [remote, tls, DeliveryJob.State.DELIVERED, finished, *ids])


def drop_finished_content(message_ids: list[int]) -> None:
    """Forwarded mail is not kept: the content goes once no job of the message waits."""
    if not message_ids:
        return
    message_table, job_table = table(QueuedMessage), table(DeliveryJob)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {message_table} SET content = NULL"  # noqa: S608
            f" WHERE id IN ({placeholders(message_ids)}) AND content IS NOT NULL"
            f" AND NOT EXISTS (SELECT 1 FROM {job_table} j"
            f" WHERE j.message_id = {message_table}.id AND j.state = %s)",
            [*message_ids, DeliveryJob.State.QUEUED])
