"""Creating, deleting and checking aliases: the rules shared by the web app, API and CLI."""

from __future__ import annotations

import re
import secrets
import string

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import Mailbox, User, normalize_address
from mailcloak.aliases.models import Alias, BlockedSender, DeletedAlias, Domain
from mailcloak.mail.ratelimit import Charge, RateLimited, charge

ALPHABET = string.ascii_lowercase + string.digits
RANDOM_LENGTH = 16  # 36**16 ~ 2**82: unguessable
SUFFIX_LENGTH = 8
PREFIX_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,38}[a-z0-9])?$")


class AliasError(ValueError):
    """A request to create or change an alias that cannot be honoured; str() says why."""


def random_token(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def sync_configured_domains() -> None:
    """Make sure every MAILCLOAK_DOMAINS entry exists as an instance (shared) domain."""
    for name in mailcloak_settings.get().domains:
        Domain.objects.get_or_create(name=name, defaults={"owner": None})


def domains_for(user: User) -> list[Domain]:
    """Domains on which `user` may create aliases: instance domains and their own verified
    ones."""
    sync_configured_domains()
    return list(Domain.objects.accepting_mail().filter(Q(owner__isnull=True) | Q(owner=user)))


def default_mailbox(user: User) -> Mailbox | None:
    return user.mailboxes.filter(verified_at__isnull=False).order_by("created_at").first()


def charge_creation(user: User) -> None:
    """MAILCLOAK_ALIAS_CREATIONS_PER_USER, counted across every node (mail.ratelimit)."""
    rates = mailcloak_settings.get().alias_creations_per_user
    try:
        charge([Charge("alias-creations", str(user.pk), 1, rates)])
    except RateLimited as limited:
        per = "hour" if limited.rate.seconds == 3600 else "day"
        raise AliasError(f"you can create at most {limited.rate.count} aliases per {per}; "
                         "try again later") from None


def create_alias(user: User, *, domain: str | None = None, prefix: str | None = None,
                 mailbox: Mailbox | None = None, title: str = "", notes: str = "") -> Alias:
    """A new alias with a random local part (or `prefix` + "." + random suffix)."""
    allowed = {d.name: d for d in domains_for(user)}
    domain_name = (domain or mailcloak_settings.get().primary_domain).strip().lower()
    if domain_name not in allowed:
        raise AliasError(f"{domain_name} is not one of your alias domains")
    if mailbox is None:
        mailbox = default_mailbox(user)
    if mailbox is None or mailbox.user_id != user.pk:
        raise AliasError("verify a mailbox first: mail can only be forwarded to a verified address")
    if not mailbox.is_verified:
        raise AliasError(f"{mailbox.email} is not verified yet")
    if prefix is not None:
        prefix = prefix.strip().lower()
        if not PREFIX_PATTERN.match(prefix):
            raise AliasError("a prefix is 1-40 characters of a-z, 0-9, '.', '_' or '-', "
                             "starting and ending with a letter or digit")
    charge_creation(user)
    for _ in range(10):
        local = f"{prefix}.{random_token(SUFFIX_LENGTH)}" if prefix else random_token(RANDOM_LENGTH)
        address = f"{local}@{domain_name}"
        if DeletedAlias.objects.filter(address=address).exists():
            continue
        try:
            with transaction.atomic():
                return Alias.objects.create(address=address, domain=allowed[domain_name],
                                            user=user, mailbox=mailbox, title=title, notes=notes)
        except IntegrityError:
            continue
    raise AliasError("could not find a free address; try again")


def delete_alias(alias: Alias) -> None:
    """Delete an alias; its address is retired so it is never issued again."""
    with transaction.atomic():
        DeletedAlias.objects.get_or_create(address=alias.address)
        alias.delete()


def block_sender(user: User, value: str, *, alias: Alias | None = None) -> BlockedSender:
    """Block an address (`a@b.c`) or a whole domain (`b.c` or `@b.c`)."""
    value = normalize_address(value).lstrip("@")
    if alias is not None and alias.user_id != user.pk:
        raise AliasError("no such alias")
    if "@" in value:
        local, _, host = value.rpartition("@")
        if not local or not host or "." not in host:
            raise AliasError(f"{value} is not an email address")
        kind = BlockedSender.Kind.ADDRESS
    else:
        if "." not in value or not all(value.split(".")):
            raise AliasError(f"{value} is not a domain name")
        kind = BlockedSender.Kind.DOMAIN
    blocked, _ = BlockedSender.objects.get_or_create(user=user, alias=alias, kind=kind, value=value)
    return blocked


def is_sender_blocked(alias: Alias, sender: str) -> bool:
    """Whether mail from `sender` to `alias` is blocked by the owner's rules."""
    rules = _rules_naming(sender)
    return rules is not None and rules.filter(
        Q(alias=alias) | Q(alias__isnull=True), user_id=alias.user_id).exists()


def _rules_naming(sender: str) -> QuerySet[BlockedSender] | None:
    """Every user's rules naming `sender`'s address or one of its parent domains."""
    sender = normalize_address(sender)
    if "@" not in sender:
        return None
    return BlockedSender.objects.filter(
        Q(kind=BlockedSender.Kind.ADDRESS, value=sender)
        | Q(kind=BlockedSender.Kind.DOMAIN, value__in=domain_and_parents(sender)))


def domain_and_parents(address: str) -> list[str]:
    """The domain of `address` and every domain above it: a block on one covers those below."""
    labels = address.rpartition("@")[2].split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]
