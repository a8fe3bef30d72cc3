"""allauth hooks: signups can be closed by MAILCLOAK_SIGNUPS."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.http import HttpRequest

from mailcloak import settings as mailcloak_settings


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return bool(mailcloak_settings.get().signups)
