"""Template context shared by every page."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from mailcloak import settings as mailcloak_settings


def mailcloak(request: HttpRequest) -> dict[str, Any]:
    config = mailcloak_settings.get()
    return {
        "mailcloak_local_mode": not config.is_production,
        "mailcloak_signups_open": config.signups,
    }
