"""allauth hooks: signups can be closed by MAILCLOAK_SIGNUPS; emailed links use PUBLIC_URL."""

from __future__ import annotations

from urllib.parse import quote

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailConfirmation
from django.http import HttpRequest
from django.urls import reverse

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.links import public_link


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return bool(mailcloak_settings.get().signups)

    def get_email_confirmation_url(self, request: HttpRequest,
                                   emailconfirmation: EmailConfirmation) -> str:
        return public_link(reverse("account_confirm_email", args=[emailconfirmation.key]))

    def get_reset_password_from_key_url(self, key: str) -> str:
        path = reverse("account_reset_password_from_key", kwargs={"uidb36": "UID", "key": "KEY"})
        return public_link(path.replace("UID-KEY", quote(key)))
