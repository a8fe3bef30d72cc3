"""The quarantine: mail held instead of delivered, rejections logged, what owners did about it.

Every row carries `expires_at`; the sweep (mailcloak.quarantine.sweep) deletes rows once it has
passed, and pages never show a row past it even before the sweep has run.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import ClassVar, Self, TypeVar

from django.conf import settings
from django.db import models
from django.utils import timezone

from mailcloak.aliases.models import Alias


class Direction(models.TextChoices):
    """mailcloak.mail.spam.verdict.Direction, as stored."""

    INBOUND = "inbound", "To the alias"
    OUTBOUND = "outbound", "From the alias"


_M = TypeVar("_M", bound=models.Model)


class LiveQuerySet(models.QuerySet[_M]):
    def live(self, now: datetime | None = None) -> Self:
        """Rows whose retention has not run out."""
        return self.filter(expires_at__gt=now or timezone.now())


class QuarantinedMessage(models.Model):
    """A message held instead of delivered: its metadata in the clear, its content encrypted."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="quarantined_messages")
    alias = models.ForeignKey(Alias, on_delete=models.CASCADE, related_name="quarantined")
    direction = models.CharField(max_length=8, choices=Direction.choices)
    mail_from = models.CharField("envelope sender", max_length=320, blank=True)
    header_from = models.CharField("From", max_length=998, blank=True)
    sender_address = models.CharField(max_length=320, blank=True,
                                      help_text="The address in the From field.")
    subject = models.CharField(max_length=998, blank=True)
    sent_at = models.DateTimeField("Date", null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    size = models.PositiveIntegerField(default=0)
    score = models.FloatField(default=0.0)
    action = models.CharField(max_length=10, help_text="The spam verdict's action.")
    engine = models.CharField(max_length=20, blank=True)
    reasons = models.JSONField(default=list, help_text="[{code, text, score}], highest first.")
    authentication_results = models.TextField(blank=True)
    key_id = models.CharField(max_length=16, help_text="Which quarantine key encrypted it.")
    content = models.BinaryField(help_text="The raw message, AES-GCM encrypted.")
    expires_at = models.DateTimeField()
    notified_at = models.DateTimeField(null=True, blank=True,
                                       help_text="When a digest told the owner about it.")

    objects = LiveQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-received_at", "-id"]
        indexes: ClassVar = [
            models.Index(fields=["user", "-received_at"], name="quarantine_user_idx"),
            models.Index(fields=["expires_at"], name="quarantine_expiry_idx"),
            models.Index(fields=["user", "notified_at"], name="quarantine_notify_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.sender_address or self.mail_from or '(no sender)'} -> {self.alias_id}"

    @property
    def block_address(self) -> str:
        """The sender a block applies to: the envelope sender, which Mailcloak checks when mail
        arrives, or the From address when the envelope sender was empty (<>)."""
        return (self.mail_from or self.sender_address).lower()

    @property
    def block_domain(self) -> str:
        return self.block_address.rpartition("@")[2]

    @property
    def is_inbound(self) -> bool:
        return self.direction == Direction.INBOUND

    def days_left(self, now: datetime | None = None) -> int:
        """Whole days (rounded up) until the message is deleted."""
        remaining = (self.expires_at - (now or timezone.now())) / timedelta(days=1)
        return max(0, math.ceil(remaining))

    def top_reasons(self, count: int = 3) -> list[dict[str, object]]:
        return sorted(self.reasons, key=lambda reason: -float(reason.get("score", 0)))[:count]


class RejectionLog(models.Model):
    """Mail refused during the SMTP conversation (over the reject threshold, DMARC reject):
    its content was never stored, but its owner may see that it came."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="rejections")
    alias = models.ForeignKey(Alias, on_delete=models.CASCADE, related_name="rejections")
    mail_from = models.CharField("envelope sender", max_length=320, blank=True)
    header_from = models.CharField("From", max_length=998, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    reason = models.CharField(max_length=998)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    objects = LiveQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        indexes: ClassVar = [
            models.Index(fields=["user", "-created_at"], name="rejection_user_idx"),
            models.Index(fields=["expires_at"], name="rejection_expiry_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.mail_from or '(no sender)'}: {self.reason[:60]}"


class ForwardedMail(models.Model):
    """Mail forwarded to its owner, remembered for the retention period so the owner can still
    say "this was spam". Metadata, plus what the builtin spam filter needs to learn from it
    (its digest and hashed word features, sealed with the quarantine key): never the content."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="forwarded_mail")
    alias = models.ForeignKey(Alias, on_delete=models.CASCADE, related_name="forwarded_mail")
    queue_id = models.CharField(max_length=32)
    mail_from = models.CharField("envelope sender", max_length=320, blank=True)
    header_from = models.CharField("From", max_length=998, blank=True)
    sender_address = models.CharField(max_length=320, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    score = models.FloatField(default=0.0)
    key_id = models.CharField(max_length=16, blank=True)  # empty: no features were kept
    features = models.BinaryField(blank=True, default=b"")
    reported_spam_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    objects = LiveQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        verbose_name = "forwarded mail"
        verbose_name_plural = "forwarded mail"
        indexes: ClassVar = [
            models.Index(fields=["user", "-created_at"], name="forwarded_user_idx"),
            models.Index(fields=["expires_at"], name="forwarded_expiry_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.queue_id} to {self.alias_id}"


class Activity(models.Model):
    """One thing an owner did in the quarantine. Metadata only: never a subject or content."""

    class Action(models.TextChoices):
        BLOCK = "block", "Blocked a sender"
        UNBLOCK = "unblock", "Undid a block"
        DISABLE_ALIAS = "disable", "Disabled an alias"
        ENABLE_ALIAS = "enable", "Re-enabled an alias"
        DELETE = "delete", "Deleted a message"
        RELEASE = "release", "Released a message (not spam)"
        SPAM = "spam", "Reported forwarded mail as spam"

    class Via(models.TextChoices):
        WEB = "web", "Web"
        API = "api", "API"
        EMAIL = "email", "Email link"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="quarantine_activity")
    action = models.CharField(max_length=10, choices=Action.choices)
    via = models.CharField(max_length=5, choices=Via.choices, default=Via.WEB)
    alias_address = models.CharField(max_length=320, blank=True)
    target = models.CharField(max_length=320, blank=True,
                              help_text="The sender, domain or alias acted on.")
    detail = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    objects = LiveQuerySet.as_manager()

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]
        verbose_name_plural = "activities"
        indexes: ClassVar = [
            models.Index(fields=["user", "-created_at"], name="activity_user_idx"),
            models.Index(fields=["expires_at"], name="activity_expiry_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()}: {self.target}"


class DigestRecord(models.Model):
    """When a user was last sent a quarantine digest (at most one a day for `daily`)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="quarantine_digest_record")
    last_sent_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.user_id}: {self.last_sent_at:%Y-%m-%d %H:%M}"
