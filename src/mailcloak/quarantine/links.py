"""Signed links in quarantine emails that act on one held message without logging in.

A token names the user, the message and the action, is signed with the instance's secret
(django.core.signing: HMAC-SHA256, compared in constant time) under its own salt, and expires
with the message's retention. Opening a link only shows a confirmation page; its POST acts,
so mail scanners that follow links change nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from django.core import signing
from django.urls import reverse

from mailcloak import settings as mailcloak_settings
from mailcloak.quarantine.models import QuarantinedMessage

SALT = "mailcloak.quarantine.action-link"


class LinkAction(enum.StrEnum):
    BLOCK = "block"
    DISABLE = "disable"


@dataclass(frozen=True)
class LinkClaim:
    user_id: int
    message_id: int
    action: LinkAction


class BadLink(Exception):
    """The link is expired, damaged or not a link we made; str() says which for the page."""


def max_age() -> timedelta:
    # One day of grace past retention: by then the message itself is gone.
    return timedelta(days=mailcloak_settings.get().quarantine_days + 1)


def make_token(held: QuarantinedMessage, action: LinkAction) -> str:
    return signing.dumps([held.user_id, held.pk, str(action)], salt=SALT, compress=False)


def action_url(held: QuarantinedMessage, action: LinkAction) -> str:
    """The absolute URL of the confirmation page for `action` on `held`."""
    path = reverse("quarantine:link", args=[make_token(held, action)])
    return mailcloak_settings.get().public_url + path


def read_token(token: str) -> LinkClaim:
    """What a token claims, if its signature holds and it has not expired."""
    try:
        user_id, message_id, action = signing.loads(token, salt=SALT, max_age=max_age())
        return LinkClaim(int(user_id), int(message_id), LinkAction(action))
    except signing.SignatureExpired:
        raise BadLink("This link has expired.") from None
    except (signing.BadSignature, ValueError, TypeError):
        raise BadLink("This link is not valid. Copy the whole link from the email, or open "
                      "your quarantine instead.") from None
