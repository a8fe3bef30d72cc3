"""prepare_forward and the contact store behind its reverse addresses."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from email.utils import getaddresses, parsedate_to_datetime

import pytest

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias, Contact, DeletedAlias
from mailcloak.aliases.services import create_alias
from mailcloak.mail import contacts
from mailcloak.mail.contacts import ContactError, contact_for
from mailcloak.mail.forward import UnparseableMessage, prepare_forward
from mailcloak.mail.verp import BounceAddress, parse_bounce_address

QUEUE_ID = "00FF00FF00FF00FF"


def forward(alias: Alias, raw: bytes, envelope_from: str = "env@example.net") -> bytes:
    return prepare_forward(raw, alias=alias, envelope_from=envelope_from,
                           queue_id=QUEUE_ID).content


def header_of(content: bytes) -> str:
    return content.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n ", " ").replace("\r\n", "\n")


def field(content: bytes, name: str) -> list[str]:
    return re.findall(rf"(?im)^{name}: (.*)$", header_of(content))


@pytest.mark.parametrize("raw", [
    b"",
    b"\r\n\r\nonly a body",
    bytes(range(1, 256)) * 16,
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
])
def test_input_without_a_header_is_unparseable(alias: Alias, raw: bytes) -> None:
    with pytest.raises(UnparseableMessage):
        forward(alias, raw)


def test_input_without_any_sender_is_unparseable(alias: Alias) -> None:
    with pytest.raises(UnparseableMessage, match="no sender"):
        forward(alias, b"Subject: hi\r\n\r\nbody", envelope_from="<>")


def test_the_forward_goes_to_the_mailbox_from_a_verp_address(alias: Alias) -> None:
    forwarded = prepare_forward(b"From: a@example.com\r\n\r\nhi", alias=alias,
                                envelope_from="a@example.com", queue_id=QUEUE_ID)
    assert forwarded.recipient == "owner@mailbox.test"
    assert parse_bounce_address(forwarded.mail_from) == BounceAddress(
        alias_id=alias.pk, queue_id=QUEUE_ID, domain=alias.domain.name)
    assert forwarded.contact.email == "a@example.com"
    assert forwarded.content.endswith(b"\r\n\r\nhi")


def test_without_from_the_envelope_sender_is_shown(alias: Alias) -> None:
    content = forward(alias, b"Subject: hi\r\n\r\nbody", envelope_from="<Env@Example.net>")
    contact = Contact.objects.get(alias=alias)
    assert contact.email == "env@example.net"
    assert field(content, "From") == [
        f'"Env@Example.net via Mailcloak" <{contact.reverse_address}>']


def test_one_contact_per_correspondent_and_alias(alias: Alias, user: User) -> None:
    other_alias = create_alias(user)
    raw = b"From: Alice <ALICE@example.com>\r\nReply-To: alice@example.com\r\n\r\nhi"
    first, again = forward(alias, raw), forward(alias, raw)
    forward(other_alias, raw)
    assert first == again
    mine = Contact.objects.get(alias=alias)
    theirs = Contact.objects.get(alias=other_alias)
    assert (mine.email, mine.display_name) == ("alice@example.com", "Alice")
    assert mine.reverse_address != theirs.reverse_address
    assert mine.reverse_address.endswith("@" + alias.domain.name)
    assert field(first, "Reply-To") == [mine.reverse_address]


def test_a_contact_learns_its_name_later(alias: Alias) -> None:
    forward(alias, b"From: bob@example.com\r\n\r\nhi")
    forward(alias, b"From: Bob B <bob@example.com>\r\n\r\nhi")
    forward(alias, b"From: Robert <bob@example.com>\r\n\r\nhi")
    assert Contact.objects.get(alias=alias).display_name == "Bob B"


def test_the_sender_name_format_setting_is_used(alias: Alias,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_SENDER_NAME_FORMAT", "{name} at {address}")
    mailcloak_settings.reset()
    content = forward(alias, b"From: Bob <bob@example.com>\r\n\r\nhi")
    assert field(content, "From")[0].startswith('"Bob at bob@example.com" <r.')


@pytest.mark.parametrize("value", ["{nam}", "{0}", "{name.__class__}", "{name"])
def test_a_bad_sender_name_format_stops_start_up(value: str) -> None:
    with pytest.raises(mailcloak_settings.ConfigError, match="SENDER_NAME_FORMAT"):
        mailcloak_settings.load({"MAILCLOAK_SENDER_NAME_FORMAT": value}, create_secret=False)


def test_our_marker_is_added_once_and_spoofed_ones_removed(alias: Alias) -> None:
    content = forward(alias, b"X-Mailcloak-Alias: victim@alias.test\r\n"
                             b"From: a@example.com\r\n\r\nhi")
    assert field(content, "X-Mailcloak-Alias") == [alias.address]


def test_missing_message_id_and_date_are_added(alias: Alias,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_HOSTNAME", "mx.alias.test")
    mailcloak_settings.reset()
    raw = b"From: a@example.com\r\nMessage-ID:\r\n\r\nhi"
    content = forward(alias, raw)
    assert field(content, "Message-ID") == [f"<00ff00ff00ff00ff.{alias.pk}@mx.alias.test>"]
    assert field(forward(alias, raw), "Message-ID") == field(content, "Message-ID")
    [date] = field(content, "Date")
    assert parsedate_to_datetime(date).tzinfo is not None


def test_present_message_id_and_date_are_kept(alias: Alias) -> None:
    raw = (b"From: a@example.com\r\nDate: Tue, 3 Mar 2026 10:13:57 +0100\r\n"
           b"Message-Id: <x@example.com>\r\n\r\nhi")
    content = forward(alias, raw)
    assert b"Date: Tue, 3 Mar 2026 10:13:57 +0100\r\nMessage-Id: <x@example.com>\r\n" in content
    assert len(field(content, "Message-ID")) == 1 and len(field(content, "Date")) == 1


def test_a_message_without_empty_line_gets_one(alias: Alias) -> None:
    assert forward(alias, b"From: a@example.com\r\nSubject: s").endswith(b"\r\n\r\n")
    content = forward(alias, b"From: a@example.com\r\nHello,\r\nbody\r\n")
    assert content.endswith(b"\r\n\r\nHello,\r\nbody\r\n")


def test_a_long_reply_to_list_is_refolded_within_78_characters(alias: Alias) -> None:
    addresses = ", ".join(f"Person {i} <person{i}@example.com>" for i in range(12))
    content = forward(alias, f"From: a@example.com\r\nReply-To: {addresses}\r\n\r\n".encode())
    lines = content.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert all(len(line) <= 78 for line in lines)
    reply_to = getaddresses(field(content, "Reply-To"))
    assert [name for name, _ in reply_to] == [f"Person {i}" for i in range(12)]
    reverse = set(Contact.objects.filter(alias=alias).values_list("reverse_address", flat=True))
    assert {address for _, address in reply_to} <= reverse


# --- contact_for ----------------------------------------------------------------------------


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make new_reverse_token hand out the given tokens (then random ones)."""

    def use(*values: str | Callable[[], str]) -> None:
        queue: Iterator[str | Callable[[], str]] = iter(values)
        original = contacts.new_reverse_token

        def next_token() -> str:
            value = next(queue, original)
            return value() if callable(value) else value

        monkeypatch.setattr(contacts, "new_reverse_token", next_token)

    return use


