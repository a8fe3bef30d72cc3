"""Contacts: the people an alias corresponds with, each behind a reverse address.

Forwarded mail shows a contact's reverse address instead of their real one, so the owner's
replies come back to us and leave through the alias. A reverse address must be unguessable
(knowing it lets anyone write "from" the alias to that contact) and must never be an address
that is or was an alias.
"""

from __future__ import annotations

import secrets
import string

from django.db import IntegrityError, transaction

from mailcloak.accounts.models import normalize_address
from mailcloak.aliases.models import Alias, Contact, DeletedAlias
from mailcloak.mail.lookups import contact_of

REVERSE_PREFIX = "r."
TOKEN_ALPHABET = string.ascii_lowercase + string.digits
TOKEN_LENGTH = 16  # 36**16 ~ 2**82
ATTEMPTS = 8
NAME_LENGTH = Contact._meta.get_field("display_name").max_length or 200


class ContactError(RuntimeError):
    """No contact could be stored (the database keeps refusing); the caller retries later."""


def new_reverse_token() -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def contact_for(alias: Alias, email: str, display_name: str = "") -> Contact:
    """The contact for `email` on `alias`, created with a fresh reverse address on the alias's
    domain if there is none yet. Safe against concurrent workers creating the same pair."""
    email = normalize_address(email)
    display_name = display_name[:NAME_LENGTH]
    for _ in range(ATTEMPTS):
        contact = contact_of(alias.pk, email)
        if contact is not None:
            return _with_name(contact, display_name)
        reverse_address = f"{REVERSE_PREFIX}{new_reverse_token()}@{alias.domain.name}"
        if _is_alias_address(reverse_address):
            continue
        try:
            with transaction.atomic():
                return Contact.objects.create(alias=alias, email=email, display_name=display_name,
                                              reverse_address=reverse_address)
        except IntegrityError:
            # Another worker created this pair first, or (astronomically rarely) the same
            # reverse address: look again.
            continue
    raise ContactError(f"could not store a contact for alias {alias.pk}")


def _with_name(contact: Contact, display_name: str) -> Contact:
    """Learn a contact's name when the first message from them had none."""
    if display_name and not contact.display_name:
        contact.display_name = display_name
        Contact.objects.filter(pk=contact.pk, display_name="").update(display_name=display_name)
    return contact


def _is_alias_address(address: str) -> bool:
    return (Alias.objects.filter(address=address).exists()
            or DeletedAlias.objects.filter(address=address).exists())
