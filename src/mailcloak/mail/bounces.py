"""Bounces that come back to our VERP addresses: read them, record permanent failures.

A standard DSN (RFC 3464) carries a message/delivery-status part with one block per
recipient; older or home-grown mail systems send prose with a status code somewhere in it.
Both are read; delays (4.x.x, Action: delayed) are ignored, and so is anything that only
looks like a reply (auto-responders answer the envelope sender too).
"""

from __future__ import annotations

import email
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message

from mailcloak.aliases.models import Alias
from mailcloak.mail import reputation
from mailcloak.mail.models import Bounce, QueuedMessage
from mailcloak.mail.policy_email import (
    READ_POLICY,
    clean_text,
    decode_raw,
    is_plausible_address,
    parse_mailboxes,
)
from mailcloak.mail.verp import parse_bounce_address

log = logging.getLogger(__name__)

REASON_LIMIT = 500
TEXT_LIMIT = 100_000  # how much prose of a non-standard bounce is searched for a status
_STATUS = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?![\w.]*\d)")
_ADDRESS_IN_LINE = re.compile(
    r"<([^<>\s]+@[^<>\s]+)>|([^\s<>()\[\],;:\"]+@[A-Za-z0-9.-]*[A-Za-z0-9])")
_TAG = re.compile(r"<[^>]*>")
_BOUNCE_SENDERS = ("mailer-daemon@", "postmaster@", "mail-daemon@", "mailer_daemon@")
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status|fail|notification)|failure notice|returned mail|"
    r"mail delivery (failed|failure|system)|could not be delivered|non.?delivery",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Failure:
    """A permanent failure for one recipient ("" when the bounce does not say who)."""

    recipient: str
    status: str
    reason: str


def record_dsn(raw: bytes, bounce_address: str) -> None:
    """Record the permanent failures a bounce to `bounce_address` reports. A bounce address we
    did not make, or one whose alias is gone, is ignored (the SMTP layer decides the reply)."""
    target = parse_bounce_address(bounce_address)
    if target is None:
        return
    alias = None
    if target.alias_id is not None:
        alias = Alias.objects.select_related("mailbox").filter(pk=target.alias_id).first()
        if alias is None:
            log.info("bounce for deleted alias %s ignored", target.alias_id)
            return
    fallback = alias.mailbox.email if alias is not None else ""
    kind = (QueuedMessage.objects.filter(queue_id=target.queue_id)
            .values_list("kind", flat=True).first() or "")
    if reputation.is_feedback_report(raw):  # a spam complaint, not a delivery failure
        bounces = [Bounce(alias=alias, recipient=fallback, source=Bounce.Source.COMPLAINT,
                          reason="spam complaint (feedback report)", kind=kind)]
    else:
        bounces = [
            Bounce(alias=alias, recipient=failure.recipient or fallback,
                   source=Bounce.Source.DSN, reason=failure.reason, kind=kind)
            for failure in permanent_failures(raw) if failure.recipient or fallback
        ]
    Bounce.objects.bulk_create(bounces)
    if kind == QueuedMessage.Kind.REPLY and alias is not None:
        reputation.review(alias.pk)
    log.info("queue %s: %d permanent failure(s) recorded from a bounce",
             target.queue_id, len(bounces))


def permanent_failures(raw: bytes) -> list[Failure]:
    """The permanent failures a bounce message reports; [] for delays, successes and mail
    that is no bounce at all."""
    try:
        return _failures(email.message_from_bytes(raw, policy=READ_POLICY))
    except (LookupError, ValueError, TypeError, AttributeError, IndexError) as exc:
        # The email package has more ways to trip over hostile structure than can be listed;
        # such mail is no readable bounce.
        log.info("unreadable bounce ignored (%s)", type(exc).__name__)
        return []


def _failures(message: Message) -> list[Failure]:
    reports = [part for part in _own_parts(message)
               if part.get_content_type() == "message/delivery-status"]
    if reports:
        return [failure for report in reports for failure in _dsn_failures(report)]
    if _looks_like_bounce(message):
        failure = _prose_failure(message)
        return [failure] if failure else []
    return []


