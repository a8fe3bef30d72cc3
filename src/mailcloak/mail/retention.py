"""Retention of delivery records: what the queue remembers after a message has gone.

A message's content is dropped as soon as its last delivery finishes (mail.jobs); its record
(envelope sender, recipients, the server that took it, the last error) and the bounces and
refused replies recorded against aliases are deleted MAILCLOAK_DELIVERY_RECORD_DAYS later.
Run hourly by the maintenance loop; deletes in small batches, everything past due
(`<= cutoff`), so a missed run leaves nothing behind.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.models import Bounce, DeliveryJob, QueuedMessage, RefusedReply

log = logging.getLogger(__name__)


def cutoff(now: datetime | None = None) -> datetime:
    days = mailcloak_settings.get().delivery_record_days
    return (now or timezone.now()) - timedelta(days=days)


def prune_delivery_records(now: datetime | None = None, batch: int = 500) -> int:
    """Delete finished messages (with their jobs), bounces and refused replies older than the
    retention; returns how many rows went. A message with a delivery still waiting stays."""
    before = cutoff(now)
    waiting = DeliveryJob.objects.filter(message=models.OuterRef("pk"),
                                         state=DeliveryJob.State.QUEUED)
    finished = QueuedMessage.objects.filter(created_at__lte=before).exclude(
        models.Exists(waiting))
    total = 0
    for rows in (finished, Bounce.objects.filter(created_at__lte=before),
                 RefusedReply.objects.filter(created_at__lte=before)):
        deleted = _delete_in_batches(rows, batch)
        if deleted:
            log.info("delivery records: deleted %d %s past retention", deleted,
                     rows.model._meta.verbose_name_plural)
        total += deleted
    return total


def _delete_in_batches(rows: models.QuerySet[models.Model], batch: int) -> int:
    deleted = 0
    while ids := list(rows.order_by("pk").values_list("pk", flat=True)[:max(1, batch)]):
        deleted += rows.model._default_manager.filter(pk__in=ids).delete()[0]
    return deleted
