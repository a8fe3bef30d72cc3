"""Periodic housekeeping run by the workers: the quarantine's retention sweep and digests,
pruning of old rate-limit counters, and the DNS checks of users' own domains.

Every worker process runs this loop, but each task runs on one of them per interval: a task is
claimed with an atomic "add if absent" in the shared database cache, so several processes or
nodes never sweep or send digests twice. A run that fails is tried again after its interval;
a missed run leaves nothing behind, since each task catches up on everything due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import close_old_connections
from django.utils import timezone

log = logging.getLogger("mailcloak.maintenance")

CHECK_EVERY = 60.0  # seconds between looks at what is due


def _sweep(now: datetime) -> int:
    from mailcloak.quarantine.sweep import sweep_expired

    return sweep_expired(now)


def _digests(now: datetime) -> int:
    from mailcloak.quarantine.notify import send_digests

    return send_digests(now)


def _rate_counters(now: datetime) -> int:
    from mailcloak.mail.ratelimit import prune

    return prune(now)


def _domain_checks(now: datetime) -> int:
    from mailcloak.aliases.verification import check_due_domains

    return check_due_domains(now)


def _delivery_records(now: datetime) -> int:
    from mailcloak.mail.retention import prune_delivery_records

    return prune_delivery_records(now)


@dataclass(frozen=True)
class Task:
    name: str
    interval: int  # seconds
    run: Callable[[datetime], int]


TASKS = (
    Task("quarantine-sweep", 3600, _sweep),  # retention: at least hourly
    Task("quarantine-digests", 300, _digests),  # "immediately" means within five minutes
    Task("rate-counters", 3600, _rate_counters),  # sending-limit windows long past
    Task("delivery-records", 3600, _delivery_records),  # MAILCLOAK_DELIVERY_RECORD_DAYS
    # Each domain is checked every MAILCLOAK_DOMAIN_CHECK_INTERVAL; this looks for due ones.
    Task("domain-checks", 600, _domain_checks),
)


def run_due(now: datetime | None = None, tasks: tuple[Task, ...] = TASKS) -> dict[str, int]:
    """Run every task no process has run within its interval; returns what each did."""
    now = now or timezone.now()
    done: dict[str, int] = {}
    for task in tasks:
        if not cache.add(f"mailcloak:task:{task.name}", now.isoformat(), timeout=task.interval):
            continue  # another process ran it within the interval
        try:
            done[task.name] = task.run(now)
        except Exception:
            log.exception("maintenance task %s failed; it runs again in %d s", task.name,
                          task.interval)
    return done


def _run_due_in_thread() -> dict[str, int]:
    close_old_connections()
    return run_due()


async def run_maintenance(stop: asyncio.Event) -> None:
    """Look for due tasks every minute until `stop` is set."""
    while not stop.is_set():
        try:
            await sync_to_async(_run_due_in_thread, thread_sensitive=True)()
        except Exception:
            log.exception("maintenance check failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=CHECK_EVERY)
