"""Bounces arriving at our VERP addresses: RFC 3464 reports, home-grown prose, and mail that
only looks like a bounce."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import delete_alias
from mailcloak.mail.bounces import Failure, permanent_failures, record_dsn
from mailcloak.mail.models import Bounce
from mailcloak.mail.verp import make_bounce_address


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def dsn(*blocks: str, subject: str = "Undelivered Mail Returned to Sender") -> bytes:
    """A Postfix-style RFC 3464 report with the given per-recipient blocks."""
    per_recipient = "\n".join(blocks)
    return crlf(f"""From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
To: bounce@alias.test
Subject: {subject}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.com. Version 3.5.1 here.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
Arrival-Date: Tue,  3 Mar 2026 10:00:00 +0000

{per_recipient}
--B1
Content-Type: message/rfc822

From: owner@alias.test
To: someone@example.org
Subject: the original, which says 5.1.1 in its text

Status: 5.9.9 appears here too and must be ignored.

--B1--
""")


FAILED = """Final-Recipient: rfc822; Owner@Mailbox.test
Original-Recipient: rfc822;owner@mailbox.test
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.mailbox.test
Diagnostic-Code: smtp; 550 5.1.1 <owner@mailbox.test>: Recipient address
    rejected: User unknown in virtual mailbox table
"""
DELAYED = """Final-Recipient: rfc822; late@mailbox.test
Action: delayed
Status: 4.4.1
Diagnostic-Code: smtp; 451 4.4.1 try again later
"""
GAVE_UP = """Final-Recipient: rfc822; gone@mailbox.test
Action: failed
Status: 4.4.7
Diagnostic-Code: X-Postfix; delivery temporarily suspended: connection timed out
"""
DELIVERED = """Final-Recipient: rfc822; fine@mailbox.test
Action: delivered
Status: 2.0.0
"""


@pytest.fixture
def bounce_address(alias: Alias) -> str:
    return make_bounce_address(alias.domain.name, alias_id=alias.pk, queue_id="A1B2C3D4E5F60718")


def test_standard_dsn_records_a_bounce_for_the_alias(alias: Alias, bounce_address: str) -> None:
    record_dsn(dsn(FAILED), bounce_address)
    bounce = Bounce.objects.get()
    assert bounce.alias == alias
    assert bounce.recipient == "owner@mailbox.test"
    assert bounce.source == Bounce.Source.DSN
    assert bounce.reason == ("550 5.1.1 <owner@mailbox.test>: Recipient address rejected: "
                             "User unknown in virtual mailbox table")


def test_only_permanent_failures_of_a_report_are_recorded(alias: Alias,
                                                          bounce_address: str) -> None:
    record_dsn(dsn(DELAYED, FAILED, DELIVERED), bounce_address)
    assert list(Bounce.objects.values_list("recipient", flat=True)) == ["owner@mailbox.test"]


@pytest.mark.parametrize("blocks", [(DELAYED,), (DELIVERED,), (DELAYED, DELIVERED)])
def test_delay_and_success_notices_record_nothing(alias: Alias, bounce_address: str,
                                                  blocks: tuple[str, ...]) -> None:
    record_dsn(dsn(*blocks, subject="Delayed Mail (still being retried)"), bounce_address)
    assert not Bounce.objects.exists()


def test_a_remote_system_giving_up_is_final_even_with_a_4xx_status() -> None:
    assert permanent_failures(dsn(GAVE_UP)) == [Failure(
        "gone@mailbox.test", "4.4.7",
        "4.4.7 delivery temporarily suspended: connection timed out")]


def test_report_without_recipient_falls_back_to_the_alias_mailbox(alias: Alias,
                                                                  bounce_address: str) -> None:
    record_dsn(dsn("Action: failed\nStatus: 5.2.2\n"), bounce_address)
    bounce = Bounce.objects.get()
    assert (bounce.recipient, bounce.reason) == ("owner@mailbox.test", "5.2.2 delivery failed")


QMAIL = crlf("""From: MAILER-DAEMON@mail.example.net
To: bounce@alias.test
Subject: failure notice

