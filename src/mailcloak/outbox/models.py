"""The local outbox: in local mode, outbound mail that has no route is kept here and shown in
the web app, so someone trying Mailcloak on one machine can follow every email."""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.utils import timezone


class LocalOutboxMessage(models.Model):
    mail_from = models.CharField(max_length=320, blank=True)
    recipient = models.CharField(max_length=320)
    subject = models.CharField(max_length=500, blank=True)
    content = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering: ClassVar = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.recipient}: {self.subject}"
