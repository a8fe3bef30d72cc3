"""The privacy page: what Mailcloak stores, for how long, and why.

Every period on the page comes from the running configuration or from the constant the code
deletes by, so the page cannot drift from what the service does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.ratelimit import KEEP_WINDOWS_FOR
from mailcloak.mail.reputation import WINDOW as REPUTATION_WINDOW
from mailcloak.quarantine.activity import RETENTION as ACTIVITY_RETENTION


def describe_duration(period: timedelta) -> str:
    """`5 days`, `1 day`, `36 hours`, `90 minutes`: the largest unit that divides it."""
    seconds = int(period.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "0 seconds"


@dataclass(frozen=True)
class Retention:
    quarantine: str  # held mail, rejection log, forwarded-mail list
    queue_lifetime: str  # longest a message waits in the delivery queue
    delivery_records: str  # records of finished deliveries, bounces, refused replies
    activity: str
    rate_counters: str
    reputation_window: str
    session: str
    log_addresses: bool
    metrics_enabled: bool


def current_retention() -> Retention:
    config = mailcloak_settings.get()
    return Retention(
        quarantine=describe_duration(timedelta(days=config.quarantine_days)),
        queue_lifetime=describe_duration(timedelta(seconds=config.max_queue_lifetime)),
        delivery_records=describe_duration(timedelta(days=config.delivery_record_days)),
        activity=describe_duration(ACTIVITY_RETENTION),
        rate_counters=describe_duration(KEEP_WINDOWS_FOR),
        reputation_window=describe_duration(REPUTATION_WINDOW),
        session=describe_duration(timedelta(seconds=settings.SESSION_COOKIE_AGE)),
        log_addresses=config.log_addresses,
        metrics_enabled=bool(config.metrics_token),
    )


@require_GET
def privacy(request: HttpRequest) -> HttpResponse:
    return render(request, "privacy.html", {"retention": current_retention()})
