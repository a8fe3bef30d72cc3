"""Telling owners about held mail without flooding them.

Inbound: a digest listing what was held since the last one, with one-click links (block the
sender, disable the alias), at most once a day for `daily` owners and at every run for
`immediately` (the worker calls `send_digests` at least hourly). Outbound: an immediate "not
sent" notice, since the owner is waiting for that message to arrive somewhere.

Mail goes out through Django's send_mail, which Mailcloak routes through its own queue.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import User
from mailcloak.quarantine.links import LinkAction, action_url
from mailcloak.quarantine.models import DigestRecord, Direction, QuarantinedMessage

log = logging.getLogger(__name__)

DAILY = timedelta(days=1)
MAX_LISTED = 30  # messages shown in one digest; the rest are counted
NEVER = datetime(2000, 1, 1, tzinfo=UTC)
_SCHEME = re.compile(r"(?i)\b(https?|ftp)://")


def defang(text: str) -> str:
    """A spammer's subject shown in our mail must not turn into a clickable link there."""
    return _SCHEME.sub(lambda match: f"{match.group(1)}[:]//", text)


def quarantine_url() -> str:
    return mailcloak_settings.get().public_url + reverse("quarantine:list")


# --- digests ---------------------------------------------------------------------------------


def send_digests(now: datetime | None = None) -> int:
    """Send every owner who is due one a digest of newly held mail; returns how many went."""
    now = now or timezone.now()
    waiting = (QuarantinedMessage.objects.live(now)
               .filter(notified_at__isnull=True, direction=Direction.INBOUND,
                       user__is_active=True,
                       user__quarantine_digest__in=[User.Digest.DAILY, User.Digest.IMMEDIATELY])
               .values_list("user_id", flat=True).distinct())
    sent = 0
    for user in User.objects.filter(pk__in=list(waiting)).order_by("pk"):
        sent += send_digest(user, now)
    return sent


def send_digest(user: User, now: datetime) -> bool:
    """One digest for `user` if one is due; the messages it lists are marked as notified in
    the same transaction, so two workers never send the same messages twice."""
    DigestRecord.objects.get_or_create(user=user, defaults={"last_sent_at": NEVER})
    with transaction.atomic():
        record = DigestRecord.objects.select_for_update().get(user=user)
        if user.quarantine_digest == User.Digest.DAILY and record.last_sent_at > now - DAILY:
            return False
        pending = (QuarantinedMessage.objects.live(now)
                   .filter(user=user, notified_at__isnull=True, direction=Direction.INBOUND)
                   .select_related("alias"))
        messages = list(pending[:MAX_LISTED])
        if not messages:
            return False
        total = pending.count()
        pending.update(notified_at=now)
        _send(user, f"{total} message{'s' if total != 1 else ''} held in your quarantine",
              "quarantine/email/digest.txt", {
                  "entries": [_entry(held, now) for held in messages],
                  "more": total - len(messages), "total": total,
              })
        record.last_sent_at = now
        record.save(update_fields=["last_sent_at"])
    return True


def _entry(held: QuarantinedMessage, now: datetime) -> dict[str, object]:
    reasons = held.top_reasons(1)
    return {
        "sender": defang(held.header_from or held.mail_from or "(no sender)"),
        "subject": defang(held.subject or "(no subject)"),
        "alias": held.alias.address,
        "score": held.score,
        "reason": defang(str(reasons[0]["text"])) if reasons else "",
        "days_left": held.days_left(now),
        "block_sender": held.block_address,
        "block_url": action_url(held, LinkAction.BLOCK) if held.block_address else "",
        "disable_url": action_url(held, LinkAction.DISABLE) if held.alias.enabled else "",
    }


# --- outbound ----------------------------------------------------------------------------------


def send_not_sent_notice(held: QuarantinedMessage) -> None:
    """Tell the owner at once that mail from their alias was held as spam (called inside the
    transaction that stores it)."""
    now = timezone.now()
    reasons = [defang(str(reason["text"])) for reason in held.top_reasons(3)]
    _send(held.user, "Your message was not sent", "quarantine/email/not_sent.txt", {
        "alias": held.alias.address, "subject": defang(held.subject or "(no subject)"),
        "score": held.score, "reasons": reasons, "days_left": held.days_left(now),
    })
    QuarantinedMessage.objects.filter(pk=held.pk).update(notified_at=now)


def _send(user: User, subject: str, template: str, context: dict[str, object]) -> None:
    body = render_to_string(template, {**context, "quarantine_url": quarantine_url(),
                                       "settings_url": _settings_url()})
    send_mail(f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}{subject}", body,
              settings.DEFAULT_FROM_EMAIL, [user.email])
    log.info("quarantine notice sent to user %s", user.pk)


def _settings_url() -> str:
    return mailcloak_settings.get().public_url + reverse("quarantine:settings")
