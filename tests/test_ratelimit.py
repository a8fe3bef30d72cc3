"""Sending and alias creation limits: database counters that every process and node shares."""

from __future__ import annotations

import email
import email.policy
import smtplib
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import AliasError, create_alias
from mailcloak.mail.models import RateCounter
from mailcloak.mail.ratelimit import Charge, RateLimited, charge, rates_for, used, window_start
from mailcloak.settings import ConfigError, Rate, parse_rates
from tests.support.dns_server import DnsServer
from tests.support.processes import Deployment, fresh_database
from tests.support.sink import SmtpSink

HOURLY = (Rate(3, 3600),)


@pytest.mark.django_db
def test_a_limit_takes_exactly_its_count_then_refuses() -> None:
    for _ in range(3):
        charge([Charge("user-messages", "7", 1, HOURLY)])
    with pytest.raises(RateLimited) as limited:
        charge([Charge("user-messages", "7", 1, HOURLY)])
    assert limited.value.rate == HOURLY[0]
    assert used("user-messages", "7", HOURLY[0]) == 3
    charge([Charge("user-messages", "8", 1, HOURLY)])  # another key has its own count


@pytest.mark.django_db
def test_charges_are_all_or_nothing() -> None:
    charge([Charge("user-recipients", "7", 2, HOURLY)])
    with pytest.raises(RateLimited):
        charge([Charge("user-messages", "7", 1, HOURLY),
                Charge("user-recipients", "7", 2, HOURLY)])
    assert used("user-messages", "7", HOURLY[0]) == 0
    assert used("user-recipients", "7", HOURLY[0]) == 2


@pytest.mark.django_db
def test_a_new_window_starts_from_zero() -> None:
    now = timezone.now()
    for _ in range(3):
        charge([Charge("alias-messages", "1", 1, HOURLY)], now=now)
    later = now + timedelta(hours=1)
    charge([Charge("alias-messages", "1", 1, HOURLY)], now=later)
    assert used("alias-messages", "1", HOURLY[0], now=later) == 1
    assert RateCounter.objects.count() == 2
    assert window_start(later, 3600).minute == 0


def test_new_accounts_get_a_share_of_each_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_NEW_ACCOUNT_DAYS", "7")
    monkeypatch.setenv("MAILCLOAK_NEW_ACCOUNT_LIMIT_PERCENT", "20")
    mailcloak_settings.reset()
    rates = (Rate(100, 3600), Rate(3, 86400))
    now = timezone.now()
    assert rates_for(rates, now - timedelta(days=2), now) == (Rate(20, 3600), Rate(1, 86400))
    assert rates_for(rates, now - timedelta(days=8), now) == rates


def test_limits_are_read_from_their_settings() -> None:
    assert parse_rates("100/h, 5/d,2/m") == (Rate(100, 3600), Rate(5, 86400), Rate(2, 60))
    assert parse_rates("") == ()
    with pytest.raises(ConfigError, match="SEND_MESSAGES_PER_USER"):
        mailcloak_settings.load({"MAILCLOAK_SEND_MESSAGES_PER_USER": "100/week"})


@pytest.mark.django_db
def test_alias_creation_is_limited(monkeypatch: pytest.MonkeyPatch, user: User) -> None:
    monkeypatch.setenv("MAILCLOAK_ALIAS_CREATIONS_PER_USER", "2/h")
    mailcloak_settings.reset()
    create_alias(user)
    create_alias(user)
    with pytest.raises(AliasError, match="at most 2 aliases per hour"):
        create_alias(user)
    assert Alias.objects.filter(user=user).count() == 2


# --- replies over the limit, across two real `mailcloak smtpd` processes --------------------

REPLY = ("From: Owner <owner@mailbox.test>\r\nTo: {to}\r\nSubject: Re: hello {n}\r\n"
         "Message-ID: <reply-{n}@mailbox.test>\r\n\r\nThanks for writing, {n}.\r\n")


def send_reply(port: int, to: str, number: int, answers: list[tuple[int, bytes]]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.mailbox.test")
        client.mail("owner@mailbox.test")
        client.rcpt(to)
        try:
            answers.append(client.data(REPLY.format(to=to, n=number).encode()))
        except smtplib.SMTPDataError as refused:
            answers.append((refused.smtp_code, refused.smtp_error))


def test_sending_limit_holds_across_two_smtp_processes(tmp_path: Path,
                                                       dns_server: DnsServer) -> None:
    dns_server.add("mailbox.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    try:
        with SmtpSink("127.0.0.3") as sink, fresh_database(tmp_path) as database_url:
            settings = {"transports": f"mailbox.test=[127.0.0.3]:{sink.port}",
                        "send_messages_per_user": "3/h", "new_account_days": "0",
                        "spam_quarantine_score": "1000",
                        "spam_reject_score": "2000"}
            first = Deployment(tmp_path, database_url, **settings)
            second = Deployment(tmp_path, database_url, **settings)
            first.cli("migrate")
            first.cli("user", "add", "owner@mailbox.test")
            alias = first.cli("alias", "add", "owner@mailbox.test").strip().splitlines()[-1]
            try:
                first.start("smtpd-a", "smtpd")
                second.start("smtpd-b", "smtpd")
                first.start("worker", "worker")
                reverse = _reverse_address(first.smtp_port, alias, sink)
                answers: list[tuple[int, bytes]] = []
                threads = [threading.Thread(target=send_reply, args=(
                    port, reverse, number, answers)) for number, port in enumerate(
                        [first.smtp_port, second.smtp_port] * 2)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(60)
            finally:
                first.stop_all()
                second.stop_all()
    finally:
        dns_server.remove("mailbox.test", "TXT")
    codes = sorted(code for code, _text in answers)
    assert codes == [250, 250, 250, 452], answers
    refused = next(text for code, text in answers if code == 452)
    assert refused.startswith(b"4.7.1 Sending limit reached (3 messages per hour")


def _reverse_address(port: int, alias: str, sink: SmtpSink) -> str:
    """A contact writes to the alias; the forwarded copy's From is its reverse address."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("jane@example.org", [alias],
                        f"From: Jane <jane@example.org>\r\nTo: {alias}\r\nSubject: hello\r\n"
                        "Message-ID: <hello@example.org>\r\n\r\nHello there.\r\n".encode())
    assert sink.wait_for(lambda s: len(s.messages) == 1, timeout=30), "nothing forwarded"
    forwarded = email.message_from_bytes(sink.messages[0].content, policy=email.policy.default)
    return str(forwarded["From"].addresses[0].addr_spec)
