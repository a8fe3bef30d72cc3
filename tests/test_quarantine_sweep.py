"""Retention: everything past `expires_at` goes, however late the sweep runs; nothing past it is
shown even before the sweep; the activity log keeps its own retention."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias
from mailcloak.cli import main
from mailcloak.quarantine import activity
from mailcloak.quarantine.models import Activity, QuarantinedMessage, RejectionLog
from mailcloak.quarantine.store import log_rejection
from mailcloak.quarantine.sweep import sweep_expired
from tests.support.quarantine import hold


def age(alias: Alias, *, days: float) -> QuarantinedMessage:
    """A held message that arrived `days` ago (retention 7 days)."""
    held = hold(alias)
    arrived = timezone.now() - timedelta(days=days)
    QuarantinedMessage.objects.filter(pk=held.pk).update(
        received_at=arrived, expires_at=arrived + timedelta(days=7))
    return held


def test_sweep_deletes_what_is_due_and_keeps_the_rest(alias: Alias) -> None:
    fresh, due = age(alias, days=1), age(alias, days=7.01)
    assert sweep_expired() == 1
    assert list(QuarantinedMessage.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert due.pk not in QuarantinedMessage.objects.values_list("pk", flat=True)


def test_a_sweep_missed_for_days_catches_up_in_batches(alias: Alias) -> None:
    for days in (8, 9, 12, 30, 7.5, 11, 10):
        age(alias, days=days)
    kept = age(alias, days=6.9)
    log_rejection(alias=alias, mail_from="a@spam.example", header_from="", subject="",
                  reason="spam")
    RejectionLog.objects.update(expires_at=timezone.now() - timedelta(days=3))
    assert sweep_expired(batch=2) == 8
    assert list(QuarantinedMessage.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not RejectionLog.objects.exists()


def test_expiry_exactly_now_is_due(alias: Alias) -> None:
    held = hold(alias)
    assert sweep_expired(now=held.expires_at - timedelta(seconds=1)) == 0
    assert sweep_expired(now=held.expires_at) == 1


def test_activity_is_kept_for_its_own_retention(user: User) -> None:
    entry = activity.record(user, Activity.Action.DELETE, via=Activity.Via.WEB, target="x")
    assert sweep_expired(now=timezone.now() + timedelta(days=8)) == 0
    assert Activity.objects.filter(pk=entry.pk).exists()
    assert sweep_expired(now=entry.expires_at) == 1
    assert not Activity.objects.exists()


def test_pages_never_show_what_is_past_due(logged_in: Client, alias: Alias) -> None:
    visible, due = hold(alias), age(alias, days=8)
    QuarantinedMessage.objects.filter(pk=visible.pk).update(subject="still here")
    QuarantinedMessage.objects.filter(pk=due.pk).update(subject="long gone")
    page = logged_in.get("/quarantine/").content.decode()
    assert "still here" in page and "long gone" not in page
    assert logged_in.get(f"/quarantine/{due.pk}/").status_code == 404
    assert logged_in.get(f"/quarantine/{due.pk}/raw/").status_code == 404


def test_the_list_says_when_each_message_goes(logged_in: Client, alias: Alias) -> None:
    age(alias, days=4.5)
    assert "deleted in 3 days" in logged_in.get("/quarantine/").content.decode()


def test_cli_sweep(alias: Alias, capsys: pytest.CaptureFixture[str]) -> None:
    age(alias, days=9)
    assert main(["quarantine", "sweep"]) == 0
    assert capsys.readouterr().out == "deleted 1 expired quarantine entries\n"
    assert not QuarantinedMessage.objects.exists()
