"""Delivery records are deleted once MAILCLOAK_DELIVERY_RECORD_DAYS have passed, and the privacy
page says so with the configured figure."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.aliases.models import Alias
from mailcloak.mail.models import Bounce, DeliveryJob, QueuedMessage, RefusedReply
from mailcloak.mail.queue import enqueue
from mailcloak.mail.retention import prune_delivery_records
from mailcloak.maintenance import run_due

pytestmark = pytest.mark.django_db


def message(alias: Alias, age: timedelta, state: str) -> QueuedMessage:
    queued = enqueue(kind="forward", mail_from="b@alias.test", recipients=["a@remote.test"],
                     content=b"Subject: x\r\n\r\nbody\r\n", alias=alias)
    QueuedMessage.objects.filter(pk=queued.pk).update(created_at=timezone.now() - age)
    DeliveryJob.objects.filter(message=queued).update(state=state)
    return queued


def test_finished_records_past_retention_go_and_the_rest_stay(alias: Alias) -> None:
    old_done = message(alias, timedelta(days=31), DeliveryJob.State.DELIVERED)
    old_bounced = message(alias, timedelta(days=40), DeliveryJob.State.BOUNCED)
    old_waiting = message(alias, timedelta(days=31), DeliveryJob.State.QUEUED)
    recent = message(alias, timedelta(days=29), DeliveryJob.State.DELIVERED)
    for age in (timedelta(days=31), timedelta(days=1)):
        Bounce.objects.create(alias=alias, recipient="a@remote.test", source="delivery",
                              reason="550", created_at=timezone.now() - age)
        RefusedReply.objects.create(alias=alias, reason="forged",
                                    created_at=timezone.now() - age)
    assert prune_delivery_records(batch=1) == 2 + 2 + 1 + 1  # two messages with their jobs
    assert set(QueuedMessage.objects.values_list("pk", flat=True)) == {old_waiting.pk,
                                                                      recent.pk}
    assert not DeliveryJob.objects.filter(message__in=[old_done.pk, old_bounced.pk]).exists()
    assert Bounce.objects.count() == RefusedReply.objects.count() == 1


def test_the_period_is_the_setting_and_the_workers_run_it(alias: Alias,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    message(alias, timedelta(days=9), DeliveryJob.State.DELIVERED)
    cache.clear()
    assert run_due()["delivery-records"] == 0
    monkeypatch.setenv("MAILCLOAK_DELIVERY_RECORD_DAYS", "8")
    mailcloak_settings.reset()
    cache.clear()
    assert run_due()["delivery-records"] == 2  # the message and its job
    monkeypatch.setenv("MAILCLOAK_DELIVERY_RECORD_DAYS", "6")
    mailcloak_settings.reset()
    with pytest.raises(mailcloak_settings.ConfigError, match="at least 7"):
        mailcloak_settings.get()


def test_the_privacy_page_shows_the_period(client: Client,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_DELIVERY_RECORD_DAYS", "45")
    mailcloak_settings.reset()
    row = client.get("/privacy/").content.decode().split('id="delivery-records"')[1]
    assert "<strong>45 days</strong> after the message arrived" in row.split("</tr>")[0]
