"""The header rewrite rules (mail.rewrite), without a database: reverse addresses come from a
recording stand-in for the contact store."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailcloak.mail.headers import HeaderField, split_message
from mailcloak.mail.policy_email import Mailbox
from mailcloak.mail.rewrite import Rewriter, original_sender, sender_display_name

ALIAS = "shop.k3v9x2q7@alias.test"
FORMAT = "{name} ({address}) via Mailcloak"


class ReverseBook:
    """Hands out r.<n>@alias.test per address, remembering the names it was given."""

    def __init__(self) -> None:
        self.addresses: dict[str, str] = {}
        self.names: dict[str, str] = {}

    def __call__(self, address: str, name: str) -> str:
        key = address.lower()
        self.names.setdefault(key, name)
        return self.addresses.setdefault(key, f"r.{len(self.addresses) + 1}@alias.test")


def rewrite(header: str, *, name_format: str = FORMAT,
            book: ReverseBook | None = None) -> str:
    fields = split_message(header.replace("\n", "\r\n").encode() + b"\r\nbody").fields
    sender = original_sender(fields, "envelope@example.net")
    assert sender is not None
    book = book or ReverseBook()
    rewriter = Rewriter(alias_address=ALIAS, hostname="mail.alias.test", sender=sender,
                        sender_reverse=book(sender.address, sender.name),
                        name_format=name_format, reverse=book, eol=b"\r\n")
    return b"".join(field.raw for field in rewriter.rewrite(fields)).decode().replace("\r\n", "\n")


def test_from_shows_the_sender_through_a_reverse_address() -> None:
    assert rewrite("From: Alice <alice@example.com>\n") == (
        'From: "Alice (alice@example.com) via Mailcloak" <r.1@alias.test>\n')


def test_from_keeps_its_place_and_unrelated_fields_stay_byte_for_byte() -> None:
    header = ("Received: from x\n\tby y; Tue, 3 Mar 2026 09:14:02 +0000\n"
              "Subject:   spaced  \nFrom: a@example.com\nKeywords: \"Me\" <me@x>,\n  other\n"
              "X-Weird: \xe9t\xe9\n")
    lines = rewrite(header).splitlines(keepends=True)
    assert lines[3].startswith("From: ")
    assert "".join(lines[:3] + lines[4:]) == header.replace("From: a@example.com\n", "")


@pytest.mark.parametrize(("sender", "name_format", "expected"), [
    (Mailbox("Alice", "alice@example.com"), FORMAT, "Alice (alice@example.com) via Mailcloak"),
    (Mailbox("", "bob@example.com"), FORMAT, "bob@example.com via Mailcloak"),
    (Mailbox("bob@example.com", "bob@example.com"), FORMAT, "bob@example.com via Mailcloak"),
    (Mailbox("Alice", "alice@example.com"), "{name}", "Alice"),
    (Mailbox("", "a@example.com"), "{name} [{address}]", "a@example.com [a@example.com]"),
    (Mailbox("A {address} B", "a@example.com"), "{name}", "A {address} B"),
])
def test_sender_display_name(sender: Mailbox, name_format: str, expected: str) -> None:
    assert sender_display_name(sender, name_format) == expected


def test_first_usable_from_is_the_sender_and_other_from_fields_go() -> None:
    result = rewrite("From: not an address\nFrom: Mia <mia@example.com>\n"
                     "From: Impostor <ceo@example.org>\n")
    assert result == '"Mia (mia@example.com) via Mailcloak" <r.1@alias.test>\n'.join(
        ["From: ", ""])


def test_envelope_sender_stands_in_for_a_missing_or_broken_from() -> None:
    fields = split_message(b"From: undisclosed\r\nSubject: x\r\n\r\n").fields
    assert original_sender(fields, "<bounce@example.net>") == Mailbox("", "bounce@example.net")
    assert original_sender(fields, "<>") is None
    assert original_sender([], "") is None
    assert "From: " in rewrite("Subject: no from\n")


def test_reply_to_addresses_each_get_their_own_reverse_address_and_keep_names() -> None:
    book = ReverseBook()
    result = rewrite("From: Hank <hank@example.com>\n"
                     'Reply-To: Hank <HANK@example.com>, "List, The" <list@example.org>\n'
                     "reply-to: billing@example.com, list@example.org\n", book=book)
    assert result.splitlines()[1:] == [
        'Reply-To: Hank <r.1@alias.test>, "List, The" <r.2@alias.test>, r.3@alias.test']
    assert book.names == {"hank@example.com": "Hank", "list@example.org": "List, The",
                          "billing@example.com": ""}


@pytest.mark.parametrize("value", ["", "   ", "<>", "undisclosed-recipients:;", "garbage"])
def test_empty_or_unreadable_reply_to_is_dropped(value: str) -> None:
    assert "Reply-To" not in rewrite(f"From: a@example.com\nReply-To: {value}\n")


def test_reply_to_the_alias_itself_stays() -> None:
    result = rewrite(f"From: a@example.com\nReply-To: Me <{ALIAS.upper()}>\n")
    assert f"Reply-To: Me <{ALIAS.upper()}>" in result


@pytest.mark.parametrize("name", ["Mail-Followup-To", "Mail-Reply-To",
                                  "Disposition-Notification-To", "Return-Receipt-To"])
def test_other_fields_a_client_answers_to_are_reversed(name: str) -> None:
    result = rewrite(f"From: a@example.com\n{name}: Private <private@example.com>\n")
    assert f"{name}: Private <r.2@alias.test>" in result
    assert "private@example.com" not in result


def test_list_mailto_targets_are_reversed_and_web_targets_kept() -> None:
    result = rewrite(
        "From: a@example.com\n"
        "List-Unsubscribe: <mailto:leave%2Bx@lists.example.org?subject=unsub&cc=boss@example.org"
        "&body=bye>,\n <https://lists.example.org/u?t=1> (web)\n"
        "List-Post: <mailto:list@lists.example.org>\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\n")
    assert "List-Unsubscribe: <mailto:r.2@alias.test?subject=unsub&body=bye>,\n" \
           " <https://lists.example.org/u?t=1>\n" in result
    assert "List-Post: <mailto:r.3@alias.test>\n" in result
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click\n" in result
    assert "lists.example.org?" not in result and "boss@" not in result


def test_list_fields_without_mailto_stay_byte_for_byte() -> None:
    header = ("List-Unsubscribe: <https://example.com/u>, \n <http://example.com/v>\n"
              "List-Post: NO (posting not allowed)\nList-Id: Weekly <weekly.example.com>\n")
    assert rewrite("From: a@example.com\n" + header).endswith(header)


def test_list_field_whose_only_mailto_names_no_address_is_dropped() -> None:
    assert "List-Unsubscribe" not in rewrite(
        "From: a@example.com\nList-Unsubscribe: <mailto:?subject=x>\n")


def test_whitespace_inside_list_urls_is_ignored() -> None:
    result = rewrite("From: a@example.com\nList-Help: <mailto:help@\n example.org>\n")
    assert "List-Help: <mailto:r.2@alias.test>" in result


@pytest.mark.parametrize("field", [
    "DKIM-Signature: v=1; d=example.com; b=abc",
    "Return-Path: <bounce@example.com>",
    "Delivered-To: owner@mailbox.test",
    "Sender: agent@example.com",
    "ARC-Seal: i=1; cv=none",
    "ARC-Message-Signature: i=1",
    "ARC-Authentication-Results: i=1; mx.example.com; spf=pass",
    "X-Mailcloak-Alias: spoofed@alias.test",
    "x-mailcloak-verdict: ham",
    "Authentication-Results: mail.alias.test; dkim=pass",
    "Authentication-Results: MAIL.ALIAS.TEST. 1; spf=pass",
    "Authentication-Results: (forged) mail.alias.test; spf=pass",
    "Authentication-Results:\n mail.alias.test;\n dmarc=pass",
    "Message-ID:",
    "Date:  ",
])
def test_transport_signatures_and_spoofable_fields_are_removed(field: str) -> None:
    assert rewrite(f"From: a@example.com\n{field}\nSubject: s\n").splitlines()[1:] == [
        "Subject: s"]


@pytest.mark.parametrize("field", [
    "Authentication-Results: mx.example.com; dkim=pass",
    "Authentication-Results: mail.alias.test.evil.example; dkim=pass",
    "X-Original-To: shop.k3v9x2q7@alias.test",
    "Message-ID: <a@example.com>",
])
def test_other_fields_are_kept(field: str) -> None:
    assert rewrite(f"From: a@example.com\n{field}\n").splitlines()[1:] == field.splitlines()


def test_rewritten_fields_use_the_message_line_ending() -> None:
    fields = split_message(b"From: Alice <alice@example.com>\nReply-To: b@example.com\n\n").fields
    book = ReverseBook()
    rewriter = Rewriter(alias_address=ALIAS, hostname="mail.alias.test",
                        sender=Mailbox("Alice", "alice@example.com"),
                        sender_reverse=book("alice@example.com", "Alice"),
                        name_format=FORMAT, reverse=book, eol=b"\n")
    raw = b"".join(f.raw for f in rewriter.rewrite(fields))
    assert b"\r" not in raw and raw.count(b"\n") == 2


def test_field_value_is_read_from_raw_bytes() -> None:
    assert HeaderField("X", b"X:  a\r\n\tb  \r\n").value == "a\tb"


def test_participants_but_the_alias_become_reverse_addresses() -> None:
    result = rewrite(f"From: a@example.com\nTo: Shop <{ALIAS}>, Real Person <real@example.org>\n"
                     "Cc: undisclosed-recipients:;\nBcc: b@example.org\n")
    assert result.splitlines()[1:] == [
        f"To: Shop <{ALIAS}>,",
        ' "Real Person (real@example.org) via Mailcloak" <r.2@alias.test>',
        "Cc: undisclosed-recipients:;",
        'Bcc: "b@example.org via Mailcloak" <r.3@alias.test>']


def test_repeated_single_fields_keep_the_first_and_address_lists_are_joined() -> None:
    result = rewrite("From: a@example.com\nSubject: first\nTo: x@example.org\n"
                     "Date:\nDate: Tue, 3 Mar 2026 10:13:57 +0100\nSubject: second\n"
                     "Message-ID: <1@x>\nMessage-ID: <2@x>\nTo: Y <y@example.org>\n"
                     "Cc: only@example.org\n")
    assert result.splitlines()[1:] == [
        "Subject: first",
        'To: "x@example.org via Mailcloak" <r.2@alias.test>,',
        ' "Y (y@example.org) via Mailcloak" <r.3@alias.test>',
        "Date: Tue, 3 Mar 2026 10:13:57 +0100", "Message-ID: <1@x>",
        'Cc: "only@example.org via Mailcloak" <r.4@alias.test>']


def test_extra_mailto_recipients_are_dropped_even_when_percent_encoded() -> None:
    result = rewrite("From: a@example.com\n"
                     "List-Help: <mailto:help@example.org?%63c=boss@example.org&%54O=x@y&s=1>\n")
    assert "List-Help: <mailto:r.2@alias.test?s=1>" in result


HOSTILE = [
    b"From: ", b"Reply-To: ", b"List-Post: ", b"To: ", b"Date:", b"Message-ID:",
    b"Authentication-Results: ", b"X-Mailcloak-Alias: ", b"\r\n", b"\n", b" ", b"\t", b"\r",
    b"a@example.com", b"<>", b",", b";", b":", b'"', b"\\", b"(", b")", b"<", b">", b"@",
    b"[1.2.3.4]", b"=?utf-8?q?", b"=?x?b?", b"?=", b"=0D=0A", b"=C3=A9", b"\xe9", b"\xff",
    b"\x00", b"mailto:", b"%2C", b"?to=", b"&", "\ue000".encode(),
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(HOSTILE), max_size=40))
def test_hostile_headers_always_give_a_well_formed_header(pieces: list[bytes]) -> None:
    fields = split_message(b"".join(pieces) + b"\r\n\r\nbody").fields
    book = ReverseBook()
    sender = original_sender(fields, "envelope@example.net") or Mailbox("", "e@example.net")
    rewriter = Rewriter(alias_address=ALIAS, hostname="mail.alias.test", sender=sender,
                        sender_reverse="r.0@alias.test", name_format=FORMAT, reverse=book,
                        eol=b"\r\n")
    result = rewriter.rewrite(fields)
    assert [field.key for field in result].count("from") == 1
    for field in result:  # (untouched fields keep their own line endings)
        lines = field.raw.split(b"\n")
        assert lines[-1] == b"" and all(line[:1] in (b" ", b"\t") for line in lines[1:-1])
