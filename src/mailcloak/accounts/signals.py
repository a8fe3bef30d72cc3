"""Keep each account's first mailbox in step with allauth's email verification."""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from allauth.account.signals import email_confirmed, user_signed_up
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from mailcloak.accounts.models import Mailbox, User


@receiver(user_signed_up)
def create_first_mailbox(sender: Any, request: HttpRequest, user: User, **kwargs: Any) -> None:
    Mailbox.objects.get_or_create(user=user, email=user.email)


@receiver(email_confirmed)
def verify_mailbox(sender: Any, request: HttpRequest, email_address: EmailAddress,
                   **kwargs: Any) -> None:
    Mailbox.objects.filter(
        user=email_address.user, email=email_address.email.lower(), verified_at__isnull=True
    ).update(verified_at=timezone.now())
