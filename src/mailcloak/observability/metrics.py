"""The Prometheus exposition at /metrics: database figures plus this node's process samples.

The database figures (queue, deliveries, what became of received mail) are read at scrape
time and describe the whole cluster; the process samples (SMTP sessions and replies, spam
scan times, delivery attempts) are this node's processes added up from their multiprocess
files. See instruments.py for why both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta

from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from mailcloak.observability import SHARED_METRICS, figures

WINDOW = timedelta(hours=1)  # the span of the *_last_hour figures
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DatabaseCollector(Collector):
    """Figures every node reads alike from the shared database."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        queue = figures.queue_state(now)
        yield GaugeMetricFamily("mailcloak_queue_jobs", "Deliveries waiting (one per recipient).",
                                value=queue.waiting)
        yield GaugeMetricFamily("mailcloak_queue_deferred_jobs",
                                "Waiting deliveries that failed at least once.",
                                value=queue.deferred)
        yield GaugeMetricFamily("mailcloak_queue_oldest_age_seconds",
                                "Age of the oldest message still waiting.",
                                value=queue.oldest_age)
        since = now - WINDOW
        deliveries = GaugeMetricFamily(
            "mailcloak_deliveries_last_hour",
            "Recipients by delivery result and remote domain over the last hour (deferred: "
            "failed an attempt and waits for the next).", labels=["result", "domain"])
        for (result, domain), count in sorted(figures.deliveries(since).items()):
            deliveries.add_metric([result, domain], count)
        yield deliveries
        outcomes = GaugeMetricFamily(
            "mailcloak_messages_last_hour",
            "Messages over the last hour by outcome (forwarded, sent, system, quarantined, "
            "rejected, refused, bounce_reported) and reason.", labels=["outcome", "reason"])
        for (outcome, reason), count in sorted(figures.mail_outcomes(since).items()):
            outcomes.add_metric([outcome, reason], count)
        yield outcomes


def _forget_dead_processes(directory: str) -> None:
    """Live gauges (open SMTP sessions) of processes that are gone must not count."""
    for name in os.listdir(directory):
        if name.startswith("gauge_live") and name.endswith(".db"):
            pid = int(name.rsplit("_", 1)[1].removesuffix(".db"))
            if not _alive(pid):
                mark_process_dead(pid, directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exposition() -> bytes:
    """The text exposition of every metric, as Prometheus reads it."""
    registry = CollectorRegistry()
    if SHARED_METRICS is not None:
        _forget_dead_processes(str(SHARED_METRICS))
        MultiProcessCollector(registry, path=str(SHARED_METRICS))
    else:  # no shared directory: this process's own samples
        registry.register(REGISTRY)
    registry.register(DatabaseCollector())
    return generate_latest(registry)
