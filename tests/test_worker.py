"""The delivery worker end to end: queue -> claim -> sign -> deliver -> record, against real
SMTP sinks and a real DNS server on loopback. Time is driven through the queue rows
(next_attempt_at, expires_at, lease_expires_at), never by sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dkim
import pytest
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.aliases.models import Alias
from mailcloak.mail import deliver as deliver_module
from mailcloak.mail import worker
from mailcloak.mail.deliver import DeliveryOptions
from mailcloak.mail.dkimkeys import create_keys, key_directory, signing_keys
from mailcloak.mail.dns import use_resolver
from mailcloak.mail.dnsrecords import domain_records
from mailcloak.mail.jobs import (
    MAX_CRASHES,
    Delivery,
    claim_deliveries,
    claim_jobs,
    release_leases,
    renew_leases,
)
from mailcloak.mail.models import Bounce, DeliveryJob, QueuedMessage
from mailcloak.mail.queue import enqueue
from mailcloak.mail.worker import process_due_jobs, run_worker, wake
from mailcloak.outbox.models import LocalOutboxMessage
from tests.support.dns_server import DnsServer
from tests.support.sink import SmtpSink, tls_server_context

MESSAGE = (b"From: Shop <news@shop.example>\r\nTo: owner@example.test\r\n"
           b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from the shop\r\n"
           b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\nMessage-ID: <n1@shop.example>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           b"Our offers this week.\r\n")
SENDER = "reply-abc@alias.test"


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server, use_resolver(server.resolver()):
        for domain in ("alias.test", "second.test"):
            for record in domain_records(domain, "mail.alias.test", signing_keys()):
                server.add(record.name, record.type, record.value)
        server.add("example.test", "MX", "10 mx1.example.test")
        server.add("mx1.example.test", "A", "127.0.0.3")
        yield server


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink("127.0.0.3", tls=tls_server_context("mx1.example.test")) as smtp_sink:
        yield smtp_sink


@pytest.fixture
def opts(sink: SmtpSink) -> DeliveryOptions:
    return DeliveryOptions(mx_port=sink.port, connect_timeout=2, command_timeout=5,
                           data_timeout=5)


def queue(*recipients: str, alias: Alias | None = None, mail_from: str = SENDER,
          kind: str = QueuedMessage.Kind.FORWARD, content: bytes = MESSAGE) -> QueuedMessage:
    return enqueue(kind=kind, mail_from=mail_from, recipients=recipients, content=content,
                   alias=alias)


def job_for(message: QueuedMessage, recipient: str | None = None) -> DeliveryJob:
    jobs = DeliveryJob.objects.filter(message=message)
    return jobs.get(recipient=recipient) if recipient else jobs.get()


def make_due(*jobs: DeliveryJob) -> None:
    DeliveryJob.objects.filter(id__in=[job.id for job in jobs]).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1))


def dkim_results(content: bytes, server: DnsServer) -> dict[bytes, tuple[bytes, bool]]:
    """algorithm -> (d=, verifies) for both signatures."""
    verifier = dkim.DKIM(content)
    results = {}
    for index in range(2):
        valid = verifier.verify(idx=index, dnsfunc=server.resolver().dkim_dnsfunc)
        results[verifier.signature_fields[b"a"]] = (verifier.signature_fields[b"d"], valid)
    return results


# --- the happy path ---------------------------------------------------------------------------


def test_a_queued_message_is_delivered_signed_and_then_forgotten(
        alias: Alias, dns_server: DnsServer, sink: SmtpSink, opts: DeliveryOptions) -> None:
    message = queue("owner@example.test", alias=alias)
    assert process_due_jobs(options=opts) == 1
    job = job_for(message)
    assert job.state == DeliveryJob.State.DELIVERED
    assert job.finished_at is not None and job.attempts == 1
    assert job.tls is True and job.delivered_to.startswith("mx1.example.test[127.0.0.3]")
    assert (job.leased_by, job.lease_expires_at) == ("", None)
    message.refresh_from_db()
    assert message.content is None
    [received] = sink.messages
    assert received.tls and received.mail_from == SENDER
    assert received.content.endswith(MESSAGE)
    assert dkim_results(received.content, dns_server) == {
        b"rsa-sha256": (b"alias.test", True), b"ed25519-sha256": (b"alias.test", True)}
    assert process_due_jobs(options=opts) == 0


@pytest.mark.parametrize(("mail_from", "kind", "signing_domain"), [
    ("reply-x@second.test", QueuedMessage.Kind.REPLY, b"second.test"),
    ("bounce@elsewhere.test", QueuedMessage.Kind.FORWARD, b"alias.test"),
    ("noreply@second.test", QueuedMessage.Kind.SYSTEM, b"alias.test"),
    ("", QueuedMessage.Kind.FORWARD, b"alias.test"),
])
def test_the_signing_domain_is_the_senders_when_it_is_ours(
        db: None, dns_server: DnsServer, sink: SmtpSink, opts: DeliveryOptions, mail_from: str,
        kind: str, signing_domain: bytes) -> None:
    queue("owner@example.test", mail_from=mail_from, kind=kind)
    process_due_jobs(options=opts)
    [received] = sink.messages
    assert received.mail_from == (mail_from or "<>")  # the null sender of bounces
    assert dkim_results(received.content, dns_server) == {
        b"rsa-sha256": (signing_domain, True), b"ed25519-sha256": (signing_domain, True)}


def test_two_messages_to_one_domain_share_a_connection(
        db: None, dns_server: DnsServer, sink: SmtpSink, opts: DeliveryOptions) -> None:
    queue("a@example.test")
    queue("b@example.test")
    assert process_due_jobs(options=opts) == 2
    assert len(sink.messages) == 2
    assert sink.connections == 1


# --- retries and bounces ----------------------------------------------------------------------


def test_a_greylisted_message_is_delivered_on_retry(
        alias: Alias, dns_server: DnsServer, sink: SmtpSink, opts: DeliveryOptions) -> None:
    sink.tempfail_first = 1
    message = queue("owner@example.test", alias=alias)
    assert process_due_jobs(options=opts) == 1
    job = job_for(message)
    assert job.state == DeliveryJob.State.QUEUED and job.attempts == 1
    assert "451 4.7.1" in job.last_error
    assert job.next_attempt_at >= timezone.now() + timedelta(seconds=45)  # 1 minute, jittered
    assert (job.leased_by, job.lease_expires_at) == ("", None)
    assert process_due_jobs(options=opts) == 0  # not due yet
    make_due(job)
    assert process_due_jobs(options=opts) == 1
    job.refresh_from_db()
    assert job.state == DeliveryJob.State.DELIVERED and job.attempts == 2
    assert len(sink.messages) == 1
    assert not Bounce.objects.exists()


def test_a_permanent_refusal_bounces_against_the_alias(
        alias: Alias, dns_server: DnsServer, sink: SmtpSink, opts: DeliveryOptions) -> None:
    sink.reject = {"gone@example.test"}
    message = queue("gone@example.test", alias=alias)
    process_due_jobs(options=opts)
    job = job_for(message)
    assert job.state == DeliveryJob.State.BOUNCED and job.finished_at is not None
    [bounce] = Bounce.objects.all()
    assert (bounce.alias, bounce.recipient, bounce.source) == (
        alias, "gone@example.test", Bounce.Source.DELIVERY)
    assert "550 5.1.1" in bounce.reason and "mx1.example.test said" in bounce.reason
    message.refresh_from_db()
    assert message.content is None


def test_temporary_failures_past_the_queue_lifetime_bounce(
        alias: Alias, dns_server: DnsServer, sink: SmtpSink, opts: DeliveryOptions) -> None:
    sink.tempfail_first = 10
    message = queue("owner@example.test", alias=alias)
    DeliveryJob.objects.filter(message=message).update(
        expires_at=timezone.now() - timedelta(seconds=1))
    process_due_jobs(options=opts)
    job = job_for(message)
    assert job.state == DeliveryJob.State.BOUNCED
    [bounce] = Bounce.objects.all()
    assert bounce.reason.startswith("gave up after 1 attempts") and "451" in bounce.reason


def test_the_last_retry_happens_at_the_end_of_the_lifetime(
        db: None, dns_server: DnsServer, sink: SmtpSink, opts: DeliveryOptions) -> None:
    sink.tempfail_first = 10
    message = queue("owner@example.test")
    soon = timezone.now() + timedelta(seconds=10)
    DeliveryJob.objects.filter(message=message).update(expires_at=soon)
    process_due_jobs(options=opts)
    job = job_for(message)
    assert job.state == DeliveryJob.State.QUEUED and job.next_attempt_at == soon


def test_null_mx_bounces(alias: Alias, dns_server: DnsServer, opts: DeliveryOptions) -> None:
    dns_server.add("nomail.test", "MX", "0 .")
    message = queue("someone@nomail.test", alias=alias)
    process_due_jobs(options=opts)
    assert job_for(message).state == DeliveryJob.State.BOUNCED
    assert "5.1.10" in Bounce.objects.get().reason


def test_content_is_kept_until_every_job_is_finished(
        db: None, dns_server: DnsServer, sink: SmtpSink, opts: DeliveryOptions) -> None:
    sink.tempfail_first = 1  # the first RCPT of the transaction is greylisted
    message = queue("first@example.test", "second@example.test")
    process_due_jobs(options=opts)
    first, second = job_for(message, "first@example.test"), job_for(message, "second@example.test")
    assert (first.state, second.state) == (DeliveryJob.State.QUEUED, DeliveryJob.State.DELIVERED)
    message.refresh_from_db()
    assert message.content is not None
    make_due(first)
    process_due_jobs(options=opts)
    message.refresh_from_db()
    assert message.content is None
    assert [m.rcpt_tos for m in sink.messages] == [["second@example.test"],
                                                   ["first@example.test"]]


# --- leases and crashes -----------------------------------------------------------------------


def test_claims_never_overlap(db: None) -> None:
    queue("a@example.test", "b@example.test", "c@example.test")
    first = claim_jobs("worker-1", 2)
    second = claim_jobs("worker-2", 10)
    assert len(first) == 2 and len(second) == 1
    assert {job.id for job in first}.isdisjoint(job.id for job in second)
    assert claim_jobs("worker-3", 10) == []
    assert release_leases("worker-1") == 2
    assert len(claim_jobs("worker-3", 10, lease=timedelta(seconds=30))) == 2
    assert renew_leases("worker-3", timedelta(minutes=10)) == 2
    renewed = DeliveryJob.objects.filter(leased_by="worker-3")
    assert all(job.lease_expires_at > timezone.now() + timedelta(minutes=9) for job in renewed)


def test_a_job_whose_worker_died_is_claimed_again_once_the_lease_expires(
        db: None, dns_server: DnsServer, sink: SmtpSink, opts: DeliveryOptions) -> None:
    message = queue("owner@example.test")
    leased = DeliveryJob.objects.filter(message=message)
    leased.update(leased_by="dead-worker", lease_expires_at=timezone.now() + timedelta(minutes=5))
    assert process_due_jobs(options=opts) == 0
    leased.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert process_due_jobs(options=opts) == 1
    job = job_for(message)
    assert job.state == DeliveryJob.State.DELIVERED
    assert job.crashes == 1  # the lost lease counts against the job
    assert len(sink.messages) == 1


def test_a_job_that_keeps_killing_workers_is_set_aside(
        alias: Alias, dns_server: DnsServer, sink: SmtpSink, opts: DeliveryOptions) -> None:
    message = queue("owner@example.test", alias=alias)
    DeliveryJob.objects.filter(message=message).update(
        leased_by="dead-worker", lease_expires_at=timezone.now() - timedelta(seconds=1),
        crashes=MAX_CRASHES - 1)
    process_due_jobs(options=opts)
    assert job_for(message).state == DeliveryJob.State.BOUNCED
    assert "crashed" in Bounce.objects.get(alias=alias).reason
    assert not sink.messages
    message.refresh_from_db()
    assert message.content is None


def test_an_unexpected_error_keeps_the_job_for_later(
        monkeypatch: pytest.MonkeyPatch, db: None, dns_server: DnsServer, sink: SmtpSink,
        opts: DeliveryOptions) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(deliver_module.Deliverer, "deliver", broken)
    message = queue("owner@example.test")
    process_due_jobs(options=opts)
    job = job_for(message)
    assert job.state == DeliveryJob.State.QUEUED
    assert job.crashes == 1 and job.last_error == "internal error: RuntimeError: boom"
    assert job.next_attempt_at > timezone.now()
    assert (job.leased_by, job.lease_expires_at) == ("", None)
    message.refresh_from_db()
    assert message.content is not None


# --- local mode and production ----------------------------------------------------------------


def test_local_mode_keeps_mail_with_nowhere_to_go_in_the_local_outbox(
        db: None, dns_server: DnsServer, opts: DeliveryOptions) -> None:
    message = queue("someone@nowhere.test", kind=QueuedMessage.Kind.SYSTEM,
                    mail_from="noreply@alias.test")
    assert process_due_jobs(options=opts) == 1
    [kept] = LocalOutboxMessage.objects.all()
    assert (kept.mail_from, kept.recipient) == ("noreply@alias.test", "someone@nowhere.test")
    assert kept.subject == "Grüße from the shop"
    assert kept.content.startswith(b"DKIM-Signature:") and kept.content.endswith(MESSAGE)
    job = job_for(message)
    assert job.state == DeliveryJob.State.DELIVERED and job.delivered_to == "local outbox"
    message.refresh_from_db()
    assert message.content is None


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"MODE": "production", "DOMAINS": "alias.example",
                        "PUBLIC_URL": "https://alias.example", "TLS_CERT": "/cert.pem",
                        "TLS_KEY": "/key.pem", "SECRET_KEY": "s" * 40}.items():
        monkeypatch.setenv(f"MAILCLOAK_{name}", value)
    mailcloak_settings.reset()
    create_keys(key_directory())  # production never creates keys by itself


def test_production_never_uses_the_local_outbox(
        production: None, db: None, dns_server: DnsServer, opts: DeliveryOptions) -> None:
    dns_server.fail("broken.test")
    message = queue("someone@nowhere.test", "someone@broken.test",
                    kind=QueuedMessage.Kind.SYSTEM, mail_from="noreply@alias.example")
    assert process_due_jobs(options=opts) == 2
    assert not LocalOutboxMessage.objects.exists()
    assert job_for(message, "someone@nowhere.test").state == DeliveryJob.State.BOUNCED
    retried = job_for(message, "someone@broken.test")
    assert retried.state == DeliveryJob.State.QUEUED and "4.4.3" in retried.last_error


# --- the long-running worker ------------------------------------------------------------------


@contextlib.contextmanager
def running_worker(opts: DeliveryOptions, worker_id: str) -> Iterator[threading.Thread]:
    """`run_worker` on an event loop in a thread of its own, stopped on the way out."""
    started = threading.Event()
    control: dict[str, object] = {}

    def serve() -> None:
        async def main() -> None:
            stop = asyncio.Event()
            control.update(loop=asyncio.get_running_loop(), stop=stop)
            started.set()
            await run_worker(stop, worker_id=worker_id, options=opts)

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield thread
    finally:
        loop, stop = control["loop"], control["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop) and isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_run_worker_delivers_queued_mail_until_stopped(
        dns_server: DnsServer, sink: SmtpSink, opts: DeliveryOptions) -> None:
    with running_worker(opts, "test-worker") as thread:
        message = queue("owner@example.test")
        wake()
        assert sink.wait_for(lambda s: len(s.messages) == 1, timeout=10)
        delivered = DeliveryJob.objects.filter(message=message, state="delivered")
        assert sink.wait_for(lambda _: delivered.exists(), timeout=10)
    assert not thread.is_alive()
    assert job_for(message).delivered_to.startswith("mx1.example.test")


@pytest.mark.django_db(transaction=True)
def test_jobs_that_arrive_after_a_claim_emptied_the_queue_are_claimed_together(
        monkeypatch: pytest.MonkeyPatch, dns_server: DnsServer, sink: SmtpSink,
        opts: DeliveryOptions) -> None:
    """A claim per arriving job would cost a write transaction each: after a claim that took
    everything due, the worker lets the next jobs gather (CLAIM_GATHER, long here)."""
    monkeypatch.setattr(worker, "CLAIM_GATHER", 1.5)
    claimed: list[int] = []

    def counting_claim(*args: Any) -> list[Delivery]:
        deliveries = claim_deliveries(*args)
        if deliveries:
            claimed.append(sum(len(delivery.job_ids) for delivery in deliveries))
        return deliveries

    monkeypatch.setattr(worker, "claim_deliveries", counting_claim)
    with running_worker(opts, "gathering-worker"):
        queue("first@example.test")
        wake()
        assert sink.wait_for(lambda s: len(s.messages) == 1, timeout=10)
        for number in range(3):  # while the worker gathers: wakes do not cut it short
            queue(f"later{number}@example.test")
            wake()
        assert sink.wait_for(lambda s: len(s.messages) == 4, timeout=10)
    assert claimed == [1, 3]