def _own_parts(message: Message) -> Iterator[Message]:
    """The parts of the bounce itself, not of the returned original inside it."""
    yield message
    if message.is_multipart() and message.get_content_maintype() != "message":
        for part in message.get_payload():
            if isinstance(part, Message):
                yield from _own_parts(part)


# --- RFC 3464 delivery-status ---------------------------------------------------------------


def _dsn_failures(report: Message) -> Iterator[Failure]:
    for block in _status_blocks(report):
        action = block.get("action", "").lower()
        status = _first_status(block.get("status", ""))
        # "failed" is final even with a 4.x.x status (the remote system gave up retrying).
        if action == "failed" or (not action and status.startswith("5")):
            status = status or "5.0.0"
            recipient = _typed_value(block.get("final-recipient")
                                     or block.get("original-recipient", ""))
            diagnostic = _typed_value(block.get("diagnostic-code", "")) or "delivery failed"
            yield Failure(_address_or_empty(recipient), status, _reason(status, diagnostic))


def _status_blocks(report: Message) -> list[dict[str, str]]:
    """The per-recipient field blocks of a delivery-status part, names lower-cased."""
    if report.is_multipart():  # the parser already split the blocks
        return [{k.lower(): clean_text(str(v)) for k, v in part.items()}
                for part in report.get_payload() if isinstance(part, Message)]
    data = report.get_payload(decode=True)
    text = decode_raw(data) if isinstance(data, bytes) else ""
    blocks = []
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text):
        fields = email.message_from_string(chunk.strip() + "\n", policy=READ_POLICY)
        blocks.append({k.lower(): clean_text(str(v)) for k, v in fields.items()})
    return blocks


def _typed_value(value: str) -> str:
    """`rfc822; user@example.org` -> `user@example.org` (the type is optional in practice)."""
    kind, separator, rest = value.partition(";")
    return (rest if separator else kind).strip()


def _address_or_empty(value: str) -> str:
    address = value.strip("<> ")
    return address.lower() if is_plausible_address(address) else ""


# --- everything else ------------------------------------------------------------------------


def _looks_like_bounce(message: Message) -> bool:
    if message.get("x-failed-recipients") or message.get_content_type() == "multipart/report":
        return True
    senders = parse_mailboxes(str(message.get("from", "")))
    if any(mb.address.lower().startswith(_BOUNCE_SENDERS) for mb in senders):
        return True
    return _BOUNCE_SUBJECT.search(str(message.get("subject", ""))) is not None


def _prose_failure(message: Message) -> Failure | None:
    """The first status code in the bounce's text; a failure when it is permanent."""
    for line in _text_lines(message):
        status = _first_status(line)
        if not status:
            continue
        if not status.startswith("5"):
            return None  # a delay notice, or a success report
        return Failure(_failed_recipient(message, line), status, _reason(status, line))
    return None


def _failed_recipient(message: Message, line: str) -> str:
    named = _address_or_empty(str(message.get("x-failed-recipients", "")).split(",")[0])
    match = _ADDRESS_IN_LINE.search(line)
    return named or (_address_or_empty(match.group(1) or match.group(2)) if match else "")


def _text_lines(message: Message) -> Iterator[str]:
    """Lines of the bounce's own text parts, plain text first, within TEXT_LIMIT."""
    budget = TEXT_LIMIT
    parts = [part for part in _own_parts(message) if part.get_content_maintype() == "text"]
    for subtype in ("plain", "html"):
        for part in (part for part in parts if part.get_content_subtype() == subtype):
            data = part.get_payload(decode=True)
            if not isinstance(data, bytes) or budget <= 0:
                continue
            text = _decode_part(data, part.get_content_charset())[:budget]
            budget -= len(text)
            yield from (_TAG.sub(" ", text) if subtype == "html" else text).splitlines()


def _decode_part(data: bytes, charset: str | None) -> str:
    if charset:
        try:
            return data.decode(charset, errors="replace")
        except (LookupError, ValueError):  # unknown, not a text codec, or one like idna
            pass
    return decode_raw(data)


def _first_status(text: str) -> str:
    match = _STATUS.search(text)
    return ".".join(match.groups()) if match else ""


def _reason(status: str, diagnostic: str) -> str:
    reason = clean_text(diagnostic)
    if status not in reason:
        reason = f"{status} {reason}"
    return reason[:REASON_LIMIT]
