"""Body scrubbing of the owner's address and name, part by part, in every encoding."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from mailcloak.mail.headers import split_message
from mailcloak.mail.scrub import Identity, scrub_body

OWNER = Identity(addresses=("owner@mailbox.test",), names=("Zoë Ownerby",))
ALIAS = Identity(addresses=("shop@alias.test",), names=("Shop & Co",))


def scrubbed(raw: bytes, owner: Identity = OWNER, alias: Identity = ALIAS) -> tuple[bytes, bytes]:
    """(the body as it arrived, the body scrubbed)."""
    message = split_message(raw)
    return message.body, scrub_body(message.fields, message.body, owner, alias)


def text_of(raw_header: bytes, body: bytes) -> str:
    message = email.message_from_bytes(raw_header + b"\r\n" + body, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return "\n".join(part.get_content() for part in message.walk()
                     if part.get_content_maintype() == "text")


QP_HEADER = (b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
             b"Content-Transfer-Encoding: quoted-printable\r\n")


def test_an_address_split_by_a_soft_line_break_is_found() -> None:
    body = b"Reach me at owner@mail=\r\nbox.test or Zo=C3=AB Ownerby.\r\n"
    before, after = scrubbed(QP_HEADER + b"\r\n" + body)
    assert before == body
    assert text_of(QP_HEADER, after) == "Reach me at shop@alias.test or Shop & Co.\r\n"
    assert b"Content-Transfer-Encoding" not in after  # the header block is not repeated


def test_a_body_without_the_owner_is_returned_untouched() -> None:
    raw = QP_HEADER + b"\r\nNothing to see =\r\nhere.\r\n"
    before, after = scrubbed(raw)
    assert after is before


def test_html_gets_an_escaped_replacement_and_entity_spellings_are_found() -> None:
    header = (b"Content-Type: text/html; charset=us-ascii\r\n"
              b"Content-Transfer-Encoding: 7bit\r\n")
    body = (b"<p>Zo&euml; Ownerby &lt;owner&#64;mailbox.test&gt;, "
            b"Ownerby, Zo&#235;</p>\r\n")
    _before, after = scrubbed(header + b"\r\n" + body)
    assert after == b"<p>Shop &amp; Co &lt;shop@alias.test&gt;, Shop &amp; Co</p>\r\n"


def test_a_replacement_that_does_not_fit_the_charset_widens_it_to_utf8() -> None:
    header = (b"Content-Type: text/plain; charset=us-ascii\r\n"
              b"Content-Transfer-Encoding: base64\r\n")
    body = b"U2VudCBieSBvd25lckBtYWlsYm94LnRlc3Q=\r\n"  # "Sent by owner@mailbox.test"
    alias = Identity(addresses=("shop@alias.test",), names=("Café Shop",))
    owner = Identity(addresses=("owner@mailbox.test",))
    _before, after = scrubbed(header + b"\r\n" + body, owner, alias)
    assert text_of(b"Content-Type: text/plain; charset=us-ascii\r\n"
                   b"Content-Transfer-Encoding: base64\r\n", after) == "Sent by shop@alias.test"


def test_eight_bit_text_in_a_latin1_part_is_scrubbed_in_place() -> None:
    header = (b"Content-Type: text/plain; charset=iso-8859-1\r\n"
              b"Content-Transfer-Encoding: 8bit\r\n")
    body = b"Gr\xfc\xdfe, Zo\xeb Ownerby\r\n"
    _before, after = scrubbed(header + b"\r\n" + body)
    assert after == b"Gr\xfc\xdfe, Shop & Co\r\n"


def test_short_names_are_not_replaced_in_ordinary_words() -> None:
    owner = Identity(addresses=("owner@mailbox.test",), names=("Al",))
    raw = b"Content-Type: text/plain\r\n\r\nAlso, all is well.\r\n"
    before, after = scrubbed(raw, owner)
    assert after == before


ATTACHED = (
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nSee the attached mail.\r\n"
    b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Received: from [198.51.100.7] by smtp.mailbox.test\r\n"
    b"Delivered-To: owner@mailbox.test\r\n"
    b"X-Originating-IP: 198.51.100.7\r\n"
    b"DKIM-Signature: v=1; d=mailbox.test; s=s1; b=abc\r\n"
    b"From: =?utf-8?q?Zo=C3=AB_Ownerby?= <owner@mailbox.test>\r\n"
    b"To: Shop <shop@example.org>\r\n"
    b"Subject: order for Zo\xc3\xab Ownerby\r\n"
    b"Message-ID: <abc@mailbox.test>\r\n"
    b"In-Reply-To: <xyz@example.org>\r\n\r\n"
    b"Hello, this is owner@mailbox.test.\r\n"
    b"--b--\r\n"
)


def test_an_attached_message_loses_its_trace_fields_and_the_owner_in_its_header() -> None:
    before, after = scrubbed(ATTACHED)
    assert after != before
    for leak in (b"owner@", b"mailbox.test", b"198.51.100.7", b"Ownerby", b"Zo=C3=AB",
                 b"Received:", b"Delivered-To", b"DKIM-Signature"):
        assert leak not in after, leak
    message = email.message_from_bytes(ATTACHED.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + after,
                                       policy=email.policy.default)
    inner = next(p for p in message.walk() if p.get_content_type() == "message/rfc822")
    attached = inner.get_payload(0)
    assert b"From: Shop & Co <shop@alias.test>\r\n" in after
    assert str(attached["To"]) == "Shop <shop@example.org>"  # other people are left alone
    assert str(attached["Subject"]) == "order for Shop & Co"
    assert attached["Message-ID"] is None  # made by the owner's provider: it names it
    assert str(attached["In-Reply-To"]) == "<xyz@example.org>"
    assert "Hello, this is shop@alias.test." in attached.get_content()
