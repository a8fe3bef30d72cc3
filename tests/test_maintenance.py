"""Housekeeping: each task runs once per interval across every process, and does its job."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from mailcloak import maintenance
from mailcloak.aliases.models import Alias
from mailcloak.maintenance import Task, run_due
from mailcloak.quarantine.models import QuarantinedMessage
from tests.support.quarantine import hold

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_claims_from_other_tests() -> None:
    cache.clear()


def test_the_sweep_deletes_what_is_past_due_and_keeps_the_rest(alias: Alias) -> None:
    old, fresh = hold(alias), hold(alias)
    QuarantinedMessage.objects.filter(pk=old.pk).update(
        expires_at=timezone.now() - timedelta(days=3))  # a sweep was missed for days
    assert run_due()["quarantine-sweep"] == 1
    assert list(QuarantinedMessage.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_a_task_runs_once_per_interval_whoever_asks() -> None:
    calls: list[str] = []
    task = Task("probe", 3600, lambda now: calls.append("ran") or 1)
    assert run_due(tasks=(task,)) == {"probe": 1}
    assert run_due(tasks=(task,)) == {}  # a second process within the hour: nothing
    cache.delete("mailcloak:task:probe")  # the interval has passed
    assert run_due(tasks=(task,)) == {"probe": 1}
    assert calls == ["ran", "ran"]


def test_a_failing_task_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    def broken(now: object) -> int:
        raise RuntimeError("boom")

    tasks = (Task("broken", 60, broken), Task("fine", 60, lambda now: 7))
    assert run_due(tasks=tasks) == {"fine": 7}
    assert "maintenance task broken failed" in caplog.text


def test_the_default_tasks_cover_retention_at_least_hourly() -> None:
    intervals = {task.name: task.interval for task in maintenance.TASKS}
    assert intervals["quarantine-sweep"] <= 3600


def test_old_rate_counters_are_pruned() -> None:
    from mailcloak.mail.models import RateCounter
    from mailcloak.mail.ratelimit import KEEP_WINDOWS_FOR

    now = timezone.now()
    RateCounter.objects.create(scope="test", key="old", window_start=now - KEEP_WINDOWS_FOR
                               - timedelta(hours=1), count=3)
    RateCounter.objects.create(scope="test", key="new", window_start=now, count=1)
    assert run_due(now)["rate-counters"] == 1
    assert list(RateCounter.objects.values_list("key", flat=True)) == ["new"]
