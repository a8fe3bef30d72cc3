"""Rate limits that hold across processes and nodes: counters in the shared database.

    charge([Charge("user-messages", str(user.pk), 1, config.send_messages_per_user), ...])

Each limit is a fixed window (an hour, a day) with one RateCounter row per (scope, key,
window start). Taking from it is one conditional UPDATE ... SET count = count + n WHERE
count + n <= limit: SQLite serialises writers and PostgreSQL re-checks the condition on the
row it locked, so two nodes can never both take the last unit. Several limits are charged
all or nothing, in a savepoint: a refusal counts nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.models import RateCounter
from mailcloak.settings import Rate

KEEP_WINDOWS_FOR = timedelta(days=2)  # the longest window is a day


@dataclass(frozen=True)
class Charge:
    scope: str  # what is counted: "user-messages", "alias-recipients", "alias-creations"...
    key: str  # whose: a user or alias id
    amount: int
    rates: tuple[Rate, ...]


class RateLimited(Exception):
    """A limit would be exceeded; nothing was counted."""

    def __init__(self, scope: str, rate: Rate) -> None:
        super().__init__(f"{scope} limit {rate} reached")
        self.scope = scope
        self.rate = rate


def charge(charges: Iterable[Charge], now: datetime | None = None) -> None:
    """Count every charge against each of its rates, or none of them: raises RateLimited
    for the first limit that would be exceeded."""
    now = now or timezone.now()
    with transaction.atomic():
        for item in charges:
            for rate in item.rates:
                _take(item, rate, now)


def rates_for(rates: tuple[Rate, ...], joined: datetime, now: datetime | None = None
              ) -> tuple[Rate, ...]:
    """`rates`, reduced to MAILCLOAK_NEW_ACCOUNT_LIMIT_PERCENT for an account that joined
    less than MAILCLOAK_NEW_ACCOUNT_DAYS ago."""
    config = mailcloak_settings.get()
    now = now or timezone.now()
    if now - joined >= timedelta(days=config.new_account_days):
        return rates
    percent = config.new_account_limit_percent
    return tuple(Rate(max(1, rate.count * percent // 100), rate.seconds) for rate in rates)


def used(scope: str, key: str, rate: Rate, now: datetime | None = None) -> int:
    """How much of `rate` is used in the current window."""
    window = window_start(now or timezone.now(), rate.seconds)
    row = RateCounter.objects.filter(scope=_scope(scope, rate), key=key,
                                     window_start=window).first()
    return row.count if row else 0


def prune(now: datetime | None = None) -> int:
    """Delete counters of windows long past; returns how many."""
    cutoff = (now or timezone.now()) - KEEP_WINDOWS_FOR
    deleted, _ = RateCounter.objects.filter(window_start__lt=cutoff).delete()
    return deleted


def window_start(now: datetime, seconds: int) -> datetime:
    """Windows are aligned on the epoch (whole hours, UTC days)."""
    stamp = int(now.timestamp()) // seconds * seconds
    return datetime.fromtimestamp(stamp, tz=UTC)


def _take(item: Charge, rate: Rate, now: datetime) -> None:
    scope, window = _scope(item.scope, rate), window_start(now, rate.seconds)
    RateCounter.objects.bulk_create(
        [RateCounter(scope=scope, key=item.key, window_start=window, count=0)],
        ignore_conflicts=True)
    taken = (RateCounter.objects
             .filter(scope=scope, key=item.key, window_start=window,
                     count__lte=rate.count - item.amount)
             .update(count=F("count") + item.amount))
    if not taken:
        raise RateLimited(item.scope, rate)


def _scope(scope: str, rate: Rate) -> str:
    return f"{scope}/{rate.seconds}"
