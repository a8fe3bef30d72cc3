"""Users' own domains: adding one, verification by DNS (a real DNS server on loopback), the
grace period before a failing domain loses verification, the owner's notices, the workers'
re-checks, and aliases at any address on a verified domain."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core import mail
from django.core.cache import cache
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import User
from mailcloak.aliases.domains import (
    DomainError,
    add_domain,
    create_named_alias,
    delete_domain,
    normalize_domain_name,
    ownership_name,
    records_to_publish,
)
from mailcloak.aliases.models import Alias, DeletedAlias, Domain
from mailcloak.aliases.services import AliasError, create_alias, domains_for
from mailcloak.aliases.verification import (
    GRACE_CHECKS,
    Transition,
    check_domain,
    check_due_domains,
)
from mailcloak.maintenance import run_due
from tests.support.custom_domains import Zone, verified_domain
from tests.support.dns_server import DnsServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def zone(dns_server: DnsServer) -> Iterator[Zone]:
    published = Zone(dns_server)
    yield published
    published.clear()


def statuses(domain: Domain) -> dict[str, str]:
    return {f"{check['kind']} {check['name']}": check["status"] for check in domain.check_results}


# --- adding a domain ------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "name"), [("Example.COM.", "example.com"),
                                           ("  shop.example.org ", "shop.example.org"),
                                           ("bücher.example", "xn--bcher-kva.example")])
def test_domain_names_are_normalised(raw: str, name: str) -> None:
    assert normalize_domain_name(raw) == name


@pytest.mark.parametrize("raw", ["", "localhost", "exa mple.com", "-bad.com", "a..com",
                                 "example.123", "x" * 64 + ".com", "example.com/path",
                                 "user@example.com"])
def test_what_is_not_a_domain_name_is_refused(raw: str) -> None:
    with pytest.raises(DomainError, match="is not a domain name"):
        normalize_domain_name(raw)


def test_a_new_domain_waits_for_verification(user: User) -> None:
    domain = add_domain(user, "Mine.Test")
    assert domain.name == "mine.test"
    assert len(domain.verification_token) == 32
    assert domain.verified_at is None and not domain.is_verified
    assert "mine.test" not in [d.name for d in domains_for(user)]
    with pytest.raises(AliasError, match="is not one of your alias domains"):
        create_alias(user, domain="mine.test")


@pytest.mark.parametrize("name", ["alias.test", "second.test", "sub.alias.test",
                                  "mail.alias.test"])
def test_instance_domains_cannot_be_claimed(user: User, name: str) -> None:
    with pytest.raises(DomainError, match="belongs to this Mailcloak instance"):
        add_domain(user, name)


def test_a_domain_is_added_once(user: User, other_user: User, zone: Zone) -> None:
    add_domain(user, "once.test")
    with pytest.raises(DomainError, match="already added"):
        add_domain(user, "once.test")
    verified_domain(user, "taken.test", zone)
    with pytest.raises(DomainError, match="already in use"):
        add_domain(other_user, "taken.test")


def test_an_unproven_claim_gives_way_to_another_account(user: User, other_user: User) -> None:
    squatted = add_domain(other_user, "squatted.test")
    mine = add_domain(user, "squatted.test")
    assert mine.owner == user
    assert mine.verification_token != squatted.verification_token
    assert not Domain.objects.filter(pk=squatted.pk).exists()


def test_records_to_publish_name_the_token_our_host_and_our_keys(user: User) -> None:
    domain = add_domain(user, "records.test")
    records = {(r.name, r.type): r.value for r in records_to_publish(domain)}
    assert records[("_mailcloak.records.test", "TXT")] == \
        f"mailcloak-verify={domain.verification_token}"
    assert records[("records.test", "MX")] == "10 mail.alias.test"
    assert records[("records.test", "TXT")] == "v=spf1 mx -all"
    assert records[("mcr1._domainkey.records.test", "CNAME")] == "mcr1._domainkey.alias.test"
    assert records[("mce1._domainkey.records.test", "CNAME")] == "mce1._domainkey.alias.test"
    assert records[("_dmarc.records.test", "TXT")].startswith("v=DMARC1; p=quarantine")


# --- verification ---------------------------------------------------------------------------


def test_right_records_verify_the_domain_and_the_owner_is_told(user: User, zone: Zone) -> None:
    domain = add_domain(user, "right.test")
    zone.publish(domain)
    mail.outbox.clear()
    outcome = check_domain(domain)
    assert outcome.proven and outcome.transition is Transition.VERIFIED
    assert domain.verified_at is not None and domain.checked_at is not None
    assert set(statuses(domain).values()) == {"ok"}  # DKIM through the CNAMEs too
    assert "Ownership _mailcloak.right.test" in statuses(domain)
    [notice] = mail.outbox
    assert notice.to == [user.email]
    assert notice.subject == "[Mailcloak] right.test is verified: it now receives mail"
    assert f"/aliases/domains/{domain.pk}/" in notice.body
    assert "right.test" in [d.name for d in domains_for(user)]


@pytest.mark.parametrize(("published", "failing"), [
    ({"ownership": None}, "Ownership _mailcloak.unproven.test"),
    ({"ownership": "mailcloak-verify=someone-elses-token"}, "Ownership _mailcloak.unproven.test"),
    ({"mx": None}, "MX unproven.test"),
    ({"mx": "10 mx.elsewhere.test"}, "MX unproven.test"),
])
def test_without_ownership_or_our_mx_the_domain_stays_unverified(
        user: User, zone: Zone, published: dict[str, object], failing: str) -> None:
    domain = add_domain(user, "unproven.test")
    zone.publish(domain, **published)
    mail.outbox.clear()
    outcome = check_domain(domain)
    assert not outcome.proven and outcome.transition is None
    assert domain.verified_at is None
    assert statuses(domain)[failing] in {"missing", "wrong"}
    [problem] = [c for c in domain.check_results if c["status"] != "ok"]
    assert problem["fix"]  # says what to publish
    assert mail.outbox == []


def test_spf_dkim_and_dmarc_are_reported_but_do_not_hold_verification_back(
        user: User, zone: Zone) -> None:
    domain = add_domain(user, "partial.test")
    zone.publish(domain, spf=None, dkim=False, dmarc=None)
    assert check_domain(domain).proven
    failing = {name for name, status in statuses(domain).items() if status != "ok"}
    assert failing == {"SPF partial.test", "DKIM mcr1._domainkey.partial.test",
                       "DKIM mce1._domainkey.partial.test", "DMARC _dmarc.partial.test"}


def test_a_dns_failure_is_an_error_not_a_missing_record(user: User, zone: Zone,
                                                        dns_server: DnsServer) -> None:
    domain = add_domain(user, "flaky.test")
    zone.publish(domain)
    dns_server.fail(ownership_name(domain))
    try:
        check_domain(domain)
    finally:
        dns_server.servfail.discard(ownership_name(domain) + ".")
    assert statuses(domain)["Ownership _mailcloak.flaky.test"] == "error"
    assert domain.verified_at is None


# --- losing verification --------------------------------------------------------------------


def test_a_verified_domain_loses_verification_only_after_the_grace_period(
        user: User, zone: Zone) -> None:
    domain = verified_domain(user, "expiring.test", zone)
    zone.remove(domain.name, "MX")
    mail.outbox.clear()
    start = timezone.now()
    for hours in (0, 6, 12, 18):  # 3 failures are not enough within 24 hours
        outcome = check_domain(domain, now=start + timedelta(hours=hours))
        assert outcome.transition is None and domain.verified_at is not None
    assert domain.failed_checks == 4
    outcome = check_domain(domain, now=start + timedelta(hours=24))
    assert outcome.transition is Transition.LOST
    assert domain.verified_at is None and domain.failed_checks == 0
    [notice] = mail.outbox
    assert notice.subject == "[Mailcloak] expiring.test is no longer verified: its mail is refused"
    assert "MX (expiring.test): missing" in notice.body
    assert "expiring.test" not in [d.name for d in domains_for(user)]


def test_a_long_outage_needs_several_failed_checks_too(user: User, zone: Zone) -> None:
    domain = verified_domain(user, "slow.test", zone)
    zone.remove(domain.name, "MX")
    start = timezone.now()
    for days in range(GRACE_CHECKS - 1):
        assert check_domain(domain, now=start + timedelta(days=days * 2)).transition is None
    assert check_domain(domain, now=start + timedelta(days=5)).transition is Transition.LOST


def test_one_passing_check_ends_the_grace_period(user: User, zone: Zone) -> None:
    domain = verified_domain(user, "blip.test", zone)
    zone.remove(domain.name, "MX")
    start = timezone.now()
    for hours in (0, 6, 12):
        check_domain(domain, now=start + timedelta(hours=hours))
    zone.publish(domain, ownership=None, spf=None, dkim=False, dmarc=None)  # the MX is back
    mail.outbox.clear()
    assert check_domain(domain, now=start + timedelta(hours=18)).transition is None
    assert domain.failed_checks == 0 and domain.failing_since is None
    zone.remove(domain.name, "MX")
    assert check_domain(domain, now=start + timedelta(hours=30)).transition is None
    assert domain.verified_at is not None
    assert mail.outbox == []


def test_a_domain_that_lost_verification_is_verified_again_when_fixed(
        user: User, zone: Zone) -> None:
    domain = verified_domain(user, "again.test", zone)
    Domain.objects.filter(pk=domain.pk).update(verified_at=None)
    domain.refresh_from_db()
    mail.outbox.clear()
    assert check_domain(domain).transition is Transition.VERIFIED
    assert len(mail.outbox) == 1


# --- the workers' re-checks -----------------------------------------------------------------


def test_workers_check_domains_that_are_due(user: User, zone: Zone,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_DOMAIN_CHECK_INTERVAL", "6h")
    mailcloak_settings.reset()
    now = timezone.now()
    never = add_domain(user, "never.test")
    zone.publish(never)
    recent = add_domain(user, "recent.test")
    stale = add_domain(user, "stale.test")
    Domain.objects.filter(pk=recent.pk).update(checked_at=now - timedelta(hours=1))
    Domain.objects.filter(pk=stale.pk).update(checked_at=now - timedelta(hours=7))
    assert check_due_domains(now) == 2
    checked = {d.name: d.checked_at for d in Domain.objects.filter(owner=user)}
    assert checked["never.test"] == now and checked["stale.test"] == now
    assert checked["recent.test"] == now - timedelta(hours=1)
    assert Domain.objects.get(pk=never.pk).verified_at == now
    assert check_due_domains(now) == 0


def test_the_maintenance_loop_runs_the_domain_checks(user: User, zone: Zone) -> None:
    cache.clear()
    domain = add_domain(user, "maintained.test")
    zone.publish(domain)
    mail.outbox.clear()
    assert run_due()["domain-checks"] == 1
    domain.refresh_from_db()
    assert domain.is_verified
    assert [m.subject for m in mail.outbox] == [
        "[Mailcloak] maintained.test is verified: it now receives mail"]


# --- aliases at any address -----------------------------------------------------------------


def test_any_address_on_a_verified_domain(user: User, zone: Zone) -> None:
    verified_domain(user, "named.test", zone)
    alias = create_named_alias(user, "named.test", "Shop.Orders", title="orders")
    assert alias.address == "shop.orders@named.test"
    assert alias.user == user and alias.mailbox.email == user.email
    with pytest.raises(DomainError, match="already exists"):
        create_named_alias(user, "named.test", "shop.orders")
    # random aliases work there too
    assert create_alias(user, domain="named.test").address.endswith("@named.test")


@pytest.mark.parametrize("local", ["", "-x", "x-", "a b", "a+b", "a%b", "ü", "a" * 65])
def test_addresses_must_be_plain(user: User, zone: Zone, local: str) -> None:
    verified_domain(user, "plain.test", zone)
    with pytest.raises(DomainError, match="an address is 1-64 characters"):
        create_named_alias(user, "plain.test", local)


def test_chosen_addresses_only_on_the_users_own_verified_domains(
        user: User, other_user: User, zone: Zone) -> None:
    add_domain(user, "pending.test")
    verified_domain(other_user, "theirs.test", zone)
    with pytest.raises(DomainError, match="is not verified"):
        create_named_alias(user, "pending.test", "hello")
    with pytest.raises(DomainError, match="is not one of your domains"):
        create_named_alias(user, "theirs.test", "hello")
    with pytest.raises(DomainError, match="is not one of your domains"):
        create_named_alias(user, "alias.test", "hello")  # instance domains stay random
    with pytest.raises(AliasError, match="is not one of your alias domains"):
        create_alias(user, domain="theirs.test")
    assert not Alias.objects.filter(user=user).exists()


def test_deleting_a_domain_retires_its_addresses(user: User, other_user: User,
                                                 zone: Zone) -> None:
    domain = verified_domain(user, "retired.test", zone)
    create_named_alias(user, "retired.test", "hello")
    assert delete_domain(domain) == 1
    assert DeletedAlias.objects.filter(address="hello@retired.test").exists()
    again = add_domain(other_user, "retired.test")
    zone.clear()
    zone.publish(again)
    check_domain(again)
    with pytest.raises(DomainError, match="never issued again"):
        create_named_alias(other_user, "retired.test", "hello")
