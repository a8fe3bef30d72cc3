"""The raw header block (mail.headers) and the tolerant readers (mail.policy_email)."""

from __future__ import annotations

from email.header import decode_header, make_header
from email.utils import getaddresses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailcloak.mail.headers import (
    HeaderField,
    encode_phrase,
    fold,
    format_mailbox,
    join_message,
    split_message,
)
from mailcloak.mail.policy_email import (
    Mailbox,
    clean_text,
    decode_raw,
    decode_words,
    parse_envelope_address,
    parse_mailboxes,
)

# --- splitting ------------------------------------------------------------------------------


def test_split_keeps_fields_raw_and_the_body_untouched() -> None:
    raw = (b"Subject: hello\r\n  folded\r\nX-Tab:\tvalue\r\n\r\n"
           b"body\r\n\r\nmore \x00 body\xff\r\n")
    message = split_message(raw)
    assert [f.name for f in message.fields] == ["Subject", "X-Tab"]
    assert message.fields[0].raw == b"Subject: hello\r\n  folded\r\n"
    assert message.fields[0].value == "hello  folded"
    assert message.body == b"body\r\n\r\nmore \x00 body\xff\r\n"
    assert message.eol == b"\r\n" and message.separator == b"\r\n"
    assert join_message(message.fields, message.body, message.separator) == raw


def test_split_reads_lf_only_stored_mail() -> None:
    raw = b"From: a@example.org\nSubject: x\n\nbody\n"
    message = split_message(raw)
    assert message.eol == b"\n" and message.separator == b"\n"
    assert message.body == b"body\n"
    assert join_message(message.fields, message.body, message.separator) == raw


def test_split_drops_lines_that_are_no_header_field() -> None:
    raw = (b"From sender@example.org Mon Mar  2 10:00:00 2026\r\n"  # mbox separator
           b" orphan continuation\r\n"
           b"From: a@example.org\r\n"
           b"no colon here\r\n"
           b"Bad Name: has a space\r\n"
           b"Subject : obsolete space before the colon\r\n"
           b"\r\nbody")
    message = split_message(raw)
    assert [f.name for f in message.fields] == ["From", "Subject"]
    assert message.dropped_lines == 4
    assert message.body == b"body"


def test_a_message_without_empty_line_starts_its_body_at_the_first_non_field_line() -> None:
    message = split_message(b"From: a@example.org\r\nSubject: x\r\nHello there,\r\nbye\r\n")
    assert [f.name for f in message.fields] == ["From", "Subject"]
    assert message.body == b"Hello there,\r\nbye\r\n"
    assert message.separator == b""


def test_a_header_only_message_gets_a_line_ending_on_its_last_field() -> None:
    message = split_message(b"From: a@example.org\r\nSubject: no newline")
    assert message.fields[-1].raw == b"Subject: no newline\r\n"
    assert message.body == b""


def test_split_of_garbage_finds_no_fields() -> None:
    assert split_message(b"").fields == []
    assert split_message(b"\r\nFrom: a@example.org\r\n").fields == []
    assert split_message(bytes(range(256)) * 4).fields == []


def test_values_with_8bit_bytes_decode_as_utf8_or_windows_1252() -> None:
    assert HeaderField("Subject", "Subject: Grüße\r\n".encode()).value == "Grüße"
    assert HeaderField("Subject", "Subject: Grüße\r\n".encode("cp1252")).value == "Grüße"
    assert decode_raw(b"\x81\xff") == "\ufffdÿ"


# --- folding and encoding -------------------------------------------------------------------


def test_fold_keeps_short_fields_on_one_line() -> None:
    assert fold("Reply-To", "Bob <r.x@alias.test>") == b"Reply-To: Bob <r.x@alias.test>\r\n"
    assert fold("To", "a@b", b"\n") == b"To: a@b\n"


def test_fold_breaks_long_fields_at_spaces_outside_quotes_first() -> None:
    value = '"Alice Martin (alice@example.com) via Mailcloak" <r.abcdefghijklmnop@alias.test>'
    assert fold("From", value) == (b'From: "Alice Martin (alice@example.com) via Mailcloak"\r\n'
                                   b" <r.abcdefghijklmnop@alias.test>\r\n")


def test_fold_keeps_lines_within_78_characters_where_possible() -> None:
    value = ", ".join(f"person{i} <r.{i:016d}@alias.test>" for i in range(20))
    folded = fold("Reply-To", value)
    lines = folded.split(b"\r\n")[:-1]
    assert all(len(line) <= 78 for line in lines)
    assert all(line.startswith(b" ") for line in lines[1:])
    unfolded = folded.replace(b"\r\n ", b" ").decode().removeprefix("Reply-To: ").strip()
    assert unfolded == value


def test_fold_never_writes_lines_over_998_octets() -> None:
    url = "<https://example.com/unsubscribe?token=" + "x" * 3000 + ">"
    folded = fold("List-Unsubscribe", url)
    lines = folded.split(b"\r\n")[:-1]
    assert max(len(line) for line in lines) <= 998
    assert b"".join(line.strip() for line in lines) == b"List-Unsubscribe: " + url.encode()


