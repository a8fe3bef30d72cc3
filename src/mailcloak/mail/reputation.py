"""Sending reputation: pause an alias, or a whole account, whose mail bounces or draws spam
complaints too often, before it costs every user our IP's and domains' good name.

Measured over the last 7 days, per recipient of mail sent from aliases (replies and new
conversations): bounces (our delivery failed, or a DSN came back) and complaints (ARF
feedback reports arriving at our VERP addresses). Past MAILCLOAK_PAUSE_BOUNCE_PERCENT or
MAILCLOAK_PAUSE_COMPLAINT_PERCENT, once at least MAILCLOAK_PAUSE_MIN_RECIPIENTS were sent to,
a SendingPause is recorded: the SMTP server answers 550 5.7.1 "sending paused" and the
operator finds it in the admin, where resuming is one action.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.aliases.models import Alias
from mailcloak.mail.models import Bounce, DeliveryJob, QueuedMessage, SendingPause

log = logging.getLogger("mailcloak.reputation")

WINDOW = timedelta(days=7)
_FEEDBACK_REPORT = re.compile(
    rb"^content-type:[^\n]*multipart/report[^\n]*(?:\n[ \t][^\n]*)*report-type=\"?feedback-report",
    re.IGNORECASE | re.MULTILINE)


def is_feedback_report(raw: bytes) -> bool:
    """An ARF spam complaint (RFC 5965) rather than a delivery status notification."""
    return _FEEDBACK_REPORT.search(raw[:20000].replace(b"\r\n", b"\n")) is not None


def is_paused(alias: Alias) -> bool:
    return active_pauses().filter(Q(alias=alias) | Q(alias__isnull=True,
                                                     user_id=alias.user_id)).exists()


def active_pauses() -> QuerySet[SendingPause]:
    return SendingPause.objects.filter(lifted_at__isnull=True)


def review(alias_id: int | None) -> SendingPause | None:
    """After a bounce or complaint of mail sent from `alias_id`: pause the alias, or its
    owner's whole account, when its recent record crosses a threshold."""
    alias = Alias.objects.filter(pk=alias_id).first() if alias_id else None
    if alias is None or is_paused(alias):
        return None
    reason = _verdict(Q(message__alias_id=alias.pk), Q(alias_id=alias.pk))
    if reason:
        return _pause(alias, reason, whole_account=False)
    reason = _verdict(Q(message__alias__user_id=alias.user_id), Q(alias__user_id=alias.user_id))
    if reason:
        return _pause(alias, reason, whole_account=True)
    return None


def _verdict(jobs: Q, bounces: Q) -> str:
    config = mailcloak_settings.get()
    since = timezone.now() - WINDOW
    sent = DeliveryJob.objects.filter(jobs, message__kind=QueuedMessage.Kind.REPLY,
                                      message__created_at__gte=since).count()
    if sent < config.pause_min_recipients:
        return ""
    recent = Bounce.objects.filter(bounces, kind=QueuedMessage.Kind.REPLY, created_at__gte=since)
    complaints = recent.filter(source=Bounce.Source.COMPLAINT).count()
    failures = recent.exclude(source=Bounce.Source.COMPLAINT).count()
    if failures * 100 >= config.pause_bounce_percent * sent:
        return f"{failures} of {sent} recipients bounced in 7 days"
    if complaints * 100 >= config.pause_complaint_percent * sent:
        return f"{complaints} spam complaints for {sent} recipients in 7 days"
    return ""


def _pause(alias: Alias, reason: str, *, whole_account: bool) -> SendingPause:
    pause = SendingPause.objects.create(user_id=alias.user_id,
                                        alias=None if whole_account else alias, reason=reason)
    log.warning("sending paused for %s %s: %s", "user" if whole_account else "alias",
                alias.user_id if whole_account else alias.pk, reason)
    return pause
