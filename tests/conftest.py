"""Shared fixtures: users with verified mailboxes, aliases, logged-in clients, DKIM keys."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from django.test import Client

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import User
from mailcloak.accounts.services import create_user_with_mailbox
from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import create_alias
from mailcloak.mail import dns as mail_dns
from mailcloak.mail.dkimkeys import DkimKey, create_keys, load_keys
from tests.support.dns_server import DnsServer

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session", autouse=True)
def _dns_server() -> Iterator[DnsServer]:
    """Every lookup of the suite, in-process or in a started `mailcloak` process, goes to this
    loopback DNS server: names nobody added are NXDOMAIN at once. Tests add records to it
    (`dns_server` fixture) or bring a server of their own."""
    with DnsServer() as server:
        os.environ["MAILCLOAK_DNS_SERVERS"] = server.nameserver
        mail_dns.set_resolver(None)
        yield server


@pytest.fixture
def dns_server(_dns_server: DnsServer) -> Iterator[DnsServer]:
    yield _dns_server


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[DkimKey, DkimKey]:
    """A fresh DKIM key pair (RSA and Ed25519) for the test module, as `dkim init` makes."""
    directory = tmp_path_factory.mktemp("dkim")
    create_keys(directory)
    return load_keys(directory)


@pytest.fixture
def lenient_spam_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests of SMTP mechanics (framing, limits, TLS, delivery) whose toy messages are not
    meant to look like real mail: the spam engine still scans every message, but its verdict
    never holds one back. Verdicts themselves are tested in test_smtpd_verdicts.py."""
    monkeypatch.setenv("MAILCLOAK_SPAM_QUARANTINE_SCORE", "1000")
    monkeypatch.setenv("MAILCLOAK_SPAM_REJECT_SCORE", "2000")
    mailcloak_settings.reset()


@pytest.fixture(autouse=True)
def _fresh_config() -> None:
    """Each test sees settings loaded from the environment as it is now."""
    mailcloak_settings.reset()


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(email: str = "owner@mailbox.test", password: str = PASSWORD) -> User:
        return create_user_with_mailbox(email, password=password)

    return make


@pytest.fixture
def user(make_user: Callable[..., User]) -> User:
    return make_user()


@pytest.fixture
def other_user(make_user: Callable[..., User]) -> User:
    return make_user("intruder@elsewhere.test")


@pytest.fixture
def alias(user: User) -> Alias:
    return create_alias(user, title="shopping")


@pytest.fixture
def logged_in(client: Client, user: User) -> Client:
    client.force_login(user)
    return client
