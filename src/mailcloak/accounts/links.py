"""Absolute links for emails, built from MAILCLOAK_PUBLIC_URL.

Emailed links never use the request's Host header: a forged Host must not be able to turn a
password-reset or verification mail into a link to someone else's server.
"""

from __future__ import annotations

from mailcloak import settings as mailcloak_settings


def public_link(path: str) -> str:
    """`path` (starting with "/") under the public URL of the web app."""
    return mailcloak_settings.get().public_url + path


def is_public_link(url: str) -> bool:
    """Whether `url` points into this web app (and not at a look-alike host)."""
    base = mailcloak_settings.get().public_url
    return url == base or url.startswith((base + "/", base + "?", base + "#"))
