"""MAILCLOAK_EVENT_LOOP: the SMTP server, the delivery worker and `mailcloak run` run on uvloop
by default and on asyncio's own loop when asked, with STARTTLS both ways, signals and the
database threads working on either."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import uvloop

from mailcloak import settings as mailcloak_settings
from mailcloak.aliases.models import Alias
from mailcloak.mail import dns as mail_dns
from mailcloak.mail import eventloop
from mailcloak.mail.deliver import DeliveryOptions
from mailcloak.mail.models import DeliveryJob
from mailcloak.mail.smtpd import start_smtp_server
from mailcloak.mail.worker import run_worker
from mailcloak.settings import ConfigError
from tests.support.dns_server import DnsServer
from tests.support.processes import MAILCLOAK, free_port, mailcloak, started, wait_for_port
from tests.support.sink import SmtpSink, tls_server_context

MESSAGE = (b"From: Jane <jane@sender.test>\r\nTo: {alias}\r\nSubject: over TLS\r\n"
           b"Message-ID: <loop-1@sender.test>\r\n\r\nsecret-body\r\n")


def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


# --- choosing the loop ------------------------------------------------------------------------


def test_uvloop_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILCLOAK_EVENT_LOOP", raising=False)
    mailcloak_settings.reset()

    async def which() -> tuple[str, str]:
        return eventloop.running_loop_name(), loop_module()

    assert eventloop.run(which()) == ("uvloop", "uvloop")


def test_asyncio_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_EVENT_LOOP", "asyncio")
    mailcloak_settings.reset()

    async def which() -> tuple[str, str]:
        return eventloop.running_loop_name(), loop_module()

    assert eventloop.run(which()) == ("asyncio", "asyncio")


def test_asyncio_where_uvloop_is_not_installed(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "mailcloak.eventloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert eventloop.loop_factory("uvloop") is asyncio.new_event_loop
    assert "uvloop is not installed" in caplog.text
    monkeypatch.undo()
    assert eventloop.loop_factory("uvloop") is uvloop.new_event_loop


SERVED = """
import gc
from mailcloak.mail import eventloop

async def main():
    return gc.get_freeze_count(), gc.get_threshold()[0]

print(*eventloop.serve(main(), kind="asyncio"))
"""


def test_a_service_settles_the_garbage_collector_before_serving() -> None:
    """What start-up made is frozen out of the collector's walks; young objects wait for
    more company. In a process of its own: both are for the life of the process."""
    frozen, young = map(int, subprocess.run([sys.executable, "-c", SERVED], check=True,
                                            capture_output=True, text=True).stdout.split())
    assert frozen > 10_000  # the modules and objects imported before serving
    assert young == eventloop.GC_YOUNG_THRESHOLD != 700


def test_an_unknown_loop_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"MAILCLOAK_EVENT_LOOP='trio': expected one of "
                                          r"uvloop, asyncio"):
        mailcloak_settings.load(dict(os.environ, MAILCLOAK_EVENT_LOOP="trio"))


# --- in one process: SMTP in over STARTTLS, out over STARTTLS, on the chosen loop -------------


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_config(ca: trustme.CA, tmp_path: Path,
               lenient_spam_thresholds: None) -> mailcloak_settings.Config:
    issued = ca.issue_cert("mail.alias.test", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return mailcloak_settings.load(dict(os.environ, MAILCLOAK_TLS_CERT=str(cert),
                                        MAILCLOAK_TLS_KEY=str(key)))


@pytest.fixture
def mailbox_mx() -> Iterator[SmtpSink]:
    """The owner's MX on 127.0.0.3, offering STARTTLS, found through a loopback DNS server."""
    with SmtpSink("127.0.0.3", tls=tls_server_context("mx.mailbox.test")) as sink, \
            DnsServer() as dns_server:
        dns_server.add("mailbox.test", "MX", "10 mx.mailbox.test.")
        dns_server.add("mx.mailbox.test", "A", "127.0.0.3")
        with mail_dns.use_resolver(dns_server.resolver()):
            yield sink


def send_over_starttls(port: int, ca: trustme.CA, alias: Alias) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.starttls(context=context)[0] == 220
        assert client.sock.getpeercert()["subjectAltName"][0] == ("DNS", "mail.alias.test")
        client.sendmail("jane@sender.test", [alias.address],
                        MESSAGE.replace(b"{alias}", alias.address.encode()))


async def forward_once(config: mailcloak_settings.Config, ca: trustme.CA, alias: Alias,
                       sink: SmtpSink) -> str:
    """Start the server and a worker on the running loop, send one message through them;
    returns the loop's module."""
    server = await start_smtp_server(config, host="127.0.0.1", port=0)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(stop, options=DeliveryOptions(mx_port=sink.port)))
    try:
        await asyncio.to_thread(send_over_starttls, server.port, ca, alias)
        delivered = await asyncio.to_thread(
            sink.wait_for, lambda s: len(s.messages) == 1, timeout=15)
        assert delivered, "nothing delivered"
    finally:
        stop.set()
        await worker
        await server.stop()
    return loop_module()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_forwarding_over_starttls_both_ways(kind: str, tls_config: mailcloak_settings.Config,
                                            ca: trustme.CA, alias: Alias,
                                            mailbox_mx: SmtpSink) -> None:
    assert eventloop.run(forward_once(tls_config, ca, alias, mailbox_mx), kind=kind) == kind
    [received] = mailbox_mx.messages
    assert received.tls and received.rcpt_tos == ["owner@mailbox.test"]
    assert received.content.endswith(b"secret-body\r\n")
    assert DeliveryJob.objects.get().state == DeliveryJob.State.DELIVERED


