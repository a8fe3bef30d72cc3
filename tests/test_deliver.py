"""Direct delivery against real SMTP sinks on 127.0.0.x and a real DNS server on loopback."""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.deliver import (
    Delivered,
    Deliverer,
    DeliveryOptions,
    DeliveryResult,
    KeptInLocalOutbox,
    PermanentFailure,
    TemporaryFailure,
    decoded_subject,
    to_crlf,
)
from mailcloak.mail.dns import use_resolver
from tests.support.dns_server import DnsServer
from tests.support.sink import SmtpSink, tls_server_context

MESSAGE = (b"From: sender@alias.test\r\nTo: friend@example.test\r\nSubject: hello\r\n"
           b"Message-ID: <m1@alias.test>\r\n\r\nHi there.\r\n.leading dot line\r\n")
SENDER = "sender@alias.test"

SinkFactory = Callable[..., SmtpSink]


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server, use_resolver(server.resolver()):
        yield server


@pytest.fixture
def sinks() -> Iterator[SinkFactory]:
    """Start sinks on several 127.0.0.x addresses sharing one port (MX delivery uses one)."""
    started: list[SmtpSink] = []

    def make(host: str = "127.0.0.3", **script: Any) -> SmtpSink:
        sink = SmtpSink(host, started[0].port if started else 0, **script).start()
        started.append(sink)
        return sink

    yield make
    for sink in started:
        sink.stop()


def options(sink: SmtpSink, **values: Any) -> DeliveryOptions:
    values.setdefault("connect_timeout", 2.0)
    values.setdefault("command_timeout", 5.0)
    values.setdefault("data_timeout", 5.0)
    return DeliveryOptions(mx_port=sink.port, **values)


def deliver(opts: DeliveryOptions, *messages: tuple[str, list[str], bytes],
            config: mailcloak_settings.Config | None = None) -> list[list[DeliveryResult]]:
    """Deliver the messages one after another through one Deliverer."""

    async def run() -> list[list[DeliveryResult]]:
        async with Deliverer(opts, config=config) as deliverer:
            return [await deliverer.deliver(*message) for message in messages]

    return asyncio.run(run())


def deliver_one(opts: DeliveryOptions, recipients: list[str], content: bytes = MESSAGE,
                config: mailcloak_settings.Config | None = None) -> list[DeliveryResult]:
    return deliver(opts, (SENDER, recipients, content), config=config)[0]


def production_config(tmp_path: Path, **values: str) -> mailcloak_settings.Config:
    env = {"MAILCLOAK_MODE": "production", "MAILCLOAK_DATA_DIR": str(tmp_path),
           "MAILCLOAK_DOMAINS": "alias.example", "MAILCLOAK_PUBLIC_URL": "https://alias.example",
           "MAILCLOAK_TLS_CERT": "/cert.pem", "MAILCLOAK_TLS_KEY": "/key.pem",
           "MAILCLOAK_SECRET_KEY": "s" * 40}
    env.update({f"MAILCLOAK_{name.upper()}": value for name, value in values.items()})
    return mailcloak_settings.load(env)


def mx(server: DnsServer, domain: str, *hosts: tuple[int, str, str | None]) -> None:
    """MX records for `domain`: (preference, host name, IPv4 address or None)."""
    for preference, host, address in hosts:
        server.add(domain, "MX", f"{preference} {host}")
        if address:
            server.add(host, "A", address)


# --- routing ----------------------------------------------------------------------------------


