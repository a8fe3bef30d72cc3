"""Rows inserted in SQL built from the model read back exactly as the ORM would store them."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from mailcloak.aliases.models import Alias
from mailcloak.mail.models import DeliveryJob, QueuedMessage
from mailcloak.mail.rows import insert


def test_rows_read_back_as_written(alias: Alias) -> None:
    now = timezone.now()
    first = QueuedMessage(queue_id="A1", kind=QueuedMessage.Kind.FORWARD, mail_from="b@x.test",
                          content=b"\x00\xffbytes", size=7, alias=alias, created_at=now)
    second = QueuedMessage(queue_id="A2", kind=QueuedMessage.Kind.SYSTEM, mail_from="",
                           content=None)
    insert([first, second])
    assert first.pk and second.pk and first.pk != second.pk
    stored = QueuedMessage.objects.get(pk=first.pk)
    assert (stored.queue_id, stored.kind, stored.mail_from, bytes(stored.content), stored.size,
            stored.alias_id, stored.created_at) == ("A1", "forward", "b@x.test",
                                                    b"\x00\xffbytes", 7, alias.pk, now)
    assert QueuedMessage.objects.get(pk=second.pk).content is None

    jobs = [DeliveryJob(message=first, recipient=f"r{n}@example.test", domain="example.test",
                        next_attempt_at=now, expires_at=now + timedelta(days=5))
            for n in range(3)]
    insert(jobs, set_ids=False)
    stored_jobs = list(DeliveryJob.objects.filter(message=first).order_by("recipient"))
    assert [job.recipient for job in stored_jobs] == ["r0@example.test", "r1@example.test",
                                                      "r2@example.test"]
    job = stored_jobs[0]
    assert (job.state, job.attempts, job.crashes, job.leased_by, job.lease_expires_at,
            job.tls, job.expires_at) == (DeliveryJob.State.QUEUED, 0, 0, "", None, None,
                                         now + timedelta(days=5))


def test_nothing_to_insert_is_fine(db: None) -> None:
    insert([])
    assert not QueuedMessage.objects.exists()
