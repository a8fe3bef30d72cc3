"""Replies through reverse aliases, end to end on loopback with real servers.

A contact mails the alias, the forwarded copy reaches the owner's mailbox (a sink MX on
127.0.0.3), the owner answers the reverse alias from 127.0.0.1 (which the mailbox domain's
SPF record allows), and the contact's MX (the same sink) receives a reply from the alias:
threaded, DKIM-signed by the alias domain, with no trace of the owner's address, mailbox
domain, IP or mail client. Forged replies are refused and recorded for the owner.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import Mailbox, User
from mailcloak.aliases.models import Alias, Contact
from mailcloak.mail import dns as mail_dns
from mailcloak.mail.dnsrecords import dns_command
from mailcloak.mail.models import QueuedMessage, RefusedReply, SendingPause
from mailcloak.mail.verp import parse_bounce_address
from tests.support.dns_server import DnsServer
from tests.support.sink import SmtpSink
from tests.test_end_to_end import INCOMING, Mailcloak, publish

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("lenient_spam_thresholds")]

OWNER_NAME = "Zoë Ownerby"
CLIENT_IP = "198.51.100.77"

REPLY = (
    "Received: from [" + CLIENT_IP + "] (client.mailbox.test [" + CLIENT_IP + "])\r\n"
    "\tby smtp.mailbox.test with ESMTPSA id abc; Fri, 04 Dec 2026 11:00:00 +0000\r\n"
    "From: =?utf-8?q?Zo=C3=AB_Ownerby?= <owner@mailbox.test>\r\n"
    "To: {to}\r\n"
    "Subject: Re: Your order\r\n"
    "Date: Fri, 04 Dec 2026 11:00:00 +0000\r\n"
    "Message-ID: <CAFoo123@mail.mailbox.test>\r\n"
    "In-Reply-To: <order-42@example.org>\r\n"
    "References: <order-41@example.org> <order-42@example.org>\r\n"
    "X-Mailer: Owner's Mail Client 9.1\r\n"
    "User-Agent: Owner's Mail Client 9.1\r\n"
    "X-Originating-IP: [" + CLIENT_IP + "]\r\n"
    "Disposition-Notification-To: owner@mailbox.test\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Thanks, received it.\r\n"
    "\r\n"
    "-- \r\n"
    "Zoë Ownerby <owner@mailbox.test>\r\n"
).encode()


@pytest.fixture
def world(user: User) -> Iterator[tuple[Mailcloak, SmtpSink, DnsServer]]:
    with SmtpSink("127.0.0.3") as sink, DnsServer() as dns_server:
        for domain in ("mailbox.test", "example.org", "example.net", "other-mailbox.test"):
            dns_server.add(domain, "MX", f"10 mx.{domain}.")
            dns_server.add(f"mx.{domain}", "A", "127.0.0.3")
        dns_server.add("mailbox.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
        dns_server.add("_dmarc.mailbox.test", "TXT", "v=DMARC1; p=reject")
        dns_server.add("other-mailbox.test", "TXT", "v=spf1 -all")
        publish(dns_server, dns_command(["127.0.0.1"]))
        with mail_dns.use_resolver(dns_server.resolver()), Mailcloak(sink.port) as running:
            yield running, sink, dns_server


def forward_first(running: Mailcloak, sink: SmtpSink, alias: Alias) -> Contact:
    with smtplib.SMTP("127.0.0.1", running.server.port, timeout=10) as client:
        client.sendmail("bounces@example.org", [alias.address],
                        INCOMING.replace(b"{alias}", alias.address.encode()))
    assert sink.wait_for(lambda s: len(s.messages) == 1, timeout=15), "nothing forwarded"
    return Contact.objects.get(alias=alias, email="jane@example.org")


def reply(running: Mailcloak, to: str, *, mail_from: str = "owner@mailbox.test",
          data: bytes = REPLY) -> None:
    with smtplib.SMTP("127.0.0.1", running.server.port, timeout=10) as client:
        client.sendmail(mail_from, [to], data.replace(b"{to}", to.encode()))


def test_reply_leaves_from_the_alias_threaded_signed_and_without_trace(world,
                                                                      alias: Alias) -> None:
    running, sink, _dns = world
    Alias.objects.filter(pk=alias.pk).update(display_name="Shopping Me")
    contact = forward_first(running, sink, alias)
    forwarded = email.message_from_bytes(sink.messages[0].content, policy=email.policy.default)
    reply(running, forwarded["From"])  # the owner's client answers the rewritten From

    assert sink.wait_for(lambda s: len(s.messages) == 2, timeout=15), "reply not delivered"
    delivered = sink.messages[1]
    assert delivered.rcpt_tos == ["jane@example.org"]
    bounce = parse_bounce_address(delivered.mail_from)
    assert bounce is not None and bounce.alias_id == alias.pk and bounce.domain == "alias.test"

    message = email.message_from_bytes(delivered.content, policy=email.policy.default)
    assert message["From"].addresses[0].addr_spec == alias.address
    assert message["From"].addresses[0].display_name == "Shopping Me"
    assert message["To"].addresses[0].addr_spec == "jane@example.org"
    assert message["In-Reply-To"] == "<order-42@example.org>"
    assert message["References"] == "<order-41@example.org> <order-42@example.org>"
    assert message["Message-ID"].endswith("@alias.test>")
    for index in range(2):
        assert dkim.DKIM(delivered.content).verify(idx=index, dnsfunc=mail_dns.dkim_dnsfunc)
    assert all("d=alias.test;" in str(sig) for sig in message.get_all("DKIM-Signature"))

    content = delivered.content.lower()
    for trace in (b"owner@", b"mailbox.test", CLIENT_IP.encode(), b"mail client",
                  OWNER_NAME.encode().lower(), b"zo=c3=ab", b"ownerby"):
        assert trace not in content, trace
    assert b"Thanks, received it." in delivered.content
    assert f"Shopping Me <{alias.address}>".encode() in delivered.content

    alias.refresh_from_db()
    contact.refresh_from_db()
    assert alias.replied_count == 1 and contact.replied_count == 1
    assert QueuedMessage.objects.filter(kind=QueuedMessage.Kind.REPLY).count() == 1


def test_reply_from_someone_else_is_refused_at_rcpt(world, alias: Alias,
                                                     other_user: User) -> None:
    running, sink, _dns = world
    contact = forward_first(running, sink, alias)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        reply(running, contact.reverse_address, mail_from="intruder@elsewhere.test")
    code, text = refused.value.recipients[contact.reverse_address]
    assert code == 550 and text.startswith(b"5.7.1")
    attempt = RefusedReply.objects.get(alias=alias)
    assert attempt.mail_from == "intruder@elsewhere.test"


def test_reply_with_the_right_envelope_but_a_foreign_from_is_refused(world,
                                                                     alias: Alias) -> None:
    running, sink, _dns = world
    contact = forward_first(running, sink, alias)
    forged = REPLY.replace(b"<owner@mailbox.test>\r\nTo", b"<boss@example.net>\r\nTo", 1)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        reply(running, contact.reverse_address, data=forged)
    assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.7.1")
    assert RefusedReply.objects.get(alias=alias).reason.startswith("From is not")
    assert not QueuedMessage.objects.filter(kind=QueuedMessage.Kind.REPLY).exists()


def test_reply_failing_spf_and_dkim_for_the_mailbox_domain_is_refused(world, alias: Alias,
                                                                      user: User) -> None:
    running, sink, _dns = world
    Mailbox.objects.create(user=user, email="me@other-mailbox.test", verified_at=timezone.now())
    contact = forward_first(running, sink, alias)
    unauthenticated = REPLY.replace(b"owner@mailbox.test>\r\nTo", b"me@other-mailbox.test>\r\nTo")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        reply(running, contact.reverse_address, mail_from="me@other-mailbox.test",
              data=unauthenticated)
    assert refused.value.smtp_code == 550
    assert "authenticate" in RefusedReply.objects.get(alias=alias).reason
    assert not QueuedMessage.objects.filter(kind=QueuedMessage.Kind.REPLY).exists()


def test_reply_from_an_unverified_mailbox_of_the_owner_is_refused(world, alias: Alias,
                                                                  user: User) -> None:
    running, sink, _dns = world
    Mailbox.objects.create(user=user, email="new@mailbox.test")
    contact = forward_first(running, sink, alias)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        reply(running, contact.reverse_address, mail_from="new@mailbox.test")
    assert RefusedReply.objects.filter(alias=alias).count() == 1


CLIENT_SHAPES = Path(__file__).parent / "data" / "replies"
FIXED_REVERSE = "r.k3v9x2q7m1p0a8zt@alias.test"  # the reverse alias the fixtures answer


@pytest.mark.parametrize("shape", sorted(p.name for p in CLIENT_SHAPES.glob("*.eml")))
def test_client_shaped_replies_arrive_without_the_owner(world, alias: Alias, shape: str) -> None:
    running, sink, _dns = world
    Contact.objects.create(alias=alias, email="jane@example.org", display_name="Jane Doe",
                           reverse_address=FIXED_REVERSE)
    reply(running, FIXED_REVERSE, data=(CLIENT_SHAPES / shape).read_bytes())
    assert sink.wait_for(lambda s: len(s.messages) == 1, timeout=15), "reply not delivered"
    delivered = sink.messages[0]
    assert delivered.rcpt_tos == ["jane@example.org"]
    for trace in (b"owner@mailbox.test", b"mailbox.test", b"ownerby", b"198.51.100.77"):
        assert trace not in delivered.content.lower(), trace
    assert dkim.DKIM(delivered.content).verify(dnsfunc=mail_dns.dkim_dnsfunc)


def test_reply_all_reaches_every_participant_through_the_alias(world, alias: Alias) -> None:
    running, sink, _dns = world
    forward_first(running, sink, alias)
    forwarded = email.message_from_bytes(sink.messages[0].content, policy=email.policy.default)
    jane, friend = forwarded["From"].addresses[0], forwarded["Cc"].addresses[0]
    data = REPLY.replace(b"To: {to}\r\n", f"To: {jane}\r\nCc: {friend}\r\n".encode())
    with smtplib.SMTP("127.0.0.1", running.server.port, timeout=10) as client:
        client.sendmail("owner@mailbox.test", [jane.addr_spec, friend.addr_spec], data)

    assert sink.wait_for(lambda s: len(s.messages) >= 2 and sum(
        len(m.rcpt_tos) for m in s.messages[1:]) == 2, timeout=15), "reply-all not delivered"
    assert sorted(r for m in sink.messages[1:] for r in m.rcpt_tos) == [
        "friend@example.net", "jane@example.org"]
    message = email.message_from_bytes(sink.messages[1].content, policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "jane@example.org"
    assert message["Cc"].addresses[0].addr_spec == "friend@example.net"
    assert b"mailbox.test" not in sink.messages[1].content


def test_a_reply_over_the_sending_limit_waits_and_the_owner_sees_why(
        world, alias: Alias, monkeypatch: pytest.MonkeyPatch) -> None:
    running, sink, _dns = world
    monkeypatch.setenv("MAILCLOAK_SEND_MESSAGES_PER_ALIAS", "1/h")
    monkeypatch.setenv("MAILCLOAK_NEW_ACCOUNT_DAYS", "0")
    mailcloak_settings.reset()
    contact = forward_first(running, sink, alias)
    reply(running, contact.reverse_address)
    with pytest.raises(smtplib.SMTPDataError) as limited:
        reply(running, contact.reverse_address)
    assert limited.value.smtp_code == 452
    assert limited.value.smtp_error == (
        b"4.7.1 Sending limit reached (1 messages per hour for this alias); try again later")
    refusal = RefusedReply.objects.get(alias=alias)
    assert refusal.kind == RefusedReply.Kind.RATE_LIMITED
    assert QueuedMessage.objects.filter(kind=QueuedMessage.Kind.REPLY).count() == 1


def test_a_paused_alias_cannot_send(world, alias: Alias) -> None:
    running, sink, _dns = world
    contact = forward_first(running, sink, alias)
    SendingPause.objects.create(user=alias.user, alias=alias, reason="2 of 20 bounced")
    with pytest.raises(smtplib.SMTPDataError) as paused:
        reply(running, contact.reverse_address)
    assert paused.value.smtp_code == 550
    assert paused.value.smtp_error.startswith(b"5.7.1 Sending paused")
    assert RefusedReply.objects.get(alias=alias).kind == RefusedReply.Kind.PAUSED
