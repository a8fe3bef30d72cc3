"""The privacy page: public, linked from every page, and its periods are the running settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from mailcloak import settings as mailcloak_settings
from mailcloak.project.privacy import describe_duration


@pytest.mark.django_db
def test_anyone_can_read_it_from_the_footer(client: Client) -> None:
    login = client.get("/accounts/login/").content.decode()
    assert 'href="/privacy/"' in login.split('class="site-footer"')[1]
    page = client.get("/privacy/")
    assert page.status_code == 200
    assert "what this Mailcloak stores, for how long, and why" in page.content.decode()


@pytest.mark.django_db
def test_the_periods_are_the_configured_ones(client: Client,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_QUARANTINE_DAYS", "11")
    monkeypatch.setenv("MAILCLOAK_MAX_QUEUE_LIFETIME", "36h")
    mailcloak_settings.reset()
    html = client.get("/privacy/").content.decode()
    quarantine = html.split('id="quarantine"')[1].split("</tr>")[0]
    assert "<strong>11 days</strong>" in quarantine
    assert "<strong>11 days</strong>" in html.split('id="rejections"')[1].split("</tr>")[0]
    assert "<strong>36 hours</strong>" in html.split('id="forwarded"')[1].split("</tr>")[0]
    assert "<strong>30 days</strong>" in html  # the quarantine activity log (its constant)
    assert "7 days" not in quarantine and "5 days" not in html


@pytest.mark.django_db
def test_it_says_whether_logs_name_addresses(client: Client,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    logs = client.get("/privacy/").content.decode().split('id="logs"')[1].split("</li>")[0]
    assert "keyed hash" in logs and "currently logs full email addresses" not in logs
    monkeypatch.setenv("MAILCLOAK_LOG_ADDRESSES", "1")
    mailcloak_settings.reset()
    logs = client.get("/privacy/").content.decode().split('id="logs"')[1].split("</li>")[0]
    assert "currently logs full email addresses" in logs


def test_durations_read_naturally() -> None:
    assert describe_duration(timedelta(days=5)) == "5 days"
    assert describe_duration(timedelta(days=1)) == "1 day"
    assert describe_duration(timedelta(hours=36)) == "36 hours"
    assert describe_duration(timedelta(minutes=90)) == "90 minutes"
    assert describe_duration(timedelta(seconds=61)) == "61 seconds"
