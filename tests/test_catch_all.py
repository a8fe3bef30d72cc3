"""Catch-all on a user's verified domain: unknown addresses become aliases on first mail, within
a per-domain limit; deleted addresses stay refused; RCPT is accepted only while the domain is
verified. The RCPT decision directly, then a real SMTP server on loopback."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest
from django.core.cache import cache

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import User
from mailcloak.aliases.catchall import CREATED_TITLE
from mailcloak.aliases.domains import add_domain, create_named_alias, set_catch_all
from mailcloak.aliases.models import Alias, Domain
from mailcloak.aliases.services import delete_alias
from mailcloak.aliases.verification import check_domain
from mailcloak.mail import replies
from mailcloak.mail.addresses import parse_forward_path, parse_reverse_path
from mailcloak.mail.policy import Action, Decision, decide
from tests.support.custom_domains import Zone, verified_domain
from tests.support.dns_server import DnsServer
from tests.support.smtp_client import RunningServer

SENDER = parse_reverse_path("<someone@sender.test>", smtputf8=False)


@pytest.fixture
def zone(dns_server: DnsServer) -> Iterator[Zone]:
    published = Zone(dns_server)
    yield published
    published.clear()


@pytest.fixture
def catch_all(user: User, zone: Zone) -> Domain:
    domain = verified_domain(user, "catch.test", zone)
    set_catch_all(domain, True)
    return domain


def rcpt(recipient: str) -> Decision:
    address = parse_forward_path(f"<{recipient}>", smtputf8=False)
    assert not isinstance(address, replies.Reply)
    return decide(SENDER, address, "192.0.2.1")


# --- the RCPT decision ----------------------------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_address_becomes_the_owners_alias(user: User, catch_all: Domain) -> None:
    decision = rcpt("Anything.New@Catch.Test")
    assert decision.action is Action.FORWARD and decision.reply == replies.RECIPIENT_OK
    alias = Alias.objects.get(pk=decision.alias_id)
    assert alias.address == "anything.new@catch.test"
    assert (alias.user, alias.domain, alias.title) == (user, catch_all, CREATED_TITLE)
    assert alias.mailbox == user.mailboxes.get()
    assert rcpt("anything.new@catch.test").alias_id == alias.pk  # the second mail: same alias
    assert Alias.objects.filter(domain=catch_all).count() == 1


@pytest.mark.django_db
def test_a_deleted_address_is_refused_not_recreated(catch_all: Domain) -> None:
    delete_alias(Alias.objects.get(pk=rcpt("gone@catch.test").alias_id))
    decision = rcpt("gone@catch.test")
    assert decision.action is Action.REJECT and decision.reply == replies.UNKNOWN_RECIPIENT
    assert not Alias.objects.filter(address="gone@catch.test").exists()


@pytest.mark.django_db
def test_a_disabled_alias_stays_disabled(user: User, catch_all: Domain) -> None:
    alias = create_named_alias(user, "catch.test", "quiet")
    Alias.objects.filter(pk=alias.pk).update(enabled=False)
    assert rcpt("quiet@catch.test").reply == replies.UNKNOWN_RECIPIENT


@pytest.mark.django_db
@pytest.mark.parametrize("local", ['"odd one"', "a+tag", "x" * 65, "-dash"])
def test_odd_local_parts_create_nothing(catch_all: Domain, local: str) -> None:
    address = parse_forward_path(f"<{local}@catch.test>", smtputf8=False)
    if isinstance(address, replies.Reply):  # refused by the parser already
        assert address.permanent
        return
    assert decide(SENDER, address).reply == replies.UNKNOWN_RECIPIENT
    assert not Alias.objects.filter(domain=catch_all).exists()


@pytest.mark.django_db
def test_creation_is_limited_per_domain(user: User, catch_all: Domain, zone: Zone,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_CATCH_ALL_CREATIONS_PER_DOMAIN", "2/h")
    mailcloak_settings.reset()
    assert rcpt("one@catch.test").accepted and rcpt("two@catch.test").accepted
    decision = rcpt("three@catch.test")
    assert decision.reply == replies.CATCH_ALL_LIMIT
    assert decision.reply.line == ("450 4.7.1 Too many new addresses at this domain in a short "
                                   "time; try again later")
    assert not Alias.objects.filter(address="three@catch.test").exists()
    assert rcpt("one@catch.test").accepted  # aliases made already still take mail
    other = verified_domain(user, "other-catch.test", zone)  # each domain has its own limit
    set_catch_all(other, True)
    assert rcpt("three@other-catch.test").accepted


@pytest.mark.django_db
def test_without_catch_all_unknown_addresses_are_unknown(user: User, catch_all: Domain) -> None:
    set_catch_all(catch_all, False)
    assert rcpt("nobody@catch.test").reply == replies.UNKNOWN_RECIPIENT
    assert not Alias.objects.filter(domain=catch_all).exists()


@pytest.mark.django_db
def test_an_unverified_domain_is_not_ours_even_with_catch_all(user: User) -> None:
    domain = add_domain(user, "pending-catch.test")
    set_catch_all(domain, True)
    assert rcpt("hello@pending-catch.test").reply == replies.RELAY_DENIED
    assert not Alias.objects.filter(domain=domain).exists()


@pytest.mark.django_db
def test_aliases_on_a_domain_that_lost_verification_are_refused(user: User,
                                                               catch_all: Domain) -> None:
    alias = create_named_alias(user, "catch.test", "kept")
    assert rcpt("kept@catch.test").action is Action.FORWARD
    Domain.objects.filter(pk=catch_all.pk).update(verified_at=None)
    assert rcpt("kept@catch.test").reply == replies.RELAY_DENIED
    assert rcpt("new@catch.test").reply == replies.RELAY_DENIED
    Domain.objects.filter(pk=catch_all.pk).update(verified_at=alias.created_at)
    assert rcpt("kept@catch.test").action is Action.FORWARD


# --- over SMTP ------------------------------------------------------------------------------


@pytest.fixture
def server(transactional_db: None) -> Iterator[RunningServer]:
    cache.clear()
    with RunningServer() as running:
        yield running


def test_smtp_accepts_only_while_verified_and_creates_on_first_mail(
        server: RunningServer, user: User, zone: Zone,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_CATCH_ALL_CREATIONS_PER_DOMAIN", "1/h")
    mailcloak_settings.reset()
    domain = add_domain(user, "smtp-catch.test")
    set_catch_all(domain, True)
    with smtplib.SMTP(server.host, server.port, local_hostname="client.test") as smtp:
        smtp.ehlo()
        smtp.mail("someone@sender.test")
        assert smtp.rcpt("first@smtp-catch.test") == (554, b"5.7.1 Relay access denied")
        zone.publish(domain)
        assert check_domain(domain).proven
        assert smtp.rcpt("first@smtp-catch.test") == (250, b"2.1.5 Recipient ok")
        code, text = smtp.rcpt("second@smtp-catch.test")
        assert (code, text.decode()) == (450, "4.7.1 Too many new addresses at this domain in "
                                              "a short time; try again later")
        smtp.rset()
    assert list(Alias.objects.filter(domain=domain).values_list("address", flat=True)) == [
        "first@smtp-catch.test"]
