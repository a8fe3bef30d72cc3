"""The whole forwarding path on loopback with real servers.

A client sends to an alias on Mailcloak's SMTP port; the delivery worker looks up the mailbox
domain's MX in a real DNS server on loopback, and a real aiosmtpd server on 127.0.0.3 plays the
recipient's MX. The delivered bytes are checked: rewritten headers, preserved threading, DKIM
signatures (RSA and Ed25519) that verify against the records `mailcloak dns` prints, and the
VERP envelope sender.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
import threading
import time
from collections.abc import Callable, Iterator

import dkim
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias, Contact
from mailcloak.mail import dns as mail_dns
from mailcloak.mail.deliver import DeliveryOptions
from mailcloak.mail.dnsrecords import dns_command
from mailcloak.mail.models import DeliveryJob, QueuedMessage
from mailcloak.mail.smtpd import start_smtp_server
from mailcloak.mail.verp import parse_bounce_address
from mailcloak.mail.worker import run_worker, wake
from tests.support.dns_server import DnsServer
from tests.support.sink import SmtpSink

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("lenient_spam_thresholds")]

INCOMING = (
    b"From: Jane Doe <jane@example.org>\r\n"
    b"To: Shop <{alias}>\r\n"
    b"Cc: friend@example.net\r\n"
    b"Subject: Your order =?utf-8?q?caf=C3=A9?=\r\n"
    b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <order-42@example.org>\r\n"
    b"In-Reply-To: <order-41@example.org>\r\n"
    b"References: <order-40@example.org> <order-41@example.org>\r\n"
    b"List-Unsubscribe: <https://example.org/unsub?u=1>, <mailto:unsub@example.org>\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; b=AAAA; bh=BBBB;\r\n"
    b"Return-Path: <bounces@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Your order has shipped. Gr\xc3\xbc\xc3\x9fe!\r\n"
)


def eventually(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def publish(server: DnsServer, zone_text: str) -> None:
    """Serve the records exactly as `mailcloak dns` prints them."""
    for line in zone_text.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        name, _ttl, _cls, rdtype, value = line.split(None, 4)
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), value)
        if rdtype == "TXT":
            server.add(name, rdtype, tuple(rdata.strings))  # type: ignore[attr-defined]
        else:
            server.add(name, rdtype, value)


class Mailcloak:
    """The SMTP server and a delivery worker running in a background event loop."""

    def __init__(self, mx_port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.mx_port = mx_port

    def __enter__(self) -> Mailcloak:
        self.thread.start()
        config = mailcloak_settings.get()
        self.server = asyncio.run_coroutine_threadsafe(
            start_smtp_server(config, host="127.0.0.1", port=0), self.loop).result(30)
        self.worker = asyncio.run_coroutine_threadsafe(
            run_worker(self.stop, options=DeliveryOptions(mx_port=self.mx_port)), self.loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.worker.result(30)
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def mail_world(user: User) -> Iterator[tuple[Mailcloak, SmtpSink, DnsServer]]:
    with SmtpSink("127.0.0.3") as sink, DnsServer() as dns_server:
        dns_server.add("mailbox.test", "MX", "10 mx.mailbox.test.")
        dns_server.add("mx.mailbox.test", "A", "127.0.0.3")
        publish(dns_server, dns_command(["127.0.0.1"]))
        with mail_dns.use_resolver(dns_server.resolver()), Mailcloak(sink.port) as running:
            yield running, sink, dns_server


def send(port: int, alias: Alias, data: bytes, mail_from: str = "bounces@example.org") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(mail_from, [alias.address], data.replace(b"{alias}",
                                                                 alias.address.encode()))


def test_forwarded_message_is_rewritten_signed_and_threaded(mail_world, alias: Alias) -> None:
    running, sink, dns_server = mail_world
    send(running.server.port, alias, INCOMING)
    assert sink.wait_for(lambda s: len(s.messages) == 1, timeout=15), "nothing delivered"
    delivered = sink.messages[0]

    assert delivered.rcpt_tos == ["owner@mailbox.test"]
    bounce = parse_bounce_address(delivered.mail_from)
    assert bounce is not None and bounce.alias_id == alias.id and bounce.domain == "alias.test"

    message = email.message_from_bytes(delivered.content, policy=email.policy.default)
    contact = Contact.objects.get(alias=alias, email="jane@example.org")
    assert message["From"].addresses[0].addr_spec == contact.reverse_address
    assert "Jane Doe" in message["From"].addresses[0].display_name
    for header in ("Message-ID", "In-Reply-To", "References", "Date"):
        assert message[header] is not None and message[header] in INCOMING.decode(), header
    friend = Contact.objects.get(alias=alias, email="friend@example.net")
    assert message["Cc"].addresses[0].addr_spec == friend.reverse_address  # for reply-all
    assert "café" in message["Subject"]
    unsubscribe = message["List-Unsubscribe"]
    assert "https://example.org/unsub?u=1" in unsubscribe and "unsub@example.org" not in unsubscribe
    assert b"Return-Path" not in delivered.content
    # The sender's own signature is gone (our rewrite broke it); what it said is kept in our
    # Authentication-Results, and an ARC seal vouches for that.
    assert all("d=alias.test;" in str(sig) for sig in message.get_all("DKIM-Signature"))
    assert "header.d=example.org" in message["Authentication-Results"]
    assert message["ARC-Seal"] is not None and message["X-Mailcloak-Spam-Score"] is not None
    assert delivered.content.endswith(b"Your order has shipped. Gr\xc3\xbc\xc3\x9fe!\r\n")

    signatures = message.get_all("DKIM-Signature")
    assert len(signatures) == 2
    assert {"a=rsa-sha256", "a=ed25519-sha256"} <= {
        part.strip() for sig in signatures for part in str(sig).split(";")}
    for index in range(2):
        verifier = dkim.DKIM(delivered.content)
        assert verifier.verify(idx=index, dnsfunc=mail_dns.dkim_dnsfunc), f"signature {index}"
    assert any(name.startswith("mcr1._domainkey") or name.startswith("mce1._domainkey")
               for name, _type in dns_server.queries)

    alias.refresh_from_db()
    assert alias.forwarded_count == 1
    # Forwarded content is not kept once delivered (the worker records it just after the 250).
    assert eventually(lambda: DeliveryJob.objects.get().state == DeliveryJob.State.DELIVERED)
    assert QueuedMessage.objects.get().content is None


def test_temporary_failure_is_retried_then_delivered(mail_world, alias: Alias) -> None:
    running, sink, _dns = mail_world
    sink.tempfail_first = 1
    send(running.server.port, alias, INCOMING)
    assert sink.wait_for(lambda s: s.rcpt_replies[:1] == [("owner@mailbox.test", 451)], 15)
    assert eventually(lambda: DeliveryJob.objects.get().attempts == 1)
    job = DeliveryJob.objects.get()
    assert job.state == DeliveryJob.State.QUEUED and "451" in job.last_error
    assert job.next_attempt_at > timezone.now()  # backing off
    # Time travel instead of sleeping through the backoff.
    DeliveryJob.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
    wake()
    assert sink.wait_for(lambda s: len(s.messages) == 1, timeout=15)
    assert eventually(lambda: DeliveryJob.objects.get().state == DeliveryJob.State.DELIVERED)