Hi. This is the qmail-send program at mail.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<owner@mailbox.test>:
192.0.2.7 does not like recipient.
Remote host said: 550 5.7.1 <owner@mailbox.test>... Mailbox disabled (#5.7.1)
Giving up on 192.0.2.7.

--- Below this line is a copy of the message.
""")

EXIM = crlf("""From: Mail Delivery System <Mailer-Daemon@exim.example.org>
To: bounce@alias.test
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: Full@Mailbox.test
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

""") + crlf(base64.encodebytes(
    "This message was created automatically by mail delivery software.\n\n"
    "A message that you sent could not be delivered to one or more of its recipients.\n\n"
    "  full@mailbox.test\n    host mx.mailbox.test [192.0.2.9]\n"
    "    SMTP error from remote mail server after RCPT TO:<full@mailbox.test>:\n"
    "    552 5.2.2 Mailbox full: «quota exceeded»\n".encode()).decode())


def test_home_grown_bounces_are_read_from_their_text() -> None:
    assert permanent_failures(QMAIL) == [Failure(
        "owner@mailbox.test", "5.7.1",
        "Remote host said: 550 5.7.1 <owner@mailbox.test>... Mailbox disabled (#5.7.1)")]
    assert permanent_failures(EXIM) == [Failure(
        "full@mailbox.test", "5.2.2", "552 5.2.2 Mailbox full: «quota exceeded»")]


def test_a_home_grown_delay_notice_records_nothing() -> None:
    delayed = QMAIL.replace(b"550 5.7.1", b"451 4.3.0").replace(b"(#5.7.1)", b"(#4.3.0)")
    assert permanent_failures(delayed) == []


AUTO_REPLY = crlf("""From: Someone <someone@mailbox.test>
To: bounce@alias.test
Subject: Out of office
Auto-Submitted: auto-replied

I am away until 5.1.20 and will answer after. Error 5.1.1 is not a thing here.
""")


@pytest.mark.parametrize("raw", [
    AUTO_REPLY,
    b"",
    bytes(range(256)) * 8,
    b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nbroken",
    crlf("Content-Type: message/delivery-status\n\nAction: failed\n"),
])
def test_mail_that_is_no_readable_bounce_records_nothing(alias: Alias, bounce_address: str,
                                                         raw: bytes) -> None:
    record_dsn(raw, bounce_address)
    assert list(Bounce.objects.values_list("reason", flat=True)) == (
        ["5.0.0 delivery failed"] if raw.startswith(b"Content-Type: message/") else [])


@pytest.mark.parametrize("address", [
    "bounce+a1b2c3d4e5f60718.1.aaaaaaaaaaaaaaaa@alias.test",
    "owner@alias.test",
    "",
])
def test_forged_or_foreign_bounce_addresses_record_nothing(alias: Alias, address: str) -> None:
    record_dsn(dsn(FAILED), address)
    assert not Bounce.objects.exists()


def test_bounces_for_a_deleted_alias_are_dropped(alias: Alias, bounce_address: str) -> None:
    delete_alias(alias)
    record_dsn(dsn(FAILED), bounce_address)
    assert not Bounce.objects.exists()


@pytest.mark.django_db
def test_bounces_of_system_mail_are_recorded_without_alias() -> None:
    address = make_bounce_address("alias.test", alias_id=None, queue_id="ABCDEF")
    record_dsn(dsn(FAILED), address)
    bounce = Bounce.objects.get()
    assert (bounce.alias, bounce.recipient) == (None, "owner@mailbox.test")
    record_dsn(dsn("Action: failed\nStatus: 5.0.0\n"), address)  # nobody to attribute it to
    assert Bounce.objects.count() == 1


@pytest.mark.parametrize(("content_type", "text", "recipient"), [
    ("text/plain", "gone.user@example.org: 550 5.1.1 no such user.", "gone.user@example.org"),
    ("text/plain", "550 5.1.1 Recipient rejected.", ""),
    ("text/html", "<p>Delivery to <b>x@example.org</b> failed:</p><p>550 5.4.1 denied</p>",
     "x@example.org"),
])
def test_recipient_and_status_from_a_single_line(content_type: str, text: str,
                                                 recipient: str) -> None:
    raw = crlf(f"From: postmaster@example.org\nSubject: Delivery failure\n"
               f"Content-Type: {content_type}\n\n{text}\n")
    [failure] = permanent_failures(raw)
    assert failure.recipient == recipient
    assert failure.status in text


PIECES = [
    b"Content-Type: multipart/report; boundary=b\r\n", b"Content-Type: message/delivery-status\r\n",
    b"Content-Type: text/plain; charset*=''\r\n", b'Content-Type: text/plain; charset="\xff"\r\n',
    b"Content-Type: text/html; charset=idna\r\n", b"Content-Transfer-Encoding: base64\r\n",
    b"--b\r\n", b"--b--\r\n", b"\r\n", b"Action: failed\r\n", b"Status: 5.1.1\r\n",
    b"Final-Recipient: rfc822;\r\n", b"From: MAILER-DAEMON@x\r\n", b"X-Failed-Recipients: ,\r\n",
    b"Diagnostic-Code: smtp; 550 5.1.1 \xff\r\n", b"Content-Type: message/rfc822\r\n", b"\x00",
    b"=?utf-8?b?", b"\xff\xfe", b"550 5.1.1 <a@b.c>\r\n", b"4.4.1\r\n",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_no_input_makes_bounce_parsing_raise(pieces: list[bytes]) -> None:
    for failure in permanent_failures(b"".join(pieces)):
        assert failure.status[0] in "45" and len(failure.reason) <= 500
