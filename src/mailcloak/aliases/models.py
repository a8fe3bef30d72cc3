"""Domains, aliases, contacts (reverse aliases) and blocked senders."""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from mailcloak.accounts.models import Mailbox, normalize_address


class DomainQuerySet(models.QuerySet["Domain"]):
    def accepting_mail(self) -> DomainQuerySet:
        """Domains we take mail for: active, and either an instance domain or verified."""
        return self.filter(Q(owner__isnull=True) | Q(verified_at__isnull=False), active=True)


class Domain(models.Model):
    """A domain whose addresses are aliases. Instance domains (MAILCLOAK_DOMAINS) have no owner
    and are always verified; a user's own domain takes mail only while DNS proves it is theirs
    and points at us (aliases.domains)."""

    name = models.CharField(max_length=253, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.CASCADE, related_name="domains")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Published as `_mailcloak.NAME TXT "mailcloak-verify=TOKEN"` to prove ownership.
    verification_token = models.CharField(max_length=64, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)  # None: not (or no longer) verified
    checked_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # A verified domain keeps its verification through a grace period of failed checks.
    failing_since = models.DateTimeField(null=True, blank=True)
    failed_checks = models.PositiveIntegerField(default=0)
    check_results = models.JSONField(default=list, blank=True)  # the last check, for display
    catch_all = models.BooleanField(
        default=False, help_text="Mail to an unknown address creates the alias on first mail.")

    objects = DomainQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.name = self.name.strip().lower().rstrip(".")
        super().save(*args, **kwargs)

    @property
    def is_verified(self) -> bool:
        return self.owner_id is None or self.verified_at is not None

    @property
    def is_shared(self) -> bool:
        return self.owner_id is None


class Alias(models.Model):
    """An address handed out instead of the real one; mail to it goes to `mailbox`."""

    class DisabledAction(models.TextChoices):
        REJECT = "reject", "Reject mail (550 5.1.1)"
        DROP = "drop", "Accept and silently drop"

    address = models.CharField(max_length=320, unique=True)
    domain = models.ForeignKey(Domain, on_delete=models.PROTECT, related_name="aliases")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="aliases")
    mailbox = models.ForeignKey(Mailbox, on_delete=models.PROTECT, related_name="aliases")
    enabled = models.BooleanField(default=True)
    disabled_action = models.CharField(max_length=10, choices=DisabledAction.choices,
                                       default=DisabledAction.REJECT)
    title = models.CharField(max_length=200, blank=True)
    # The name contacts see in From on mail sent from this alias ("" shows the address only).
    display_name = models.CharField(max_length=200, blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    forwarded_count = models.PositiveIntegerField(default=0)
    blocked_count = models.PositiveIntegerField(default=0)
    replied_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        verbose_name_plural = "aliases"

    def __str__(self) -> str:
        return self.address

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.address = normalize_address(self.address)
        super().save(*args, **kwargs)


class DeletedAlias(models.Model):
    """Addresses of deleted aliases: never issued again, so old correspondents can't reach
    a new owner."""

    address = models.CharField(max_length=320, unique=True)
    deleted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "deleted aliases"

    def __str__(self) -> str:
        return self.address


class Contact(models.Model):
    """Someone who wrote to an alias (or whom the owner writes to from it). Its reverse
    address on the alias domain routes replies back out through the alias."""

    alias = models.ForeignKey(Alias, on_delete=models.CASCADE, related_name="contacts")
    email = models.CharField(max_length=320)
    display_name = models.CharField(max_length=200, blank=True)
    reverse_address = models.CharField(max_length=320, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    forwarded_count = models.PositiveIntegerField(default=0)
    replied_count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["alias", "email"], name="contact_unique_per_alias"),
        ]
        ordering: ClassVar = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} -> {self.alias}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = normalize_address(self.email)
        self.reverse_address = normalize_address(self.reverse_address)
        super().save(*args, **kwargs)


class BlockedSender(models.Model):
    """Mail from this address (or any address at this domain) is refused for one alias, or
    for all of the user's aliases when `alias` is empty."""

    class Kind(models.TextChoices):
        ADDRESS = "address", "Address"
        DOMAIN = "domain", "Whole domain"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="blocked_senders")
    alias = models.ForeignKey(Alias, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="blocked_senders")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    value = models.CharField(max_length=320)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["user", "alias", "kind", "value"],
                                    name="blocked_sender_unique"),
        ]
        # The RCPT check finds the owner's rules naming the sender without reading all their
        # rules (a user may block thousands of domains; bench/rcpt_scale.py).
        indexes: ClassVar = [models.Index(fields=["user", "value"], name="blocked_sender_idx")]
        ordering: ClassVar = ["-created_at"]

    def __str__(self) -> str:
        return self.value

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.value = normalize_address(self.value).lstrip("@")
        super().save(*args, **kwargs)
