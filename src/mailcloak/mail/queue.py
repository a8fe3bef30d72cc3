"""Putting mail on the durable queue. Claiming and finishing jobs lives with the workers."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.aliases.models import Alias
from mailcloak.mail.models import DeliveryJob, QueuedMessage
from mailcloak.mail.rows import insert


def new_queue_id() -> str:
    return secrets.token_hex(8).upper()


def recipient_domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".")


def enqueue(*, kind: str, mail_from: str, recipients: Iterable[str], content: bytes,
            alias: Alias | None = None, queue_id: str | None = None) -> QueuedMessage:
    """Store one message with a delivery job per recipient, in one transaction.

    `queue_id` lets a caller that already named the message (in its VERP address) keep the name.
    """
    now = timezone.now()
    lifetime = timedelta(seconds=mailcloak_settings.get().max_queue_lifetime)
    message = QueuedMessage(queue_id=queue_id or new_queue_id(), kind=kind, mail_from=mail_from,
                            content=content, size=len(content), alias=alias, created_at=now)
    with transaction.atomic(savepoint=False):  # a caller's transaction is all-or-nothing anyway
        insert([message])
        insert([DeliveryJob(message=message, recipient=rcpt, domain=recipient_domain(rcpt),
                            next_attempt_at=now, expires_at=now + lifetime)
                for rcpt in dict.fromkeys(recipients)], set_ids=False)
    return message
