"""Golden forwarding tests: tests/data/forward/NAME.eml in, NAME.expected.eml out.

Only what must vary between runs is normalised: reverse-address tokens (numbered in order of
appearance), and the Message-ID and Date added to a message that had none. On a mismatch the
output is written to NAME.actual.eml beside them, for diffing. MAILCLOAK_TEST_UPDATE_GOLDEN=1
rewrites the expected files instead: review them by eye before committing.
"""

from __future__ import annotations

import os
import re
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from pathlib import Path

import pytest

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias, Contact, Domain
from mailcloak.aliases.services import sync_configured_domains
from mailcloak.mail.forward import prepare_forward
from mailcloak.mail.verp import BounceAddress, parse_bounce_address

DATA = Path(__file__).parent / "data" / "forward"
CASES = sorted(path.stem for path in DATA.glob("*.eml") if path.name.count(".") == 1)
ALIAS = "shop.k3v9x2q7@alias.test"
QUEUE_ID = "0123456789ABCDEF"
ENVELOPE_FROM = "bounces@sender.example"
UPDATE = os.environ.get("MAILCLOAK_TEST_UPDATE_GOLDEN") == "1"
PRESERVED = ("Message-ID", "In-Reply-To", "References", "Date", "Subject",
             "List-Id", "List-Unsubscribe-Post", "MIME-Version", "Content-Type",
             "Content-Transfer-Encoding")
ORIGINAL_ONLY = (b"dkim-signature", b"return-path", b"delivered-to", b"sender", b"arc-seal",
                 b"arc-message-signature", b"arc-authentication-results")

_EMPTY_LINE = re.compile(rb"\n\r?\n")
_TOKEN = re.compile(rb"\br\.[a-z0-9]{16}@")
_FIELD_OR_CONTINUATION = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:|[ \t]")


@pytest.fixture
def golden_alias(user: User, monkeypatch: pytest.MonkeyPatch) -> Alias:
    monkeypatch.setenv("MAILCLOAK_HOSTNAME", "mail.alias.test")
    monkeypatch.delenv("MAILCLOAK_SENDER_NAME_FORMAT", raising=False)
    mailcloak_settings.reset()
    sync_configured_domains()
    return Alias.objects.create(address=ALIAS, domain=Domain.objects.get(name="alias.test"),
                                user=user, mailbox=user.mailboxes.get())


def test_the_golden_set_covers_at_least_thirty_shapes() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_golden(case: str, golden_alias: Alias) -> None:
    raw = (DATA / f"{case}.eml").read_bytes()
    forwarded = prepare_forward(raw, alias=golden_alias, envelope_from=ENVELOPE_FROM,
                                queue_id=QUEUE_ID)
    actual = normalise(forwarded.content, raw)
    expected_path, actual_path = DATA / f"{case}.expected.eml", DATA / f"{case}.actual.eml"
    if UPDATE:
        expected_path.write_bytes(actual)
    if not expected_path.exists() or expected_path.read_bytes() != actual:
        actual_path.write_bytes(actual)
        pytest.fail(f"forwarded {case}.eml differs from {case}.expected.eml: "
                    f"diff it with {actual_path}")
    actual_path.unlink(missing_ok=True)


@pytest.mark.parametrize("case", CASES)
def test_forward_keeps_the_body_and_threading_and_drops_the_original_transport(
        case: str, golden_alias: Alias) -> None:
    raw = (DATA / f"{case}.eml").read_bytes()
    forwarded = prepare_forward(raw, alias=golden_alias, envelope_from=ENVELOPE_FROM,
                                queue_id=QUEUE_ID)
    content = forwarded.content
    assert body(content) == body(raw)
    original, result = parse_header(raw), parse_header(content)
    for name in PRESERVED:  # (repeats of once-only fields are the golden files' business)
        values = [str(value) for value in original.get_all(name, [])]
        if len(values) == 1 and values[0].strip():
            assert [str(value) for value in result.get_all(name, [])] == values, name
    header_lines = header_block(content).splitlines()
    for line in header_lines:
        assert _FIELD_OR_CONTINUATION.match(line), line
        assert len(line) <= 998 and b"\r" not in line
    assert not [line for line in header_lines if line.split(b":")[0].lower() in ORIGINAL_ONLY]
    assert forwarded.recipient == "owner@mailbox.test"
    assert parse_bounce_address(forwarded.mail_from) == BounceAddress(
        alias_id=golden_alias.pk, queue_id=QUEUE_ID, domain="alias.test")


@pytest.mark.parametrize("case", CASES)
def test_forward_answers_only_reach_reverse_addresses_of_the_alias(
        case: str, golden_alias: Alias) -> None:
    raw = (DATA / f"{case}.eml").read_bytes()
    forwarded = prepare_forward(raw, alias=golden_alias, envelope_from=ENVELOPE_FROM,
                                queue_id=QUEUE_ID)
    result = parse_header(forwarded.content)
    reverse = set(Contact.objects.filter(alias=golden_alias)
                  .values_list("reverse_address", flat=True))
    senders = addresses(result, "From")
    assert len(senders) == 1
    assert senders[0][1] == forwarded.contact.reverse_address
    for name in ("From", "Reply-To", "Mail-Reply-To", "Mail-Followup-To",
                 "Disposition-Notification-To"):
        for _, address in addresses(result, name):
            assert address in reverse, (name, address)
    for name in ("To", "Cc"):  # reply-all goes out through the alias too ("" for groups)
        for _, address in addresses(result, name):
            assert address in reverse | {golden_alias.address, ""}, (name, address)
    for name in ("List-Unsubscribe", "List-Post", "List-Help", "List-Subscribe", "List-Owner"):
        for target in re.findall(r"<mailto:([^?>]+)", " ".join(unfolded(result, name))):
            assert target in reverse


def normalise(content: bytes, raw: bytes) -> bytes:
    """Replace what legitimately differs between runs with stable placeholders."""
    tokens: dict[bytes, int] = {}
    content = _TOKEN.sub(
        lambda m: b"r.token%d@" % tokens.setdefault(m.group(0), len(tokens) + 1), content)
    header, rest = content[: len(header_block(content))], content[len(header_block(content)):]
    if not re.search(rb"(?im)^message-id:[ \t]*\S", header_block(raw)):
        header = re.sub(rb"<0123456789abcdef\.\d+@", b"<0123456789abcdef.ALIAS-ID@", header)
    if not re.search(rb"(?im)^date:[ \t]*\S", header_block(raw)):
        header = re.sub(rb"(?m)^Date: [^\r\n]*", b"Date: <NOW>", header)
    return header + rest


def unfolded(header: Message, name: str) -> list[str]:
    return [re.sub(r"\r?\n(?=[ \t])", "", str(value)) for value in header.get_all(name, [])]


def addresses(header: Message, name: str) -> list[tuple[str, str]]:
    return getaddresses(unfolded(header, name))


def header_block(message: bytes) -> bytes:
    match = _EMPTY_LINE.search(message)
    return message[: match.start() + 1] if match else message


def body(message: bytes) -> bytes:
    match = _EMPTY_LINE.search(message)
    return message[match.end():] if match else b""


def parse_header(message: bytes) -> Message:
    return BytesHeaderParser(policy=compat32).parsebytes(message)
