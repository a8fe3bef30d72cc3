"""Users' own domains: adding one, the DNS records to publish, aliases with chosen addresses.

A user adds a domain and proves it is theirs with a TXT record holding a random token
(`_mailcloak.DOMAIN TXT "mailcloak-verify=TOKEN"`); aliases.verification checks it together
with the MX, SPF, DKIM and DMARC records. Until it is verified, the domain takes no mail and
offers no aliases. On a verified domain the owner picks any local part they like.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from django.db import IntegrityError, transaction

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import Mailbox, User
from mailcloak.aliases.models import Alias, DeletedAlias, Domain
from mailcloak.aliases.services import AliasError, charge_creation, default_mailbox
from mailcloak.mail.dkimkeys import DkimKey, signing_keys
from mailcloak.mail.dnsrecords import Record, dmarc_value, spf_value

OWNERSHIP_LABEL = "_mailcloak"
OWNERSHIP_PREFIX = "mailcloak-verify="
MAX_DOMAINS_PER_USER = 20
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
LOCAL_PART = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")


class DomainError(AliasError):
    """A domain request that cannot be honoured; str() says why."""


def normalize_domain_name(raw: str) -> str:
    """`Example.COM.` -> `example.com`; internationalised names in their ASCII form."""
    name = raw.strip().rstrip(".").lower()
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise DomainError(f"{raw.strip()!r} is not a domain name") from None
    labels = name.split(".")
    if (len(name) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels)
            or labels[-1].isdigit()):
        raise DomainError(f"{raw.strip()!r} is not a domain name")
    return name


def _instance_names() -> tuple[str, ...]:
    config = mailcloak_settings.get()
    return (*config.domains, config.hostname)


def add_domain(user: User, raw_name: str) -> Domain:
    """A new, not yet verified domain of `user`, with its ownership token.

    Another account's claim that never proved ownership gives way: only the TXT record
    proves anything, so a squatter cannot keep the real owner out."""
    name = normalize_domain_name(raw_name)
    if any(name == ours or name.endswith("." + ours) for ours in _instance_names()):
        raise DomainError(f"{name} belongs to this Mailcloak instance")
    if Domain.objects.filter(owner=user).count() >= MAX_DOMAINS_PER_USER:
        raise DomainError(f"you can add at most {MAX_DOMAINS_PER_USER} domains")
    with transaction.atomic():
        existing = Domain.objects.select_for_update().filter(name=name).first()
        if existing is not None:
            _give_way(existing, user)
        try:
            with transaction.atomic():
                return Domain.objects.create(name=name, owner=user,
                                             verification_token=secrets.token_hex(16))
        except IntegrityError:
            raise DomainError(f"{name} was just added by someone else") from None


def _give_way(existing: Domain, user: User) -> None:
    if existing.owner_id == user.pk:
        raise DomainError(f"you have already added {existing.name}")
    if existing.owner_id is None or existing.verified_at is not None or existing.aliases.exists():
        raise DomainError(f"{existing.name} is already in use on this Mailcloak instance")
    existing.delete()


def delete_domain(domain: Domain) -> int:
    """Remove a user domain and its aliases; their addresses are retired (never reissued,
    whoever adds the domain next). Returns how many aliases went with it."""
    if domain.owner_id is None:
        raise DomainError("instance domains are managed by the operator")
    with transaction.atomic():
        addresses = list(domain.aliases.values_list("address", flat=True))
        DeletedAlias.objects.bulk_create([DeletedAlias(address=a) for a in addresses],
                                         ignore_conflicts=True)
        domain.aliases.all().delete()
        domain.delete()
    return len(addresses)


def set_catch_all(domain: Domain, enabled: bool) -> None:
    domain.catch_all = enabled
    domain.save(update_fields=["catch_all"])


# --- what to publish ----------------------------------------------------------------------


def ownership_name(domain: Domain) -> str:
    return f"{OWNERSHIP_LABEL}.{domain.name}"


def ownership_value(domain: Domain) -> str:
    return OWNERSHIP_PREFIX + domain.verification_token


def dkim_target(key: DkimKey) -> str:
    """Where a user domain's DKIM CNAME points: the key as published for the primary domain."""
    return f"{key.selector}._domainkey.{mailcloak_settings.get().primary_domain}"


def records_to_publish(domain: Domain, keys: Sequence[DkimKey] | None = None) -> list[Record]:
    """Every record the owner publishes: ownership, MX, SPF, DKIM as CNAMEs to our keys
    (which then follow key changes), DMARC."""
    config = mailcloak_settings.get()
    keys = signing_keys(config) if keys is None else keys
    return [
        Record(ownership_name(domain), "TXT", ownership_value(domain),
               "proves the domain is yours"),
        Record(domain.name, "MX", f"10 {config.hostname}",
               f"mail to addresses at {domain.name} comes to Mailcloak"),
        Record(domain.name, "TXT", spf_value(), "SPF: Mailcloak sends the domain's mail"),
        *(Record(f"{key.selector}._domainkey.{domain.name}", "CNAME", dkim_target(key),
                 f"DKIM ({key.algorithm}); or publish the TXT key shown below instead")
          for key in keys),
        Record(f"_dmarc.{domain.name}", "TXT", dmarc_value(domain.name),
               "DMARC: receivers quarantine mail that fails SPF and DKIM"),
    ]


# --- aliases with a chosen address --------------------------------------------------------


def own_verified_domain(user: User, name: str) -> Domain:
    domain = Domain.objects.filter(name=name.strip().lower(), owner=user).first()
    if domain is None:
        raise DomainError(f"{name} is not one of your domains")
    if not domain.active or domain.verified_at is None:
        raise DomainError(f"{domain.name} is not verified: publish its DNS records first")
    return domain


def create_named_alias(user: User, domain_name: str, local_part: str, *,
                       mailbox: Mailbox | None = None, title: str = "",
                       notes: str = "") -> Alias:
    """An alias LOCAL_PART@DOMAIN on one of the user's own verified domains."""
    domain = own_verified_domain(user, domain_name)
    local = local_part.strip().lower()
    if not LOCAL_PART.match(local):
        raise DomainError("an address is 1-64 characters of a-z, 0-9, '.', '_' or '-', "
                          "starting and ending with a letter or digit")
    mailbox = mailbox or default_mailbox(user)
    if mailbox is None or mailbox.user_id != user.pk or not mailbox.is_verified:
        raise DomainError("verify a mailbox first: mail can only be forwarded to a verified "
                          "address")
    address = f"{local}@{domain.name}"
    if DeletedAlias.objects.filter(address=address).exists():
        raise DomainError(f"{address} was deleted and is never issued again")
    charge_creation(user)
    try:
        with transaction.atomic():
            return Alias.objects.create(address=address, domain=domain, user=user,
                                        mailbox=mailbox, title=title, notes=notes)
    except IntegrityError:
        raise DomainError(f"{address} already exists") from None
