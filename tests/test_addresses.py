"""Envelope address parsing: normalisation, and the tricks that must never route anywhere."""

import pytest

from mailcloak.mail import replies
from mailcloak.mail.addresses import (
    NULL,
    Address,
    parse_forward_path,
    parse_reverse_path,
    redact,
    split_path,
)


def rcpt(path: str, smtputf8: bool = False):
    return parse_forward_path(path, smtputf8=smtputf8)


def mail(path: str, smtputf8: bool = False):
    return parse_reverse_path(path, smtputf8=smtputf8)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("<k3v9@alias.test>", "k3v9@alias.test"),
        ("<K3V9@Alias.TEST>", "k3v9@alias.test"),  # case-insensitive everywhere
        ("k3v9@alias.test", "k3v9@alias.test"),  # no angle brackets: tolerated
        ("<k3v9@alias.test.>", "k3v9@alias.test"),  # one trailing dot is the same domain
        ('<"k3v9"@alias.test>', "k3v9@alias.test"),  # needless quotes
        ("<first.last+tag@alias.test>", "first.last+tag@alias.test"),
        # Relay tricks: they stay local parts (or domains) as written, so they route nowhere.
        ("<user%other.test@alias.test>", "user%other.test@alias.test"),
        ("<other.test!user@alias.test>", "other.test!user@alias.test"),
        ('<"user@other.test"@alias.test>', '"user@other.test"@alias.test'),
        ('<"user%other.test"@alias.test>', "user%other.test@alias.test"),
        ("<user@[127.0.0.1]>", "user@[127.0.0.1]"),
        ("<user@[IPv6:0:0:0:0:0:0:0:1]>", "user@[IPv6:::1]"),
        # A source route is ignored: only the final mailbox counts.
        ("<@alias.test:user@other.test>", "user@other.test"),
        ("<@a.test,@alias.test:k3v9@alias.test>", "k3v9@alias.test"),
    ],
)
def test_recipients_are_normalised(path, expected):
    address = rcpt(path)
    assert isinstance(address, Address)
    assert str(address) == expected


@pytest.mark.parametrize(
    ("path", "reply"),
    [
        ("<>", replies.NULL_RECIPIENT),
        ("<postmaster>", replies.UNQUALIFIED_RECIPIENT),
        ("<other.test!user>", replies.UNQUALIFIED_RECIPIENT),
        ("<user@other.test@alias.test>", replies.RECIPIENT_SYNTAX),
        ("<user@alias.test", replies.RECIPIENT_SYNTAX),
        ("<user@alias..test>", replies.RECIPIENT_SYNTAX),
        ("<user@alias.test..>", replies.RECIPIENT_SYNTAX),
        ("<us er@alias.test>", replies.RECIPIENT_SYNTAX),
        ("<user@@alias.test>", replies.RECIPIENT_SYNTAX),
        ("<.user@alias.test>", replies.RECIPIENT_SYNTAX),
        ("<user.@alias.test>", replies.RECIPIENT_SYNTAX),
        ("<user@-alias.test>", replies.RECIPIENT_SYNTAX),
        ("<user@alias_test.test>", replies.RECIPIENT_SYNTAX),
        ("<user@[999.0.0.1]>", replies.RECIPIENT_SYNTAX),
        ("<user@[example.test]>", replies.RECIPIENT_SYNTAX),
        ("<@other.test:>", replies.RECIPIENT_SYNTAX),
        ("<@:user@alias.test>", replies.RECIPIENT_SYNTAX),
        ("<@[127.0.0.1]:user@alias.test>", replies.RECIPIENT_SYNTAX),
        ('<"unterminated@alias.test>', replies.RECIPIENT_SYNTAX),
        ("<user\r@alias.test>", replies.RECIPIENT_SYNTAX),
        ("<user@alias.test\x00>", replies.RECIPIENT_SYNTAX),
        (f"<{'a' * 250}@alias.test>", replies.RECIPIENT_SYNTAX),
    ],
)
def test_bad_recipients_get_a_syntax_reply(path, reply):
    assert rcpt(path) == reply


def test_non_ascii_needs_smtputf8():
    assert rcpt("<José@alias.test>") == replies.NON_ASCII_ADDRESS
    assert rcpt("<jose@bücher.test>") == replies.NON_ASCII_ADDRESS
    assert mail("<José@example.org>") == replies.NON_ASCII_ADDRESS


def test_smtputf8_addresses_are_normalised():
    assert str(rcpt("<José@Alias.test>", smtputf8=True)) == "josé@alias.test"
    # International domains compare as A-labels, whatever form the client used.
    assert str(rcpt("<jose@Bücher.test>", smtputf8=True)) == "jose@xn--bcher-kva.test"
    assert str(rcpt("<jose@xn--bcher-kva.test>")) == "jose@xn--bcher-kva.test"


def test_undecodable_bytes_are_refused():
    # aiosmtpd decodes arguments with surrogateescape: invalid UTF-8 arrives as surrogates.
    garbage = b"\xff\xfe@alias.test".decode("utf-8", "surrogateescape")
    assert rcpt(f"<{garbage}>", smtputf8=True) == replies.RECIPIENT_SYNTAX


def test_null_sender_and_sender_syntax():
    assert mail("<>") == NULL and NULL.is_null and str(NULL) == ""
    assert str(mail("<Bounce-Handler@Lists.Example.org>")) == "bounce-handler@lists.example.org"
    assert mail("<daemon>") == replies.SENDER_SYNTAX
    assert mail("<a b@example.org>") == replies.SENDER_SYNTAX
    assert replies.SENDER_SYNTAX.status == "5.1.7"


def test_quoted_local_part_keeps_escapes_canonical():
    address = mail('<"a\\"b c"@example.org>')
    assert str(address) == '"a\\"b c"@example.org'


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("<a@b.test>", ("<a@b.test>", "")),
        ("<a@b.test> SIZE=100 BODY=8BITMIME", ("<a@b.test>", "SIZE=100 BODY=8BITMIME")),
        ('<"x> y"@b.test> SIZE=1', ('<"x> y"@b.test>', "SIZE=1")),
        ("a@b.test SIZE=1", ("a@b.test", "SIZE=1")),
        ("<a@b.test", ("<a@b.test", "")),
        ("<>", ("<>", "")),
    ],
)
def test_split_path(argument, expected):
    assert split_path(argument) == expected


def test_redact_hides_the_local_part_but_is_stable():
    address = rcpt("<secret.person@alias.test>")
    first = redact(address, b"key")
    assert "secret" not in first and first.endswith("@alias.test")
    assert redact(address, b"key") == first
    assert redact(address, b"other key") != first
    assert redact(NULL, b"key") == "<>"
