"""Recording what became of claimed jobs: all together (the long-running worker's batches) and
one by one (the fallback) leave the queue in the same state."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import transaction

from mailcloak.mail.deliver import Delivered, DeliveryResult, PermanentFailure, TemporaryFailure
from mailcloak.mail.jobs import (
    Delivery,
    claim_deliveries,
    record_results,
    record_results_together,
    release_leases,
)
from mailcloak.mail.models import Bounce, DeliveryJob, QueuedMessage
from mailcloak.mail.queue import enqueue

CONTENT = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
Recorder = Callable[[list[tuple[Delivery, list[DeliveryResult], bytes]], str], None]


def one_by_one(deliveries: list[tuple[Delivery, list[DeliveryResult], bytes]],
               worker_id: str) -> None:
    for delivery, results, sent in deliveries:
        record_results(delivery, results, sent, worker_id)


def queued(*recipients: str) -> QueuedMessage:
    return enqueue(kind=QueuedMessage.Kind.FORWARD, mail_from="b@alias.test",
                   recipients=recipients, content=CONTENT)


def delivered(recipient: str) -> Delivered:
    return Delivered(recipient, "mx.example.test[127.0.0.3]:25", tls=True, reply="250 ok")


@pytest.mark.parametrize("record", [record_results_together, one_by_one])
def test_each_outcome_lands_and_content_goes_when_nothing_waits(
        db: None, record: Recorder) -> None:
    mixed = queued("a1@example.test", "a2@example.test", "a3@example.test")
    done = queued("b1@example.test")
    stolen = queued("c1@example.test")
    deliveries = {d.message_id: d for d in claim_deliveries("worker-1", 10)}
    # c1's lease ran out and went to another worker: worker-1 must not write its result.
    DeliveryJob.objects.filter(message=stolen).update(leased_by="worker-2")
    with transaction.atomic():
        record([
            (deliveries[mixed.id], [delivered("a1@example.test"),
                                    PermanentFailure("a2@example.test", "5.1.1 no such user"),
                                    TemporaryFailure("a3@example.test", "4.2.0 try later")], b""),
            (deliveries[done.id], [delivered("b1@example.test")], b""),
            (deliveries[stolen.id], [delivered("c1@example.test")], b""),
        ], "worker-1")

    jobs = {job.recipient: job for job in DeliveryJob.objects.all()}
    a1, a2, a3 = jobs["a1@example.test"], jobs["a2@example.test"], jobs["a3@example.test"]
    assert (a1.state, a1.attempts, a1.tls, a1.leased_by, a1.lease_expires_at) == (
        DeliveryJob.State.DELIVERED, 1, True, "", None)
    assert a1.delivered_to == "mx.example.test[127.0.0.3]:25" and a1.finished_at is not None
    assert (a2.state, a2.attempts) == (DeliveryJob.State.BOUNCED, 1)
    assert Bounce.objects.get().recipient == "a2@example.test"
    assert (a3.state, a3.attempts, a3.leased_by, a3.last_error) == (
        DeliveryJob.State.QUEUED, 1, "", "4.2.0 try later")
    assert a3.next_attempt_at > a3.last_attempt_at
    assert jobs["b1@example.test"].state == DeliveryJob.State.DELIVERED
    c1 = jobs["c1@example.test"]
    assert (c1.state, c1.attempts, c1.leased_by) == (DeliveryJob.State.QUEUED, 0, "worker-2")

    contents = dict(QueuedMessage.objects.values_list("id", "content"))
    assert contents[mixed.id] is not None  # a3 is still to be delivered
    assert contents[done.id] is None
    assert contents[stolen.id] is not None


def test_results_for_recipients_the_delivery_does_not_have_are_ignored(db: None) -> None:
    message = queued("a1@example.test")
    (delivery,) = claim_deliveries("worker-1", 10)
    with transaction.atomic():
        record_results_together([(delivery, [delivered("stranger@example.test")], b"")],
                                "worker-1")
    job = DeliveryJob.objects.get(message=message)
    assert (job.state, job.attempts, job.leased_by) == (DeliveryJob.State.QUEUED, 0, "worker-1")
    assert release_leases("worker-1") == 1
