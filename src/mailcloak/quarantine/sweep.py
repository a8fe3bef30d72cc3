"""Retention: delete everything whose time is up, content and metadata, in small batches.

The condition is `expires_at <= now`, never "expired within the last hour", so rows that were
already past due (a sweep missed for days, a worker that was down) go in the next run.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import models
from django.utils import timezone

from mailcloak.quarantine.models import (
    Activity,
    ForwardedMail,
    QuarantinedMessage,
    RejectionLog,
)

log = logging.getLogger(__name__)

EXPIRING_MODELS: tuple[type[models.Model], ...] = (
    QuarantinedMessage, RejectionLog, ForwardedMail, Activity)


def sweep_expired(now: datetime | None = None, batch: int = 500) -> int:
    """Delete every quarantined message, rejection or forwarded-mail log line and activity
    entry whose `expires_at` is at or before `now`; returns how many rows went. Each batch is
    its own short transaction, so a large backlog never holds a long lock."""
    now = now or timezone.now()
    total = 0
    for model in EXPIRING_MODELS:
        deleted = _sweep(model, now, max(1, batch))
        if deleted:
            log.info("quarantine sweep: deleted %d expired %s", deleted,
                     model._meta.verbose_name_plural)
        total += deleted
    return total


def _sweep(model: type[models.Model], now: datetime, batch: int) -> int:
    deleted = 0
    manager = model._default_manager
    while True:
        ids = list(manager.filter(expires_at__lte=now).order_by("expires_at")
                   .values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        count, _ = manager.filter(pk__in=ids).delete()
        deleted += count
