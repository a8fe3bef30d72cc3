"""Checking a user's domain in DNS, and what a check changes.

Verified means two things DNS proves: the ownership record (`_mailcloak.DOMAIN TXT
"mailcloak-verify=TOKEN"`) is there, so the domain is the user's, and its MX points at this
server, so mail for it really comes here. SPF, DKIM and DMARC are checked and shown too (they
decide whether mail sent from the domain is trusted) but do not hold verification back.

A domain becomes verified at its first passing check. A verified domain loses verification
only after failing GRACE_CHECKS checks in a row over at least MAILCLOAK_DOMAIN_VERIFICATION_GRACE,
so one DNS outage does not bounce its mail. The owner is told by email of both changes. The
workers check every domain every MAILCLOAK_DOMAIN_CHECK_INTERVAL (maintenance); the owner can
check at once from the domain's page.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.aliases.domains import DomainError, ownership_name, ownership_value
from mailcloak.aliases.models import Domain
from mailcloak.mail import dnscheck
from mailcloak.mail.dns import DnsTemporaryError, NoSuchDomain, Resolver
from mailcloak.mail.dnscheck import RecordCheck
from mailcloak.mail.ratelimit import Charge, RateLimited, charge
from mailcloak.settings import Rate

log = logging.getLogger(__name__)

GRACE_CHECKS = 3
CHECKS_ON_DEMAND = Rate(20, 3600)  # "check now" per domain: each one is a dozen DNS lookups
DUE_BATCH = 200  # domains checked per maintenance run; the rest wait for the next run
OWNERSHIP = "Ownership"
PROVING = frozenset({OWNERSHIP, dnscheck.MX})  # the kinds that verification needs


class Transition(enum.Enum):
    VERIFIED = "verified"
    LOST = "lost"


@dataclass(frozen=True)
class CheckOutcome:
    checks: list[RecordCheck]
    proven: bool  # ownership and MX are right
    transition: Transition | None


def fresh_resolver() -> Resolver:
    """A resolver with an empty cache: an owner who just published a record sees it."""
    return Resolver.from_settings(mailcloak_settings.get().dns_servers)


def check_ownership(domain: Domain, resolver: Resolver) -> RecordCheck:
    name, expected = ownership_name(domain), ownership_value(domain)
    fix = f'publish {name} TXT "{expected}"'
    try:
        values = [value.decode("utf-8", "replace") for value in resolver.txt_sync(name)]
    except NoSuchDomain:
        values = []
    except DnsTemporaryError as exc:
        return RecordCheck(OWNERSHIP, name, "error", f"no answer from DNS: {exc}", expected,
                           "DNS did not answer; it is checked again later")
    if expected in (value.strip() for value in values):
        return RecordCheck(OWNERSHIP, name, "ok", expected, expected, "")
    if not values:
        return RecordCheck(OWNERSHIP, name, "missing", "", expected, fix)
    return RecordCheck(OWNERSHIP, name, "wrong", "; ".join(values), expected, fix)


def run_checks(domain: Domain, resolver: Resolver) -> list[RecordCheck]:
    """Ownership, then MX, SPF, DKIM and DMARC. (MTA-STS is the operator's, for the
    instance domains: a user domain's policy host would be theirs to run.)"""
    return [check_ownership(domain, resolver),
            *dnscheck.check_domain(domain.name, resolver=resolver, tls_policies=False)]


def is_proven(checks: list[RecordCheck]) -> bool:
    proving = [check for check in checks if check.kind in PROVING]
    return {check.kind for check in proving} == PROVING and all(check.ok for check in proving)


def check_domain(domain: Domain, *, now: datetime | None = None,
                 resolver: Resolver | None = None) -> CheckOutcome:
    """Look the domain's records up, record the result and tell the owner of a change.

    The lookups happen outside any transaction; the result is applied to the row locked
    afresh, so a worker's check and the owner's "check now" cannot interleave."""
    now = now or timezone.now()
    checks = run_checks(domain, resolver or fresh_resolver())
    proven = is_proven(checks)
    with transaction.atomic():
        locked = Domain.objects.select_for_update().get(pk=domain.pk)
        transition = record_check(locked, proven, checks, now)
        if transition is not None:
            notify_owner(locked, transition)
    domain.refresh_from_db()
    return CheckOutcome(checks, proven, transition)


def check_domain_now(domain: Domain) -> CheckOutcome:
    """The owner's "check now" (web and API), limited per domain so nobody can turn us into
    a stream of DNS queries aimed at someone's name servers."""
    try:
        charge([Charge("domain-checks", str(domain.pk), 1, (CHECKS_ON_DEMAND,))])
    except RateLimited:
        raise DomainError(f"{domain.name} was checked {CHECKS_ON_DEMAND.count} times in the "
                          "last hour; try again later (it is also checked automatically)"
                          ) from None
    return check_domain(domain)


def record_check(domain: Domain, proven: bool, checks: list[RecordCheck],
                 now: datetime) -> Transition | None:
    """Store one check's result on `domain`; returns the change in verification, if any."""
    grace = timedelta(seconds=mailcloak_settings.get().domain_verification_grace)
    transition = None
    domain.checked_at = now
    domain.check_results = [dataclasses.asdict(check) for check in checks]
    if proven:
        domain.failed_checks, domain.failing_since = 0, None
        if domain.verified_at is None:
            domain.verified_at, transition = now, Transition.VERIFIED
    elif domain.verified_at is not None:
        domain.failed_checks += 1
        domain.failing_since = domain.failing_since or now
        if domain.failed_checks >= GRACE_CHECKS and now - domain.failing_since >= grace:
            domain.verified_at, transition = None, Transition.LOST
            domain.failed_checks, domain.failing_since = 0, None
    domain.save(update_fields=["checked_at", "check_results", "failed_checks",
                               "failing_since", "verified_at"])
    if transition is not None:
        log.info("domain %s %s", domain.pk, transition.value)
    return transition


def due_domains(now: datetime) -> list[Domain]:
    interval = timedelta(seconds=mailcloak_settings.get().domain_check_interval)
    due = Domain.objects.filter(Q(checked_at__isnull=True) | Q(checked_at__lte=now - interval),
                                owner__isnull=False, active=True)
    return list(due.order_by(F("checked_at").asc(nulls_first=True), "pk")[:DUE_BATCH])


def check_due_domains(now: datetime | None = None) -> int:
    """The maintenance task: check every user domain not checked within the interval."""
    now = now or timezone.now()
    resolver = fresh_resolver()
    checked = 0
    for domain in due_domains(now):
        try:
            check_domain(domain, now=now, resolver=resolver)
        except Exception:  # one broken domain must not stop the others
            log.exception("checking domain %s failed", domain.pk)
            continue
        checked += 1
    return checked


# --- telling the owner ------------------------------------------------------------------------

SUBJECTS = {
    Transition.VERIFIED: "{name} is verified: it now receives mail",
    Transition.LOST: "{name} is no longer verified: its mail is refused",
}


def notify_owner(domain: Domain, transition: Transition) -> None:
    """Mail the owner about the change (queued in the same transaction that records it)."""
    if domain.owner is None:
        return
    public_url = mailcloak_settings.get().public_url
    body = render_to_string(f"aliases/email/domain_{transition.value}.txt", {
        "domain": domain.name,
        "problems": [check for check in domain.check_results if check["status"] != "ok"],
        "domain_url": public_url + reverse("aliases:domain_detail", args=[domain.pk]),
    })
    subject = SUBJECTS[transition].format(name=domain.name)
    send_mail(f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}{subject}", body,
              settings.DEFAULT_FROM_EMAIL, [domain.owner.email])
