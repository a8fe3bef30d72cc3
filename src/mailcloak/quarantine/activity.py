"""The owner's activity log: what was done in the quarantine, when and how. Metadata only."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from mailcloak.accounts.models import User
from mailcloak.quarantine.models import Activity

RETENTION = timedelta(days=30)


def record(user: User, action: Activity.Action, *, via: Activity.Via, target: str = "",
           alias_address: str = "", detail: str = "") -> Activity:
    now = timezone.now()
    return Activity.objects.create(user=user, action=action, via=via, target=target[:320],
                                   alias_address=alias_address[:320], detail=detail[:200],
                                   created_at=now, expires_at=now + RETENTION)