@pytest.mark.parametrize(("name", "expected"), [
    ("Bob", "Bob"),
    ("Bob Smith", "Bob Smith"),
    ("Doe, John", '"Doe, John"'),
    ('Say "hi" \\ bye', '"Say \\"hi\\" \\\\ bye"'),
    ("bob@example.com via Mailcloak", '"bob@example.com via Mailcloak"'),
])
def test_ascii_names_are_atoms_or_quoted_strings(name: str, expected: str) -> None:
    assert encode_phrase(name) == expected


@pytest.mark.parametrize("name", [
    "Renée Müller", "小林 美咲", "=?utf-8?q?not_really_encoded?=", "Ω" * 120,
    "Toke Høiland-Jørgensen (toke@toke.dk) via Mailcloak",
])
def test_other_names_become_encoded_words_that_decode_back(name: str) -> None:
    encoded_phrase = encode_phrase(name)
    assert all(len(word) <= 75 for word in encoded_phrase.split(" "))
    assert encoded_phrase.isascii()
    assert str(make_header(decode_header(encoded_phrase))) == name


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec="utf-8"), max_size=150))
def test_any_display_name_makes_one_well_formed_field(name: str) -> None:
    clean = clean_text(name)
    field = HeaderField.build("From", format_mailbox(clean, "r.abc@alias.test"))
    lines = field.raw.split(b"\r\n")
    assert lines[-1] == b"" and all(line.startswith(b" ") for line in lines[1:-1])
    assert all(len(line) <= 998 and b"\r" not in line and b"\n" not in line for line in lines)
    [(display_name, address)] = getaddresses([unfold(field.raw)])
    assert address == "r.abc@alias.test"
    assert str(make_header(decode_header(display_name))) == clean


def unfold(raw: bytes) -> str:
    return raw.decode("ascii").replace("\r\n ", " ").removeprefix("From: ").strip()


# --- reading values -------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("=?UTF-8?B?w6lsw6huZQ==?=", "élène"),
    ("=?utf-8?q?Ren=C3=A9e_M?=", "Renée M"),
    ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),  # whitespace between encoded words is not text
    ("=?utf-8?q?a?= plain =?utf-8?q?b?=", "a plain b"),
    ("=?iso-8859-1?q?caf=E9?=", "café"),
    ("=?utf-8*en?q?lang?=", "lang"),  # RFC 2231 language suffix
    ("=?x-unknown?q?caf=E9?=", "café"),  # unknown charset: the legacy guess
    ("=?base64?q?abc?=", "abc"),  # a codec that is no text encoding
    ("=?utf-8?b?a?=", "=?utf-8?b?a?="),  # broken base64 stays as it was
    ("=?utf-8?b?w6k?=", "é"),  # missing padding
    ("=?utf-8?q?caf\u00e9?=", "café"),  # raw 8-bit text inside an encoded word
    ("=?idna?q?xn--=FF?=", "xn--ÿ"),  # a codec that cannot replace errors
    ("=?undefined?q?a?=", "a"),
    ("no words", "no words"),
])
def test_decode_words_never_raises(text: str, expected: str) -> None:
    assert decode_words(text) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ('"Doe, John" <j@example.com>', [("Doe, John", "j@example.com")]),
    ("user@[192.0.2.1]", [("", "user@[192.0.2.1]")]),
    ("bob@example.com (Bob Smith)", [("Bob Smith", "bob@example.com")]),
    ("a@example.com, b@example.org", [("", "a@example.com"), ("", "b@example.org")]),
    ("Team: a@example.com, b@example.org;", [("", "a@example.com"), ("", "b@example.org")]),
    ("=?utf-8?q?Doe,_John:?= <j@example.com>", [("Doe, John:", "j@example.com")]),
    ('"=?utf-8?q?J=C3=B6rg?=" <j@example.de>', [("Jörg", "j@example.de")]),
    ("=?utf-8?q?Evil=0D=0ABcc=3A_v=40x?= <e@example.com>", [("Evil Bcc: v@x", "e@example.com")]),
    ('"Help\rBcc: v@x" <h@example.com>', [("Help Bcc: v@x", "h@example.com")]),
    ("Jörg <j@example.de>", [("Jörg", "j@example.de")]),
    ("\ue0007\ue001 <a@example.com>", [("7", "a@example.com")]),
    ("", []),
    ("<>", []),
    ("undisclosed-recipients:;", []),
    ("garbage <<<", []),
    ("just a name", []),
])
def test_parse_mailboxes(value: str, expected: list[tuple[str, str]]) -> None:
    assert parse_mailboxes(value) == [Mailbox(name, address) for name, address in expected]


@pytest.mark.parametrize(("value", "expected"), [
    ("<a@example.org>", "a@example.org"),
    (" a@example.org ", "a@example.org"),
    ("<>", ""),
    ("", ""),
    ("<not an address>", ""),
    ("<a@[1.2.3.4\x00]>", ""),  # nothing a database would refuse to store
    ("<a\x00b@example.org>", ""),
])
def test_parse_envelope_address(value: str, expected: str) -> None:
    assert parse_envelope_address(value) == expected


def test_a_line_break_in_a_value_never_starts_a_new_field() -> None:
    assert fold("Subject", 'a\r\nBcc: x@example.org "q\rb"') == (
        b'Subject: a Bcc: x@example.org "q b"\r\n')
