"""Users, their real mailboxes and their API tokens."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any, ClassVar

from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


def normalize_address(address: str) -> str:
    """Addresses are compared case-insensitively everywhere; store them lower-cased."""
    return address.strip().lower()


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        user = self.model(email=normalize_address(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)


class User(AbstractUser):
    """A Mailcloak account; the login is the email address (no user name)."""

    class Digest(models.TextChoices):
        """How the owner hears about mail held in the quarantine."""

        OFF = "off", "Never"
        DAILY = "daily", "One email a day at most"
        IMMEDIATELY = "immediately", "As soon as mail is held"

    class Sensitivity(models.TextChoices):
        """The spam filter's strictness (mailcloak.mail.spam.verdict.Sensitivity)."""

        RELAXED = "relaxed", "Relaxed: hold only obvious spam"
        NORMAL = "normal", "Normal"
        STRICT = "strict", "Strict: hold anything doubtful"

    username = None  # type: ignore[assignment]
    email = models.EmailField("email address", unique=True)
    quarantine_digest = models.CharField("quarantine emails", max_length=12,
                                         choices=Digest.choices, default=Digest.DAILY)
    spam_sensitivity = models.CharField("spam filter", max_length=8,
                                        choices=Sensitivity.choices, default=Sensitivity.NORMAL)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    objects: ClassVar[UserManager] = UserManager()  # type: ignore[assignment]

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = normalize_address(self.email)
        super().save(*args, **kwargs)


class Mailbox(models.Model):
    """A real destination address of a user. Nothing is forwarded to it until it is verified."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="mailboxes")
    email = models.EmailField()
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(Lower("email"), "user", name="mailbox_unique_per_user"),
            # Once verified, an address belongs to one account only.
            models.UniqueConstraint(Lower("email"), condition=models.Q(verified_at__isnull=False),
                                    name="mailbox_verified_unique"),
        ]
        ordering: ClassVar = ["created_at"]

    def __str__(self) -> str:
        return self.email

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = normalize_address(self.email)
        super().save(*args, **kwargs)

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None


class ApiToken(models.Model):
    """A per-user REST API token. Only its SHA-256 is stored; the token is shown once."""

    PREFIX = "mc_"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"

    @staticmethod
    def hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, user: User, name: str) -> tuple[ApiToken, str]:
        token = cls.PREFIX + secrets.token_urlsafe(32)
        return cls.objects.create(user=user, name=name, token_hash=cls.hash(token)), token

    @classmethod
    def authenticate(cls, token: str) -> User | None:
        found = cls.objects.select_related("user").filter(token_hash=cls.hash(token)).first()
        if found is None or not found.user.is_active:
            return None
        cls.objects.filter(pk=found.pk).update(last_used_at=timezone.now())
        return found.user
