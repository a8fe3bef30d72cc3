"""Choosing the spam engine from the settings, thresholds, and what the external engines share."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mailcloak import settings as mailcloak_settings
from mailcloak.mail import dns as mail_dns
from mailcloak.mail.spam import engine as spam_engine
from mailcloak.mail.spam.rspamd import RspamdEngine
from mailcloak.mail.spam.spamassassin import SpamAssassinEngine
from mailcloak.mail.spam.verdict import (
    Action,
    EngineUnavailable,
    ScanRequest,
    Sensitivity,
    Thresholds,
)
from tests.support.daemons import GTUBE_QUARANTINE
from tests.support.dns_server import DnsServer
from tests.support.processes import free_port


@pytest.fixture(autouse=True)
def _fresh_engine() -> Iterator[None]:
    spam_engine.reset_engine()
    yield
    spam_engine.reset_engine()


def load(**settings: str) -> mailcloak_settings.Config:
    env = {f"MAILCLOAK_{name.upper()}": value for name, value in settings.items()}
    return mailcloak_settings.load({"MAILCLOAK_SECRET_KEY": "x" * 40, **env})


# --- settings ------------------------------------------------------------------------------------


def test_defaults() -> None:
    config = load()
    assert config.spam_engine == "builtin"
    assert config.rspamd_url == "http://127.0.0.1:11333"
    assert config.rspamd_controller_url == "http://127.0.0.1:11334"
    assert config.rspamd_password == ""
    assert str(config.spamd_address) == "127.0.0.1:783"
    assert config.spam_timeout == 10


def test_spamd_port_defaults_to_783_and_urls_lose_their_trailing_slash() -> None:
    config = load(spamd_address="spamd.internal", rspamd_url="https://rspamd.internal:8443/")
    assert (config.spamd_address.host, config.spamd_address.port) == ("spamd.internal", 783)
    assert config.rspamd_url == "https://rspamd.internal:8443"


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("spam_engine", "bogofilter", "expected one of builtin, rspamd, spamassassin"),
    ("rspamd_url", "127.0.0.1:11333", "expected an http:// or https:// URL"),
    ("rspamd_controller_url", "http://127.0.0.1:99999", "MAILCLOAK_RSPAMD_CONTROLLER_URL"),
    ("spamd_address", "127.0.0.1:http", "MAILCLOAK_SPAMD_ADDRESS"),
    ("spam_timeout", "0s", "positive duration"),
])
def test_bad_values_name_the_setting(setting: str, value: str, message: str) -> None:
    with pytest.raises(mailcloak_settings.ConfigError, match=message) as caught:
        load(**{setting: value})
    assert str(caught.value).startswith(f"MAILCLOAK_{setting.upper()}=")


# --- choosing the engine ------------------------------------------------------------------------


def test_rspamd_engine_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_SPAM_ENGINE", "rspamd")
    monkeypatch.setenv("MAILCLOAK_RSPAMD_URL", "http://10.0.0.5:11333/")
    monkeypatch.setenv("MAILCLOAK_RSPAMD_CONTROLLER_URL", "http://10.0.0.5:11334")
    monkeypatch.setenv("MAILCLOAK_RSPAMD_PASSWORD", "s3cret")
    monkeypatch.setenv("MAILCLOAK_SPAM_TIMEOUT", "3s")
    engine = spam_engine.get_engine()
    assert isinstance(engine, RspamdEngine)
    assert (engine.url, engine.controller_url, engine.password, engine.timeout) == (
        "http://10.0.0.5:11333", "http://10.0.0.5:11334", "s3cret", 3.0)


def test_spamassassin_engine_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_SPAM_ENGINE", "spamassassin")
    monkeypatch.setenv("MAILCLOAK_SPAMD_ADDRESS", "[::1]:7830")
    monkeypatch.setenv("MAILCLOAK_HOSTNAME", "mx.alias.test")
    engine = spam_engine.get_engine()
    assert isinstance(engine, SpamAssassinEngine)
    assert (engine.host, engine.port, engine.hostname, engine.timeout) == (
        "::1", 7830, "mx.alias.test", 10.0)


def test_builtin_engine_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailcloak.mail.spam.builtin import BuiltinEngine

    monkeypatch.delenv("MAILCLOAK_SPAM_ENGINE", raising=False)
    assert isinstance(spam_engine.get_engine(), BuiltinEngine)


def test_engine_is_made_once_until_the_settings_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_SPAM_ENGINE", "rspamd")
    first = spam_engine.get_engine()
    assert spam_engine.get_engine() is first
    monkeypatch.setenv("MAILCLOAK_SPAM_ENGINE", "spamassassin")
    assert spam_engine.get_engine() is first  # settings are read once per process...
    mailcloak_settings.reset()  # ...unless they are loaded again
    assert isinstance(spam_engine.get_engine(), SpamAssassinEngine)


# --- thresholds ----------------------------------------------------------------------------------


def test_thresholds_for_each_sensitivity() -> None:
    assert spam_engine.thresholds_for(Sensitivity.NORMAL) == Thresholds(5.0, 10.0)
    assert spam_engine.thresholds_for("strict") == Thresholds(3.0, 8.0)
    assert spam_engine.thresholds_for(Sensitivity.RELAXED) == Thresholds(7.0, 12.0)


def test_thresholds_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_SPAM_QUARANTINE_SCORE", "4")
    monkeypatch.setenv("MAILCLOAK_SPAM_REJECT_SCORE", "15.5")
    assert spam_engine.base_thresholds() == Thresholds(4.0, 15.5)
    assert spam_engine.thresholds_for(Sensitivity.STRICT) == Thresholds(2.0, 13.5)
    assert spam_engine.base_thresholds(load(spam_reject_score="20")) == Thresholds(5.0, 20.0)


def test_unknown_sensitivity_is_refused() -> None:
    with pytest.raises(ValueError, match="paranoid"):
        spam_engine.thresholds_for("paranoid")


# --- shared by the external engines --------------------------------------------------------------


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer({"mx.sender.test": {"A": ["192.0.2.7"], "AAAA": ["2001:db8::7"]},
                    "liar.test": {"A": ["192.0.2.200"]}}) as server:
        server.add_ptr("192.0.2.7", "mx.sender.test")
        server.add_ptr("2001:db8::7", "mx.sender.test")
        server.add_ptr("192.0.2.8", "liar.test")
        with mail_dns.use_resolver(server.resolver()):
            yield server


@pytest.mark.parametrize(("ip", "name"), [
    ("192.0.2.7", "mx.sender.test"),   # PTR, and its name points back
    ("2001:0db8::0007", "mx.sender.test"),
    ("192.0.2.8", "unknown"),          # PTR to a name that does not point back
    ("192.0.2.9", "unknown"),          # no PTR
    ("not-an-ip", "unknown"),
])
def test_verified_hostname(dns_server: DnsServer, ip: str, name: str) -> None:
    assert asyncio.run(spam_engine.verified_hostname(ip)) == name


def test_verified_hostname_is_unknown_when_dns_fails(dns_server: DnsServer) -> None:
    dns_server.fail("7.2.0.192.in-addr.arpa")
    assert asyncio.run(spam_engine.verified_hostname("192.0.2.7")) == "unknown"


@pytest.mark.parametrize("engine", [
    RspamdEngine(f"http://127.0.0.1:{free_port()}", "http://127.0.0.1:1", test_patterns=True),
    SpamAssassinEngine("127.0.0.1", free_port(), test_patterns=True),
], ids=["rspamd", "spamassassin"])
def test_quarantine_test_pattern_works_with_every_engine(engine: RspamdEngine) -> None:
    thresholds = Thresholds(5.0, 10.0)
    verdict = asyncio.run(engine.scan(ScanRequest(raw=GTUBE_QUARANTINE), thresholds))
    assert (verdict.action, verdict.engine) == (Action.QUARANTINE, engine.name)
    assert thresholds.quarantine <= verdict.score < thresholds.reject
    engine.test_patterns = False  # then the daemon decides (and here it is down)
    with pytest.raises(EngineUnavailable):
        asyncio.run(engine.scan(ScanRequest(raw=GTUBE_QUARANTINE), thresholds))


@pytest.mark.parametrize(("mode", "setting", "enabled"), [
    ("local", "auto", True), ("production", "auto", False),
    ("production", "true", True), ("local", "false", False),
])
def test_quarantine_test_pattern_setting(mode: str, setting: str, enabled: bool) -> None:
    config = load(spam_test_patterns=setting)
    config = mailcloak_settings.Config({**config.values, "MODE": mode})  # skip production checks
    assert spam_engine.quarantine_pattern_enabled(config) is enabled


def test_adapters_follow_the_test_pattern_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_SPAM_TEST_PATTERNS", "false")
    for name in ("rspamd", "spamassassin"):
        monkeypatch.setenv("MAILCLOAK_SPAM_ENGINE", name)
        mailcloak_settings.reset()
        assert spam_engine.get_engine().test_patterns is False  # type: ignore[attr-defined]
    monkeypatch.setenv("MAILCLOAK_SPAM_TEST_PATTERNS", "true")
    mailcloak_settings.reset()
    assert spam_engine.get_engine().test_patterns is True  # type: ignore[attr-defined]
