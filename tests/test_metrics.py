"""/metrics: protected by a bearer token, and telling the truth after real mail went through a
real SMTP server, a real delivery worker and a real receiving server on loopback."""

from __future__ import annotations

import multiprocessing
import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from mailcloak import settings as mailcloak_settings
from mailcloak.aliases.models import Alias
from mailcloak.mail.queue import enqueue
from mailcloak.mail.worker import process_due_jobs
from mailcloak.observability.instruments import SMTP_SESSIONS_ACTIVE
from mailcloak.observability.metrics import exposition
from tests.support.sink import SmtpSink
from tests.support.smtp_client import RunningServer

TOKEN = "a-long-random-metrics-token-for-tests"
MESSAGE = (b"From: Shop <news@shop.test>\r\nTo: someone\r\nSubject: offers\r\n"
           b"Message-ID: <o1@shop.test>\r\n\r\nOur offers this week.\r\n")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: bytes | str) -> Samples:
    """Every sample of an exposition by (name, labels)."""
    body = text.decode() if isinstance(text, bytes) else text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a process-local counter rose (other tests in this process count too)."""
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MAILCLOAK_METRICS_TOKEN", TOKEN)
    mailcloak_settings.reset()
    return TOKEN


# --- protection -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_token_set_means_no_endpoint(client: Client) -> None:
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


@pytest.mark.django_db
@pytest.mark.usefixtures("token")
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN,
                                           f"Bearer {TOKEN}x"])
def test_a_request_without_the_token_is_unauthorized(client: Client,
                                                      authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"mailcloak_" not in response.content


@pytest.mark.django_db
def test_the_token_opens_it(client: Client, token: str) -> None:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    found = samples(response.content)
    assert value(found, "mailcloak_queue_jobs") == 0
    assert client.post("/metrics", headers={"Authorization": f"Bearer {token}"}
                       ).status_code == 405


# --- content after real mail ----------------------------------------------------------------


@pytest.fixture
def mailbox_sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    """The owners' mail provider: mailbox.test is routed to a sink on loopback."""
    with SmtpSink("127.0.0.3", reject=["gone@mailbox.test"]) as sink:
        monkeypatch.setenv("MAILCLOAK_TRANSPORTS", f"mailbox.test=[127.0.0.3]:{sink.port}")
        mailcloak_settings.reset()
        yield sink


def send(server: RunningServer, recipients: list[str]) -> list[int]:
    with smtplib.SMTP(server.host, server.port) as client:
        client.ehlo("client.test")
        client.mail("news@shop.test")
        codes = [client.rcpt(recipient)[0] for recipient in recipients]
        if 250 in codes:
            codes.append(client.data(MESSAGE)[0])
        return codes


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("lenient_spam_thresholds")
def test_metrics_after_mail_went_through(client: Client, token: str, alias: Alias,
                                         mailbox_sink: SmtpSink) -> None:
    before = samples(exposition())
    with RunningServer() as server:
        assert send(server, ["nobody@alias.test", alias.address]) == [550, 250, 250]
        assert send(server, ["nobody@alias.test"]) == [550]

    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    queued = samples(response.content)
    # From the database: the cluster's queue and what became of the mail.
    assert value(queued, "mailcloak_queue_jobs") == 1
    assert value(queued, "mailcloak_queue_deferred_jobs") == 0
    assert value(queued, "mailcloak_queue_oldest_age_seconds") >= 0
    assert value(queued, "mailcloak_messages_last_hour", outcome="forwarded",
                 reason="forward") == 1
    # From this node's processes: sessions, replies by reason, scan time.
    assert grew(before, queued, "mailcloak_smtp_sessions_total") >= 2
    assert grew(before, queued, "mailcloak_smtp_replies_total", stage="rcpt", code="550",
                status="5.1.1") >= 2
    assert grew(before, queued, "mailcloak_smtp_replies_total", stage="data", code="250",
                status="2.0.0") >= 1
    assert grew(before, queued, "mailcloak_spam_scan_seconds_count", engine="builtin") >= 1

    assert process_due_jobs() == 1
    assert len(mailbox_sink.messages) == 1
    delivered = samples(exposition())
    assert value(delivered, "mailcloak_queue_jobs") == 0
    assert value(delivered, "mailcloak_deliveries_last_hour", result="delivered",
                 domain="mailbox.test") == 1
    assert grew(before, delivered, "mailcloak_delivery_attempts_total",
                result="delivered") >= 1
    text = exposition().decode()
    assert "owner@" not in text and "news@" not in text and alias.address not in text


@pytest.mark.django_db(transaction=True)
def test_deferred_and_bounced_deliveries_by_domain(alias: Alias, mailbox_sink: SmtpSink) -> None:
    mailbox_sink.tempfail_first = 1
    enqueue(kind="forward", mail_from="b@alias.test", recipients=["owner@mailbox.test"],
            content=MESSAGE, alias=alias)
    enqueue(kind="forward", mail_from="b@alias.test", recipients=["gone@mailbox.test"],
            content=MESSAGE, alias=alias)
    assert process_due_jobs() == 2
    found = samples(exposition())
    assert value(found, "mailcloak_deliveries_last_hour", result="deferred",
                 domain="mailbox.test") == 1
    assert value(found, "mailcloak_deliveries_last_hour", result="bounced",
                 domain="mailbox.test") == 1
    assert value(found, "mailcloak_queue_deferred_jobs") == 1
    assert value(found, "mailcloak_messages_last_hour", outcome="bounce_reported",
                 reason="delivery") == 1


def _open_a_session_and_die() -> None:
    SMTP_SESSIONS_ACTIVE.inc()  # a process killed with a session open never decrements


def test_open_sessions_of_dead_processes_do_not_count(db: None) -> None:
    before = value(samples(exposition()), "mailcloak_smtp_sessions_active")
    child = multiprocessing.get_context("fork").Process(target=_open_a_session_and_die)
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert value(samples(exposition()), "mailcloak_smtp_sessions_active") == before


def test_an_unwritable_data_directory_keeps_samples_in_memory(tmp_path: Path) -> None:
    """A command that cannot write the data directory must not fail on import: it keeps its
    own samples. (A path under a plain file cannot be made, whoever runs the test.)"""
    (tmp_path / "file").write_text("")
    env = {key: value for key, value in os.environ.items()
           if key != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(MAILCLOAK_DATA_DIR=str(tmp_path / "file" / "data"),
               MAILCLOAK_SECRET_KEY="s" * 40)
    code = ("from mailcloak.observability import SHARED_METRICS\n"
            "from mailcloak.observability.instruments import SMTP_SESSIONS\n"
            "from prometheus_client import REGISTRY, generate_latest\n"
            "SMTP_SESSIONS.inc()\n"
            "print(SHARED_METRICS, generate_latest(REGISTRY).decode())\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("None ")
    assert "mailcloak_smtp_sessions_total 1.0" in result.stdout
