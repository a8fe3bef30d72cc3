"""Template context shared by every page."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from mailcloak import settings as mailcloak_settings
from mailcloak.outbox.views import is_loopback_client

# Which header tab and which account-settings entry a page belongs to, by URL name.
SETTINGS_PAGES = {
    "accounts:settings": "overview",
    "accounts:mailboxes": "mailboxes",
    "accounts:mailbox_delete": "mailboxes",
    "accounts:mailbox_verify": "mailboxes",
    "accounts:delete": "delete",
    "account_email": "email",
    "account_change_password": "password",
    "account_set_password": "password",
}


def page_section(view_name: str) -> tuple[str, str]:
    """(header tab, settings entry) for the view named `view_name`."""
    if view_name in SETTINGS_PAGES:
        return "settings", SETTINGS_PAGES[view_name]
    if view_name.startswith("mfa_"):
        return "settings", "mfa"
    if view_name.startswith("accounts:token"):
        return "settings", "tokens"
    if view_name.startswith("aliases:blocked"):
        return "blocked", ""
    if view_name.startswith("aliases:domain"):
        return "domains", ""
    return view_name.partition(":")[0], ""


def mailcloak(request: HttpRequest) -> dict[str, Any]:
    config = mailcloak_settings.get()
    match = getattr(request, "resolver_match", None)
    section, settings_entry = page_section(match.view_name if match else "")
    return {
        "mailcloak_local_mode": not config.is_production,
        "mailcloak_signups_open": config.signups,
        "mailcloak_outbox_visible": not config.is_production and is_loopback_client(request),
        "nav_section": section,
        "settings_section": settings_entry,
    }
