"""The reply rewrite on replies shaped like real mail clients (tests/data/replies).

Each fixture is a reply as Gmail, Outlook, Apple Mail, Thunderbird, K-9 or mutt writes it:
HTML and text, quoted-printable, base64 and 8-bit, UTF-8 and ISO-8859-1, non-ASCII names,
the owner's address in quoted "wrote:" lines and signatures. What leaves must not contain the
owner's address, mailbox domain or name in its bytes nor in any decoded part.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailcloak.aliases.models import Alias, Contact
from mailcloak.mail.outbound import prepare_reply
from mailcloak.mail.sending import owner_identity
from mailcloak.mail.verp import parse_bounce_address

REPLIES = Path(__file__).parent / "data" / "replies"
FIXTURES = sorted(path.name for path in REPLIES.glob("*.eml"))
REVERSE = "r.k3v9x2q7m1p0a8zt@alias.test"
LEAKS = ("owner@mailbox.test", "mailbox.test", "ownerby", "198.51.100.77", "mozilla",
         "apple mail", "k-9", "mutt", "household", "elsewhere.example")

pytestmark = pytest.mark.django_db


@pytest.fixture
def contact(alias: Alias) -> Contact:
    Alias.objects.filter(pk=alias.pk).update(display_name="Shop Me")
    alias.refresh_from_db()
    return Contact.objects.create(alias=alias, email="jane@example.org", display_name="Jane Doe",
                                  reverse_address=REVERSE)


def rewrite(name: str, contact: Contact) -> bytes:
    raw = (REPLIES / name).read_bytes()
    alias = contact.alias
    prepared = prepare_reply(raw, alias=alias, contacts=[contact], queue_id="Q1",
                             owner=owner_identity(alias, raw))
    assert prepared.recipients == ("jane@example.org",)
    bounce = parse_bounce_address(prepared.mail_from)
    assert bounce is not None and bounce.alias_id == alias.pk
    return prepared.content


def decoded_text(content: bytes) -> str:
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    texts = [str(value) for value in message.values()]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            texts.append(part.get_content())
    return "\n".join(texts).lower()


@pytest.mark.parametrize("name", FIXTURES)
def test_nothing_of_the_owner_leaves(name: str, contact: Contact) -> None:
    content = rewrite(name, contact)
    text = decoded_text(content)
    for leak in LEAKS:
        assert leak.encode() not in content.lower(), leak
        assert leak not in text, leak
    assert "tuesday" in text  # the owner's own words are kept


@pytest.mark.parametrize("name", FIXTURES)
def test_the_header_names_only_the_alias_and_the_contact(name: str, contact: Contact) -> None:
    message = email.message_from_bytes(rewrite(name, contact), policy=email.policy.default)
    assert str(message["From"]) == f"Shop Me <{contact.alias.address}>"
    assert str(message["To"]) == "Jane Doe <jane@example.org>"
    assert message["Cc"] is None  # a Cc that is no reverse alias is not echoed
    assert message["In-Reply-To"] == "<order-42@example.org>"
    assert "order-42@example.org" in message["References"]
    assert message["Message-ID"].endswith("@alias.test>")
    for gone in ("Received", "X-Mailer", "User-Agent", "X-Originating-IP", "DKIM-Signature",
                 "ARC-Seal", "Authentication-Results", "Sender", "Return-Path", "Autocrypt",
                 "Disposition-Notification-To", "Return-Receipt-To", "Mail-Followup-To"):
        assert message[gone] is None, gone


def test_thread_ids_made_by_the_owners_provider_are_dropped(contact: Contact) -> None:
    message = email.message_from_bytes(rewrite("gmail.eml", contact),
                                       policy=email.policy.default)
    assert message["References"] == "<order-42@example.org>"


def test_unchanged_parts_and_attachments_stay_byte_for_byte(contact: Contact) -> None:
    gmail = (REPLIES / "gmail.eml").read_bytes()
    attachment = gmail[gmail.index(b"Content-Type: application/pdf"):gmail.rindex(b"--0000")]
    assert attachment in rewrite("gmail.eml", contact)
    apple = (REPLIES / "apple_mail.eml").read_bytes()
    start = apple.index(b"Content-Transfer-Encoding: quoted-printable")
    plain_part = apple[start:apple.index(b"--Apple-Mail", start)]
    assert b"ownerby" not in plain_part.lower()  # nothing to change in this part...
    assert plain_part in rewrite("apple_mail.eml", contact)  # ...so it is not re-encoded


def test_changed_parts_keep_their_transfer_encoding_and_charset(contact: Contact) -> None:
    message = email.message_from_bytes(rewrite("k9.eml", contact), policy=email.policy.default)
    parts = [part for part in message.walk() if part.get_content_maintype() == "text"]
    assert [(p["Content-Transfer-Encoding"], p.get_content_charset()) for p in parts] == [
        ("quoted-printable", "iso-8859-1"), ("base64", "iso-8859-1")]
    assert "Shop Me" in parts[0].get_content()


def test_reverse_aliases_in_cc_become_their_contacts(contact: Contact) -> None:
    other = Contact.objects.create(alias=contact.alias, email="bob@example.net", display_name="Bob",
                                   reverse_address="r.other0000000000@alias.test")
    raw = (REPLIES / "mutt.eml").read_bytes().replace(
        b"Cc: Someone Else <someone@elsewhere.example>",
        b"Cc: Someone Else <someone@elsewhere.example>, \"Bob via Mailcloak\" <"
        + other.reverse_address.encode() + b">")
    prepared = prepare_reply(raw, alias=contact.alias, contacts=[contact, other],
                             queue_id="Q2", owner=owner_identity(contact.alias, raw))
    message = email.message_from_bytes(prepared.content, policy=email.policy.default)
    assert str(message["Cc"]) == "Bob <bob@example.net>"
    assert prepared.recipients == ("jane@example.org", "bob@example.net")
