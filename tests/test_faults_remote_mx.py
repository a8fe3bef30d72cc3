"""A remote MX that misbehaves, seen from the delivery worker: every fault ends in a retry
(temporary) or a bounce recorded for the owner (permanent); the content stays until every job
of the message is finished; once the MX behaves, each recipient gets the message exactly once.

The MX is tests.support.scripted_mx on 127.0.0.3, reached through a transport entry: in
production mode (local mode keeps mail no server would take in the local outbox, and production
never follows an MX to a loopback address).
Greylisting (451 at RCPT), 550 at RCPT, a connection dropped after the data and a failed TLS
handshake with a real TLS server are covered in test_worker.py and test_deliver.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.aliases.models import Alias
from mailcloak.mail.deliver import DeliveryOptions
from mailcloak.mail.dkimkeys import create_keys, key_directory
from mailcloak.mail.models import Bounce, DeliveryJob, QueuedMessage
from mailcloak.mail.queue import enqueue
from mailcloak.mail.worker import process_due_jobs
from tests.support.scripted_mx import CLOSE, GARBAGE, SILENT, ScriptedMx

MESSAGE = (b"From: Shop <news@shop.example>\r\nTo: owner@example.test\r\nSubject: offers\r\n"
           b"Message-ID: <faults@shop.example>\r\n\r\nOur offers this week.\r\n.dotted line\r\n")
SENDER = "bounce-abc@alias.example"
TIMEOUT = 0.5  # seconds: how long a silent MX is waited for


@pytest.fixture
def mx() -> Iterator[ScriptedMx]:
    with ScriptedMx("127.0.0.3") as server:
        yield server


@pytest.fixture
def opts(monkeypatch: pytest.MonkeyPatch, mx: ScriptedMx) -> DeliveryOptions:
    for name, value in {"MODE": "production", "DOMAINS": "alias.example",
                        "PUBLIC_URL": "https://alias.example", "TLS_CERT": "/cert.pem",
                        "TLS_KEY": "/key.pem", "SECRET_KEY": "s" * 40,
                        "TRANSPORTS": f"example.test=[127.0.0.3]:{mx.port}"}.items():
        monkeypatch.setenv(f"MAILCLOAK_{name}", value)
    mailcloak_settings.reset()
    create_keys(key_directory())  # production never creates keys by itself
    return DeliveryOptions(connect_timeout=TIMEOUT, command_timeout=TIMEOUT,
                           data_timeout=TIMEOUT)


def queue(*recipients: str, alias: Alias | None = None) -> QueuedMessage:
    return enqueue(kind=QueuedMessage.Kind.FORWARD, mail_from=SENDER, recipients=recipients,
                   content=MESSAGE, alias=alias)


def jobs_of(message: QueuedMessage) -> dict[str, DeliveryJob]:
    return {job.recipient: job for job in DeliveryJob.objects.filter(message=message)}


def make_due(message: QueuedMessage) -> None:
    DeliveryJob.objects.filter(message=message, state=DeliveryJob.State.QUEUED).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1))


def content_kept(message: QueuedMessage) -> bool:
    message.refresh_from_db()
    return message.content is not None


def delivered_once(mx: ScriptedMx, *recipients: str) -> bool:
    """Each recipient got the message once, intact (signed on top)."""
    got = [rcpt for received in mx.delivered for rcpt in received.rcpt_tos]
    intact = all(received.content.endswith(MESSAGE) for received in mx.delivered)
    return sorted(got) == sorted(recipients) and intact


# --- temporary faults: retried, then delivered once -------------------------------------------


def _greeting(mx: ScriptedMx, reply: str) -> None:
    mx.greeting = reply


def _mail(mx: ScriptedMx, reply: str) -> None:
    mx.mail = reply


def _during_data(mx: ScriptedMx, reply: str) -> None:
    mx.during_data = reply


def _end_of_data(mx: ScriptedMx, reply: str) -> None:
    mx.end_of_data = reply


@pytest.mark.parametrize(("fault", "reply", "reason"), [
    (_greeting, "421 4.3.2 Service shutting down", "421 4.3.2 Service shutting down"),
    (_greeting, SILENT, "timed out"),
    (_mail, CLOSE, "4.4.2 connection lost"),
    (_during_data, CLOSE, "4.4.2 connection lost"),
    (_end_of_data, "451 4.3.0 Local error in processing", "451 4.3.0 Local error"),
    (_end_of_data, SILENT, "4.4.2 connection lost"),
], ids=["421-greeting", "silent-greeting", "closed-after-mail", "closed-during-data",
        "451-after-data", "silent-after-data"])
def test_a_temporary_fault_is_retried_and_then_delivered_once(
        db: None, mx: ScriptedMx, opts: DeliveryOptions, fault: object, reply: str,
        reason: str) -> None:
    assert callable(fault)
    fault(mx, reply)
    message = queue("owner@example.test", "other@example.test")
    assert process_due_jobs(options=opts) == 2
    jobs = jobs_of(message).values()
    assert {(job.state, job.attempts) for job in jobs} == {(DeliveryJob.State.QUEUED, 1)}
    assert all(reason in job.last_error for job in jobs), [job.last_error for job in jobs]
    assert all(job.next_attempt_at > timezone.now() for job in jobs)
    assert all((job.leased_by, job.lease_expires_at) == ("", None) for job in jobs)
    assert content_kept(message)
    assert not mx.delivered and not Bounce.objects.exists()

    mx.accept_everything()
    make_due(message)
    assert process_due_jobs(options=opts) == 2
    assert {job.state for job in jobs_of(message).values()} == {DeliveryJob.State.DELIVERED}
    assert not content_kept(message)
    assert delivered_once(mx, "owner@example.test", "other@example.test")


def test_a_server_that_stays_silent_is_abandoned_within_the_timeout(
        db: None, mx: ScriptedMx, opts: DeliveryOptions) -> None:
    mx.end_of_data = SILENT
    message = queue("owner@example.test")
    process_due_jobs(options=opts)
    [job] = jobs_of(message).values()
    assert "timed out" in job.last_error
    assert mx.connections == 1  # gave up on the session, did not pile up new ones


# --- permanent faults: bounced, recorded for the owner ----------------------------------------


def test_550_after_the_data_bounces_every_recipient(
        alias: Alias, mx: ScriptedMx, opts: DeliveryOptions) -> None:
    mx.end_of_data = "550 5.7.1 Message content rejected"
    message = queue("owner@example.test", "other@example.test", alias=alias)
    process_due_jobs(options=opts)
    assert {job.state for job in jobs_of(message).values()} == {DeliveryJob.State.BOUNCED}
    bounces = Bounce.objects.filter(alias=alias, source=Bounce.Source.DELIVERY)
    assert sorted(bounce.recipient for bounce in bounces) == [
        "other@example.test", "owner@example.test"]
    assert all("550 5.7.1 Message content rejected" in b.reason for b in bounces)
    assert not content_kept(message)
    assert not mx.delivered
    assert process_due_jobs(options=opts) == 0  # never retried


def test_550_to_mail_from_bounces(alias: Alias, mx: ScriptedMx, opts: DeliveryOptions) -> None:
    mx.mail = "550 5.7.1 Sender refused"
    message = queue("owner@example.test", alias=alias)
    process_due_jobs(options=opts)
    [job] = jobs_of(message).values()
    assert job.state == DeliveryJob.State.BOUNCED
    assert "550 5.7.1 Sender refused" in Bounce.objects.get(alias=alias).reason


def test_mixed_replies_at_rcpt_settle_each_recipient_on_its_own(
        alias: Alias, mx: ScriptedMx, opts: DeliveryOptions) -> None:
    answers = {"gone@example.test": "550 5.1.1 No such user",
               "busy@example.test": "451 4.2.1 Mailbox busy",
               "fine@example.test": "250 2.1.5 Ok"}
    mx.rcpt = answers.__getitem__
    message = queue(*answers, alias=alias)
    process_due_jobs(options=opts)
    jobs = jobs_of(message)
    assert jobs["gone@example.test"].state == DeliveryJob.State.BOUNCED
    assert jobs["busy@example.test"].state == DeliveryJob.State.QUEUED
    assert "451 4.2.1 Mailbox busy" in jobs["busy@example.test"].last_error
    assert jobs["fine@example.test"].state == DeliveryJob.State.DELIVERED
    assert content_kept(message)  # the busy mailbox still needs it
    assert Bounce.objects.get(alias=alias).recipient == "gone@example.test"

    mx.rcpt = lambda _address: "250 2.1.5 Ok"
    make_due(message)
    assert process_due_jobs(options=opts) == 1  # only the deferred job is left
    assert jobs_of(message)["busy@example.test"].state == DeliveryJob.State.DELIVERED
    assert not content_kept(message)
    assert delivered_once(mx, "fine@example.test", "busy@example.test")


# --- broken TLS -------------------------------------------------------------------------------


def test_garbage_instead_of_a_tls_handshake_falls_back_to_plain_text(
        db: None, mx: ScriptedMx, opts: DeliveryOptions) -> None:
    mx.starttls = GARBAGE
    message = queue("owner@example.test")
    process_due_jobs(options=opts)
    [job] = jobs_of(message).values()
    assert job.state == DeliveryJob.State.DELIVERED and job.tls is False
    assert mx.connections == 2  # the broken handshake, then a plain session
    assert delivered_once(mx, "owner@example.test")


def test_a_server_that_drops_the_handshake_and_then_plain_sessions_is_retried(
        db: None, mx: ScriptedMx, opts: DeliveryOptions) -> None:
    mx.starttls = CLOSE
    mx.mail = CLOSE
    message = queue("owner@example.test")
    process_due_jobs(options=opts)
    [job] = jobs_of(message).values()
    assert job.state == DeliveryJob.State.QUEUED
    assert content_kept(message) and not mx.delivered
    mx.accept_everything()
    make_due(message)
    process_due_jobs(options=opts)
    assert jobs_of(message)["owner@example.test"].state == DeliveryJob.State.DELIVERED
    assert delivered_once(mx, "owner@example.test")