def test_delivers_to_the_mx_with_starttls(dns_server: DnsServer, sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3", tls=tls_server_context("mx1.example.test"))
    mx(dns_server, "example.test", (10, "mx1.example.test", "127.0.0.3"))
    [result] = deliver_one(options(sink), ["friend@example.test"])
    assert isinstance(result, Delivered)
    assert result.tls is True
    assert result.remote == f"mx1.example.test[127.0.0.3]:{sink.port}"
    [received] = sink.messages
    assert received.tls is True
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ["friend@example.test"]
    assert received.content == MESSAGE  # dot-stuffing undone, bytes intact


def test_without_starttls_on_offer_delivery_is_plain(dns_server: DnsServer,
                                                     sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3")
    mx(dns_server, "example.test", (10, "mx1.example.test", "127.0.0.3"))
    [result] = deliver_one(options(sink), ["friend@example.test"])
    assert isinstance(result, Delivered) and result.tls is False
    assert sink.messages[0].tls is False


def test_a_failed_tls_handshake_falls_back_to_plain(dns_server: DnsServer,
                                                    sinks: SinkFactory) -> None:
    ca = trustme.CA()
    demanding = tls_server_context("mx1.example.test", ca=ca)
    demanding.verify_mode = ssl.CERT_REQUIRED  # wants a client certificate we do not have
    ca.configure_trust(demanding)
    sink = sinks("127.0.0.3", tls=demanding)
    mx(dns_server, "example.test", (10, "mx1.example.test", "127.0.0.3"))
    [result] = deliver_one(options(sink), ["friend@example.test"])
    assert isinstance(result, Delivered) and result.tls is False
    assert sink.connections == 2


def test_the_most_preferred_mx_gets_the_mail(dns_server: DnsServer, sinks: SinkFactory) -> None:
    primary, backup = sinks("127.0.0.3"), sinks("127.0.0.4")
    mx(dns_server, "example.test", (20, "backup.example.test", "127.0.0.4"),
       (10, "primary.example.test", "127.0.0.3"))
    [result] = deliver_one(options(primary), ["friend@example.test"])
    assert isinstance(result, Delivered)
    assert len(primary.messages) == 1 and not backup.messages


def test_the_next_mx_is_tried_when_the_first_refuses_connections(
        dns_server: DnsServer, sinks: SinkFactory) -> None:
    backup = sinks("127.0.0.4")  # nothing listens on 127.0.0.5
    mx(dns_server, "example.test", (10, "down.example.test", "127.0.0.5"),
       (20, "backup.example.test", "127.0.0.4"))
    [result] = deliver_one(options(backup), ["friend@example.test"])
    assert isinstance(result, Delivered)
    assert result.remote.startswith("backup.example.test[127.0.0.4]")
    assert len(backup.messages) == 1


def test_a_domain_without_mx_gets_mail_at_its_address(dns_server: DnsServer,
                                                      sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3")
    dns_server.add("plain.test", "A", "127.0.0.3")
    [result] = deliver_one(options(sink), ["someone@plain.test"])
    assert isinstance(result, Delivered)
    assert sink.messages[0].rcpt_tos == ["someone@plain.test"]


def test_null_mx_is_a_permanent_failure_even_in_local_mode(dns_server: DnsServer,
                                                           sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3")
    dns_server.add("nomail.test", "MX", "0 .")
    dns_server.add("nomail.test", "A", "127.0.0.3")
    [result] = deliver_one(options(sink), ["someone@nomail.test"])
    assert isinstance(result, PermanentFailure)
    assert "5.1.10" in result.reason and "null MX" in result.reason
    assert sink.connections == 0


def test_transports_override_dns(monkeypatch: pytest.MonkeyPatch, dns_server: DnsServer,
                                 sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3")
    monkeypatch.setenv("MAILCLOAK_TRANSPORTS", f"example.test=[127.0.0.3]:{sink.port}")
    mailcloak_settings.reset()
    [result] = deliver_one(DeliveryOptions(mx_port=1), ["friend@example.test"])
    assert isinstance(result, Delivered)
    assert dns_server.queries == []


def test_the_relay_host_gets_everything_after_starttls_and_auth(
        monkeypatch: pytest.MonkeyPatch, dns_server: DnsServer, sinks: SinkFactory) -> None:
    ca = trustme.CA()
    relay = sinks("127.0.0.6", tls=tls_server_context("127.0.0.6", ca=ca),
                  auth=("relayuser", "relay-secret"))
    monkeypatch.setenv("MAILCLOAK_RELAYHOST", f"127.0.0.6:{relay.port}")
    monkeypatch.setenv("MAILCLOAK_RELAYHOST_USERNAME", "relayuser")
    monkeypatch.setenv("MAILCLOAK_RELAYHOST_PASSWORD", "relay-secret")
    mailcloak_settings.reset()
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    [result] = deliver_one(DeliveryOptions(relay_tls_context=trusting), ["friend@example.test"])
    assert isinstance(result, Delivered) and result.tls
    assert relay.messages[0].login == "relayuser"
    assert dns_server.queries == []


def test_credentials_never_go_to_a_relay_without_tls(monkeypatch: pytest.MonkeyPatch,
                                                     sinks: SinkFactory) -> None:
    relay = sinks("127.0.0.6")  # no STARTTLS on offer
    monkeypatch.setenv("MAILCLOAK_RELAYHOST", f"127.0.0.6:{relay.port}")
    monkeypatch.setenv("MAILCLOAK_RELAYHOST_USERNAME", "relayuser")
    monkeypatch.setenv("MAILCLOAK_RELAYHOST_PASSWORD", "relay-secret")
    mailcloak_settings.reset()
    [result] = deliver_one(DeliveryOptions(), ["friend@example.test"])
    assert isinstance(result, TemporaryFailure)
    assert "STARTTLS" in result.reason
    assert not relay.messages


def test_a_relay_certificate_that_does_not_verify_is_refused(
        monkeypatch: pytest.MonkeyPatch, sinks: SinkFactory) -> None:
    relay = sinks("127.0.0.6", tls=tls_server_context("127.0.0.6"),
                  auth=("relayuser", "relay-secret"))
    monkeypatch.setenv("MAILCLOAK_RELAYHOST", f"127.0.0.6:{relay.port}")
    monkeypatch.setenv("MAILCLOAK_RELAYHOST_USERNAME", "relayuser")
    monkeypatch.setenv("MAILCLOAK_RELAYHOST_PASSWORD", "relay-secret")
    mailcloak_settings.reset()
    [result] = deliver_one(DeliveryOptions(), ["friend@example.test"])  # system CAs only
    assert isinstance(result, TemporaryFailure)
    assert "STARTTLS failed" in result.reason
    assert not relay.messages


# --- replies ----------------------------------------------------------------------------------


def test_each_recipient_gets_its_own_result(dns_server: DnsServer, sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3", reject=["gone@example.test"])
    mx(dns_server, "example.test", (10, "mx1.example.test", "127.0.0.3"))
    accepted, rejected = deliver_one(options(sink), ["friend@example.test", "gone@example.test"])
    assert isinstance(accepted, Delivered)
    assert isinstance(rejected, PermanentFailure)
    assert "550 5.1.1" in rejected.reason and "mx1.example.test said" in rejected.reason
    assert sink.messages[0].rcpt_tos == ["friend@example.test"]


def test_a_4xx_reply_is_a_temporary_failure(dns_server: DnsServer, sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3", tempfail_first=1)
    mx(dns_server, "example.test", (10, "mx1.example.test", "127.0.0.3"))
    first, second = deliver(options(sink), (SENDER, ["friend@example.test"], MESSAGE),
                            (SENDER, ["friend@example.test"], MESSAGE))
    assert isinstance(first[0], TemporaryFailure) and "451 4.7.1" in first[0].reason
    assert isinstance(second[0], Delivered)


def test_a_connection_lost_after_the_data_is_a_temporary_failure(
        dns_server: DnsServer, sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3", drop_in_data=1)
    mx(dns_server, "example.test", (10, "mx1.example.test", "127.0.0.3"))
    first, second = deliver(options(sink), (SENDER, ["friend@example.test"], MESSAGE),
                            (SENDER, ["friend@example.test"], MESSAGE))
    assert isinstance(first[0], TemporaryFailure) and "connection lost" in first[0].reason
    assert isinstance(second[0], Delivered)
    assert sink.connections == 2


def test_bad_addresses_fail_permanently_without_a_connection(
        dns_server: DnsServer, sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3")
    [result] = deliver_one(options(sink), ["evil\r\nRCPT TO:<x@example.test>@example.test"])
    assert isinstance(result, PermanentFailure) and "5.1.3" in result.reason
    assert sink.connections == 0


def test_international_addresses_and_8bit_bodies_use_smtputf8_and_8bitmime(
        dns_server: DnsServer, sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3")
    mx(dns_server, "example.test", (10, "mx1.example.test", "127.0.0.3"))
    content = MESSAGE.replace(b"Hi there.", "Grüße aus Köln.".encode())
    [result] = deliver_one(options(sink), ["jörg@example.test"], content)
    assert isinstance(result, Delivered)
    [received] = sink.messages
    assert received.rcpt_tos == ["jörg@example.test"]
    assert {"SMTPUTF8", "BODY=8BITMIME"} <= set(received.mail_options)
    assert received.content == content


def test_bare_line_feeds_are_sent_as_crlf(dns_server: DnsServer, sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3")
    mx(dns_server, "example.test", (10, "mx1.example.test", "127.0.0.3"))
    [result] = deliver_one(options(sink), ["friend@example.test"], MESSAGE.replace(b"\r\n", b"\n"))
    assert isinstance(result, Delivered)
    assert sink.messages[0].content == MESSAGE


# --- sessions and concurrency -----------------------------------------------------------------


def test_consecutive_messages_to_one_host_share_a_connection(
        dns_server: DnsServer, sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3", tls=tls_server_context("mx1.example.test"))
    mx(dns_server, "example.test", (10, "mx1.example.test", "127.0.0.3"))
    dns_server.add("other.test", "MX", "10 mx1.example.test")  # same host, another domain
    results = deliver(options(sink), (SENDER, ["a@example.test"], MESSAGE),
                      (SENDER, ["b@example.test"], MESSAGE), (SENDER, ["c@other.test"], MESSAGE))
    assert all(isinstance(batch[0], Delivered) for batch in results)
    assert len(sink.messages) == 3
    assert sink.connections == 1
    assert all(message.tls for message in sink.messages)


def test_a_session_the_server_closed_while_idle_is_replaced(
        dns_server: DnsServer, sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3")
    mx(dns_server, "example.test", (10, "mx1.example.test", "127.0.0.3"))

    async def run() -> list[DeliveryResult]:
        async with Deliverer(options(sink)) as deliverer:
            first = await deliverer.deliver(SENDER, ["a@example.test"], MESSAGE)
            sink.drop_connections()
            assert await asyncio.to_thread(sink.wait_for, lambda s: s.active == 0)
            return first + await deliverer.deliver(SENDER, ["b@example.test"], MESSAGE)

    results = asyncio.run(run())
    assert all(isinstance(result, Delivered) for result in results)
    assert [(m.rcpt_tos, m.connection) for m in sink.messages] == [
        (["a@example.test"], 1), (["b@example.test"], 2)]


def test_idle_connections_are_closed(dns_server: DnsServer, sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3")
    mx(dns_server, "example.test", (10, "mx1.example.test", "127.0.0.3"))

    async def run() -> None:
        async with Deliverer(options(sink, idle_timeout=0.0)) as deliverer:
            await deliverer.deliver(SENDER, ["a@example.test"], MESSAGE)
            assert sink.active == 1
            await deliverer.close_idle()
            assert await asyncio.to_thread(sink.wait_for, lambda s: s.active == 0)

    asyncio.run(run())


def test_connections_per_domain_are_limited(dns_server: DnsServer, sinks: SinkFactory) -> None:
    sink = sinks("127.0.0.3")
    mx(dns_server, "example.test", (10, "mx1.example.test", "127.0.0.3"))
    sink.hold()

    async def run() -> list[list[DeliveryResult]]:
        async with Deliverer(options(sink, per_domain=2, workers=8)) as deliverer:
            sends = [asyncio.create_task(deliverer.deliver(SENDER, [f"r{i}@example.test"],
                                                           MESSAGE)) for i in range(5)]
            assert await asyncio.to_thread(sink.wait_for, lambda s: s.in_data == 2)
            await asyncio.sleep(0.3)  # time enough for a third connection, were one allowed
            assert (sink.active, sink.in_data) == (2, 2)
            sink.release()
            return await asyncio.gather(*sends)

    results = asyncio.run(run())
    assert all(isinstance(batch[0], Delivered) for batch in results)
    assert len(sink.messages) == 5
    assert sink.max_active == 2
    assert sink.connections == 2  # the other three messages reused the two sessions


# --- local mode and production ----------------------------------------------------------------


def test_local_mode_keeps_mail_for_a_domain_that_does_not_exist(dns_server: DnsServer) -> None:
    [result] = deliver_one(DeliveryOptions(), ["someone@nowhere.test"])
    assert isinstance(result, KeptInLocalOutbox) and "no such domain" in result.reason


def test_local_mode_keeps_mail_when_dns_fails(dns_server: DnsServer) -> None:
    dns_server.fail("broken.test")
    [result] = deliver_one(DeliveryOptions(), ["someone@broken.test"])
    assert isinstance(result, KeptInLocalOutbox)


def test_local_mode_keeps_mail_when_no_mx_can_be_reached(dns_server: DnsServer) -> None:
    mx(dns_server, "example.test", (10, "mx1.example.test", "127.0.0.5"))
    [result] = deliver_one(DeliveryOptions(mx_port=9, connect_timeout=2), ["a@example.test"])
    assert isinstance(result, KeptInLocalOutbox) and "could be reached" in result.reason


def test_production_bounces_mail_for_a_domain_that_does_not_exist(
        dns_server: DnsServer, tmp_path: Path) -> None:
    dns_server.add("noaddress.test", "TXT", "exists but has no mail server")
    nxdomain, no_server = deliver_one(DeliveryOptions(),
                                      ["someone@nowhere.test", "someone@noaddress.test"],
                                      config=production_config(tmp_path))
    assert isinstance(nxdomain, PermanentFailure) and "5.1.2" in nxdomain.reason
    assert isinstance(no_server, PermanentFailure) and "no MX" in no_server.reason


def test_production_retries_when_dns_fails(dns_server: DnsServer, tmp_path: Path) -> None:
    dns_server.fail("broken.test")
    [result] = deliver_one(DeliveryOptions(), ["a@broken.test"],
                           config=production_config(tmp_path))
    assert isinstance(result, TemporaryFailure) and "4.4.3" in result.reason


def test_production_never_follows_an_mx_to_a_loopback_address(
        dns_server: DnsServer, sinks: SinkFactory, tmp_path: Path) -> None:
    sink = sinks("127.0.0.3")
    mx(dns_server, "example.test", (10, "mx1.example.test", "127.0.0.3"))
    [result] = deliver_one(options(sink), ["friend@example.test"],
                           config=production_config(tmp_path))
    assert isinstance(result, TemporaryFailure) and "no usable address" in result.reason
    assert sink.connections == 0


# --- helpers ----------------------------------------------------------------------------------


def test_to_crlf_normalises_every_line_ending() -> None:
    assert to_crlf(b"a\nb\r\nc\rd\r\n") == b"a\r\nb\r\nc\r\nd\r\n"
    rng = random.Random(5122026)
    for _ in range(5000):  # mixed endings, such as "\r\r\n" and "\n\r", the long way round
        content = b"".join(rng.choice([b"a", b"\r", b"\n", b"\r\n"]) for _ in range(12))
        expected = content.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        assert to_crlf(content) == expected, content
    crlf = b"From: a@b.test\r\n\r\nbody\r\n"
    assert to_crlf(crlf) is crlf  # nothing to do: the same bytes, not a copy


def test_decoded_subject() -> None:
    assert decoded_subject(b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n folded\r\n\r\nx") \
        == "Grüße folded"
    assert decoded_subject(b"To: a@example.test\r\n\r\nno subject") == ""

