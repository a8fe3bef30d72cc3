"""Account operations shared by the CLI, the web app and the API."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from mailcloak.accounts.models import Mailbox, User, normalize_address


class AccountError(ValueError):
    """An account request that cannot be honoured; str() says why."""


def create_user_with_mailbox(email: str, *, password: str | None = None,
                             staff: bool = False) -> User:
    """A user whose login address is also an already-verified mailbox (operator-created)."""
    email = normalize_address(email)
    try:
        validate_email(email)
    except ValidationError:
        raise AccountError(f"{email!r} is not a valid email address") from None
    if User.objects.filter(email=email).exists():
        raise AccountError(f"a user {email} already exists")
    if Mailbox.objects.filter(email=email, verified_at__isnull=False).exists():
        raise AccountError(f"{email} is already another user's verified mailbox")
    with transaction.atomic():
        user = User.objects.create_user(email, password, is_staff=staff, is_superuser=staff)
        if password is None:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        Mailbox.objects.create(user=user, email=email, verified_at=timezone.now())
    return user
