"""Putting mail into the quarantine (the mail path calls these) and reading it back.

Both entry points are plain ORM writes with no transaction of their own beyond a savepoint,
so the SMTP server can store a held message in the same commit as everything else it records
and answer 250 only once that commit is durable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from django.db import transaction
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.aliases.models import Alias
from mailcloak.mail.counters import add_after_commit
from mailcloak.mail.headers import split_message
from mailcloak.mail.policy_email import clean_text, decode_words, parse_mailboxes
from mailcloak.mail.spam.verdict import Direction, Verdict
from mailcloak.quarantine.crypto import keyring
from mailcloak.quarantine.models import QuarantinedMessage, RejectionLog

FIELD_LIMIT = 998  # longest header value kept (RFC 5322's line limit)
ADDRESS_LIMIT = 320


@dataclass(frozen=True)
class Summary:
    """What the quarantine page shows of a message without opening it."""

    header_from: str = ""
    sender_address: str = ""
    subject: str = ""
    sent_at: datetime | None = None


def summarise(raw: bytes) -> Summary:
    """From, Subject and Date of `raw`, decoded and cleaned; never raises on broken input."""
    values: dict[str, str] = {}
    for field in split_message(raw).fields:
        if field.key in {"from", "subject", "date"} and field.key not in values:
            values[field.key] = field.value
    mailboxes = parse_mailboxes(values.get("from", ""))
    return Summary(
        header_from=clean_text(decode_words(values.get("from", "")))[:FIELD_LIMIT],
        sender_address=mailboxes[0].address.lower()[:ADDRESS_LIMIT] if mailboxes else "",
        subject=clean_text(decode_words(values.get("subject", "")))[:FIELD_LIMIT],
        sent_at=_date(values.get("date", "")),
    )


def _date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # RFC 5322 "-0000": the time is UTC, the zone unknown
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def retention_end(start: datetime | None = None) -> datetime:
    days = mailcloak_settings.get().quarantine_days
    return (start or timezone.now()) + timedelta(days=days)


def quarantine_message(*, raw: bytes, alias: Alias, direction: Direction, verdict: Verdict,
                       mail_from: str, authentication_results: str = "") -> QuarantinedMessage:
    """Hold `raw` for `alias`'s owner instead of delivering it: metadata in the clear, the
    message encrypted, deleted for good after MAILCLOAK_QUARANTINE_DAYS. An outbound message
    also gets its owner an immediate "not sent" notice."""
    summary = summarise(raw)
    now = timezone.now()
    ring = keyring()
    with transaction.atomic():
        held = QuarantinedMessage.objects.create(
            user_id=alias.user_id, alias=alias, direction=Direction(direction).value,
            mail_from=mail_from.strip().strip("<>").lower()[:ADDRESS_LIMIT],
            header_from=summary.header_from, sender_address=summary.sender_address,
            subject=summary.subject, sent_at=summary.sent_at, received_at=now, size=len(raw),
            score=verdict.score, action=str(verdict.action), engine=verdict.engine[:20],
            reasons=[{"code": r.code, "text": r.text, "score": r.score}
                     for r in sorted(verdict.reasons, key=lambda r: -r.score)],
            authentication_results=authentication_results, key_id=ring.current_id,
            content=ring.seal(raw), expires_at=retention_end(now),
        )
        add_after_commit(Alias, alias.pk, "blocked_count")
        if held.direction == Direction.OUTBOUND:
            from mailcloak.quarantine.notify import send_not_sent_notice

            send_not_sent_notice(held)
    return held


def log_rejection(*, alias: Alias, mail_from: str, header_from: str, subject: str,
                  reason: str) -> None:
    """Record, metadata only, that mail for `alias` was refused during the SMTP conversation."""
    now = timezone.now()
    RejectionLog.objects.create(
        user_id=alias.user_id, alias=alias,
        mail_from=mail_from.strip().strip("<>").lower()[:ADDRESS_LIMIT],
        header_from=clean_text(decode_words(header_from))[:FIELD_LIMIT],
        subject=clean_text(decode_words(subject))[:FIELD_LIMIT],
        reason=clean_text(reason)[:FIELD_LIMIT] or "refused", created_at=now,
        expires_at=retention_end(now),
    )


def message_bytes(held: QuarantinedMessage) -> bytes:
    """The held message as it arrived (decrypted). Raises QuarantineKeyError."""
    return keyring().open(bytes(held.content))


def reseal_with_current_key(batch: int = 200) -> int:
    """Re-encrypt every held message sealed with an older key (after a rotation, so the old
    key can be dropped before its messages expire). Returns how many were re-encrypted."""
    ring = keyring()
    count = 0
    while True:
        stale = list(QuarantinedMessage.objects.exclude(key_id=ring.current_id)
                     .order_by("pk")[:batch])
        if not stale:
            return count
        for held in stale:
            with transaction.atomic():
                held.content = ring.seal(ring.open(bytes(held.content)))
                held.key_id = ring.current_id
                held.save(update_fields=["content", "key_id"])
            count += 1