# --- the commands as an operator runs them ----------------------------------------------------


def operator_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of `mailcloak` commands run in `data_dir`: none of this test run's
    settings, and their own metrics directory (in the data directory), so their sessions do
    not show in the metrics of the tests running beside this one."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR")
           and (not k.startswith("MAILCLOAK_") or k == "MAILCLOAK_DNS_SERVERS")}
    env.update(MAILCLOAK_DATA_DIR=str(data_dir), MAILCLOAK_DOMAINS="alias.test")
    env.update({f"MAILCLOAK_{key.upper()}": value for key, value in settings.items()})
    return env


def send_when_listening(port: int, server: subprocess.Popen[str], alias: str) -> None:
    """Send one message over STARTTLS (local mode's self-signed certificate) once the server
    answers."""
    deadline = time.monotonic() + 30
    while True:
        assert server.poll() is None, server.communicate()[1]
        try:
            client = smtplib.SMTP("127.0.0.1", port, timeout=10)
            break
        except OSError:
            assert time.monotonic() < deadline, "the server did not answer"
            time.sleep(0.1)
    with client:
        client.ehlo("client.test")
        assert client.starttls(context=ssl._create_unverified_context())[0] == 220
        client.sendmail("jane@sender.test", [alias],
                        MESSAGE.replace(b"{alias}", alias.encode()))


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, log = process.communicate(timeout=60)
    assert process.returncode == 0, log
    return log


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_smtpd_and_worker_processes_run_on_the_configured_loop(kind: str, tmp_path: Path) -> None:
    port = free_port()
    with SmtpSink("127.0.0.3", tls=tls_server_context("mx.mailbox.test")) as sink:
        env = operator_env(tmp_path, smtp_listen=f"127.0.0.1:{port}", smtp_processes="2",
                           transports=f"mailbox.test=[127.0.0.3]:{sink.port}",
                           spam_quarantine_score="1000", spam_reject_score="2000",
                           event_loop=kind)
        mailcloak(env, "migrate")
        mailcloak(env, "user", "add", "owner@mailbox.test")
        alias = mailcloak(env, "alias", "add", "owner@mailbox.test")
        with started(env, "smtpd") as smtpd, started(env, "worker") as worker:
            send_when_listening(port, smtpd, alias)
            assert sink.wait_for(lambda s: len(s.messages) == 1, timeout=30), "nothing delivered"
            smtpd_log, worker_log = stop(smtpd), stop(worker)
    assert sink.messages[0].tls
    running = [line for line in smtpd_log.splitlines() if f"({kind} event loop, process" in line]
    assert len(running) == 2, smtpd_log  # both server processes
    assert smtpd_log.count("stopped (process") == 2
    assert f"started ({kind} event loop)" in worker_log and "stopped" in worker_log
    assert "secret-body" not in smtpd_log + worker_log


@pytest.mark.slow
def test_mailcloak_run_serves_web_smtp_and_worker_on_uvloop(tmp_path: Path) -> None:
    smtp_port, web_port = free_port(), free_port()
    with SmtpSink("127.0.0.3") as sink:
        env = operator_env(tmp_path, smtp_listen=f"127.0.0.1:{smtp_port}",
                           web_listen=f"127.0.0.1:{web_port}",
                           transports=f"mailbox.test=[127.0.0.3]:{sink.port}",
                           spam_quarantine_score="1000", spam_reject_score="2000")
        mailcloak(env, "migrate")
        mailcloak(env, "user", "add", "owner@mailbox.test")
        alias = mailcloak(env, "alias", "add", "owner@mailbox.test")
        with started(env, "run") as running:
            send_when_listening(smtp_port, running, alias)
            assert sink.wait_for(lambda s: len(s.messages) == 1, timeout=30), "nothing delivered"
            wait_for_port("127.0.0.1", web_port)
            with socket.create_connection(("127.0.0.1", web_port), timeout=10) as web:
                web.sendall(b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                assert web.recv(12).startswith(b"HTTP/1.1 ")
            log = stop(running)
    assert f"SMTP server on 127.0.0.1:{smtp_port} (uvloop event loop)" in log
    assert "started (uvloop event loop)" in log  # the delivery worker
    assert "secret-body" not in log


@pytest.mark.slow
@pytest.mark.parametrize("taken", ["web", "smtp"])
def test_mailcloak_run_says_which_address_is_taken(taken: str, tmp_path: Path) -> None:
    smtp_port, web_port = free_port(), free_port()
    env = operator_env(tmp_path, smtp_listen=f"127.0.0.1:{smtp_port}",
                       web_listen=f"127.0.0.1:{web_port}")
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", web_port if taken == "web" else smtp_port))
        occupant.listen()
        done = subprocess.run([MAILCLOAK, "run"], env=env, capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 1, done.stderr
    expected = (f"the web app cannot start on 127.0.0.1:{web_port}" if taken == "web"
                else f"cannot listen on 127.0.0.1:{smtp_port}")
    assert expected in done.stderr
    assert "Traceback" not in done.stderr and "exception was never retrieved" not in done.stderr
