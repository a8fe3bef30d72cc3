"""The durable mail queue: messages waiting to leave, one delivery job per final recipient.

A message's content is deleted as soon as every one of its jobs is finished (delivered or
bounced): forwarded mail is not kept. One job per recipient means a retry never re-sends to a
recipient that already accepted the message.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.utils import timezone

from mailcloak.aliases.models import Alias


class QueuedMessage(models.Model):
    class Kind(models.TextChoices):
        FORWARD = "forward", "Forwarded to an alias owner"
        REPLY = "reply", "Sent from an alias"
        SYSTEM = "system", "System mail (verification, notices)"

    queue_id = models.CharField(max_length=32, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    mail_from = models.CharField(max_length=320, blank=True)
    content = models.BinaryField(null=True)
    size = models.PositiveIntegerField(default=0)
    alias = models.ForeignKey(Alias, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # The retention sweep and the metrics read messages by age.
        indexes: ClassVar = [models.Index(fields=["created_at"], name="queued_created_idx")]

    def __str__(self) -> str:
        return self.queue_id


class DeliveryJob(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        DELIVERED = "delivered", "Delivered"
        BOUNCED = "bounced", "Bounced"

    message = models.ForeignKey(QueuedMessage, on_delete=models.CASCADE, related_name="jobs")
    recipient = models.CharField(max_length=320)
    domain = models.CharField(max_length=253)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    # A claimed job carries a lease; a crashed worker's job is claimed again once it expires.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    leased_by = models.CharField(max_length=64, blank=True)
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Unexpected errors and lost leases while handling this job: past a cap it is parked
    # as a bounce instead of being retried forever (a message that crashes every worker).
    crashes = models.PositiveIntegerField(default=0)
    # Where it went: the accepting host ("mx.example[192.0.2.1]:25") or "local outbox".
    delivered_to = models.CharField(max_length=300, blank=True)
    tls = models.BooleanField(null=True, blank=True, help_text="Whether TLS protected the delivery")

    class Meta:
        indexes: ClassVar = [
            models.Index(fields=["state", "next_attempt_at"], name="job_due_idx"),
            models.Index(fields=["finished_at"], name="job_finished_idx"),  # metrics by hour
            # A worker finds the jobs it holds (after a claim, renewing and releasing leases)
            # without reading every deferred job (bench/deferred_queue.py).
            models.Index(fields=["leased_by"], condition=models.Q(state="queued"),
                         name="job_leased_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id}:{self.recipient}"


class Bounce(models.Model):
    """A permanent delivery failure, recorded against the alias so its owner sees it."""

    class Source(models.TextChoices):
        DELIVERY = "delivery", "Our delivery attempt failed"
        DSN = "dsn", "A delivery status notification came back"
        COMPLAINT = "complaint", "The recipient reported the message as spam"

    alias = models.ForeignKey(Alias, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="bounces")
    recipient = models.CharField(max_length=320)
    source = models.CharField(max_length=10, choices=Source.choices)
    # What bounced: a forwarded copy, or mail sent from the alias (which counts against its
    # sending reputation, mail.reputation). "" when unknown.
    kind = models.CharField(max_length=10, blank=True, choices=QueuedMessage.Kind.choices)
    reason = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering: ClassVar = ["-created_at"]
        indexes: ClassVar = [models.Index(fields=["created_at"], name="bounce_created_idx")]

    def __str__(self) -> str:
        return f"{self.recipient}: {self.reason[:60]}"


class RefusedReply(models.Model):
    """Mail from an alias that we refused. A forged reply (not from the alias owner) is an
    attack on the alias, and a sending limit stops the owner's own mail: either way the owner
    sees every refusal."""

    class Kind(models.TextChoices):
        FORGED = "forged", "Not sent by the alias owner"
        RATE_LIMITED = "rate_limited", "Sending limit reached"
        PAUSED = "paused", "Sending paused"

    alias = models.ForeignKey(Alias, on_delete=models.CASCADE, related_name="refused_replies")
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.FORGED)
    mail_from = models.CharField(max_length=320, blank=True)
    header_from = models.CharField(max_length=320, blank=True)
    peer_ip = models.CharField(max_length=45, blank=True)
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering: ClassVar = ["-created_at"]
        indexes: ClassVar = [models.Index(fields=["created_at"], name="refused_created_idx")]

    def __str__(self) -> str:
        return f"{self.alias_id}: {self.reason}"


class RateCounter(models.Model):
    """How much of a limit is used in one fixed window: `scope` names the limit and its
    window length ("user-messages/3600"), `key` what is limited (a user or alias id).
    mail.ratelimit increments it with one conditional UPDATE, so every node sharing the
    database counts against the same row."""

    scope = models.CharField(max_length=40)
    key = models.CharField(max_length=64)
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["scope", "key", "window_start"],
                                    name="rate_counter_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key} @ {self.window_start:%Y-%m-%d %H:%M}: {self.count}"


class SendingPause(models.Model):
    """Sending from an alias (or from all of a user's aliases when `alias` is empty) is paused
    because its mail bounced or drew spam complaints too often. An operator lifts it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="sending_pauses")
    alias = models.ForeignKey(Alias, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="sending_pauses")
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    lifted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.alias or self.user}: {self.reason}"