def test_reverse_addresses_are_random_and_on_the_alias_domain(alias: Alias) -> None:
    first = contact_for(alias, "a@example.com", "A")
    second = contact_for(alias, "b@example.com", "")
    for contact in (first, second):
        assert re.fullmatch(r"r\.[a-z0-9]{16}@alias\.test", contact.reverse_address)
    assert first.reverse_address != second.reverse_address
    assert contact_for(alias, "A@Example.com", "").pk == first.pk


def test_reverse_addresses_never_take_an_alias_or_retired_alias(alias: Alias,
                                                                tokens: Callable[..., None],
                                                                user: User) -> None:
    Alias.objects.create(address="r.aaaaaaaaaaaaaaaa@alias.test", domain=alias.domain,
                         user=user, mailbox=alias.mailbox)
    DeletedAlias.objects.create(address="r.bbbbbbbbbbbbbbbb@alias.test")
    tokens("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc")
    assert contact_for(alias, "a@example.com").reverse_address == "r.cccccccccccccccc@alias.test"


def test_a_reverse_address_taken_by_another_contact_is_drawn_again(
        alias: Alias, tokens: Callable[..., None]) -> None:
    tokens("dddddddddddddddd", "dddddddddddddddd", "eeeeeeeeeeeeeeee")
    contact_for(alias, "a@example.com")
    assert contact_for(alias, "b@example.com").reverse_address == "r.eeeeeeeeeeeeeeee@alias.test"


def test_a_concurrent_worker_creating_the_same_contact_wins(alias: Alias,
                                                           tokens: Callable[..., None]) -> None:
    def competitor_commits_first() -> str:
        Contact.objects.create(alias=alias, email="a@example.com",
                               reverse_address="r.ffffffffffffffff@alias.test")
        return "gggggggggggggggg"

    tokens(competitor_commits_first)
    contact = contact_for(alias, "a@example.com", "A")
    assert contact.reverse_address == "r.ffffffffffffffff@alias.test"
    assert Contact.objects.filter(alias=alias).count() == 1


def test_contact_error_when_no_free_reverse_address_is_found(alias: Alias,
                                                             tokens: Callable[..., None]) -> None:
    DeletedAlias.objects.create(address="r.hhhhhhhhhhhhhhhh@alias.test")
    tokens(*["hhhhhhhhhhhhhhhh"] * contacts.ATTEMPTS)
    with pytest.raises(ContactError):
        contact_for(alias, "a@example.com")
    assert not Contact.objects.exists()


def test_long_names_are_cut_to_the_column_size(alias: Alias) -> None:
    assert len(contact_for(alias, "a@example.com", "n" * 500).display_name) == 200


def test_nul_and_control_characters_never_reach_the_database(alias: Alias) -> None:
    content = forward(alias, b'From: "A\x00B\x1b[31m" <a@example.com>\r\n'
                             b"Reply-To: x\x00y@example.com, C\x00 <c@[10.0.0.1\x00]>\r\n"
                             b"\r\nbody \x00 kept")
    assert list(Contact.objects.values_list("email", "display_name")) == [
        ("a@example.com", "A B [31m")]
    assert "Reply-To" not in header_of(content)
    assert content.endswith(b"\r\n\r\nbody \x00 kept")
