"""Sending from an alias: the owner's reply, rewritten so its recipients see only the alias.

The header is rebuilt from an allow-list: anything that could name the owner's mailbox, its
provider, the mail client or the owner's IP (Received, X-Originating-IP, the provider's
DKIM-Signature and ARC sets, Authentication-Results, X-Mailer, User-Agent, Return-Path,
Sender, Disposition-Notification-To, Autocrypt...) is simply not carried over. From becomes
the alias, To/Cc name the contacts' real addresses, and the message gets a new Message-ID on
the alias domain; In-Reply-To and References are kept (we keep the original Message-ID when
forwarding), so threading works on both sides. The body is scrubbed by mail.scrub.

To/Cc addresses that are reverse aliases of this alias become their contacts' real addresses.
Any other address written there (the owner's own mailbox, reverse aliases of other aliases,
people the owner wrote to directly) is left out of the header: we deliver only to the reverse
aliases given as envelope recipients, and the owner's provider delivered the direct ones
itself. Bcc never appears in what we send.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import format_datetime

from django.utils import timezone

from mailcloak.aliases.models import Alias, Contact
from mailcloak.mail.headers import HeaderField, format_mailbox, join_message, split_message
from mailcloak.mail.policy_email import parse_mailboxes
from mailcloak.mail.scrub import Identity, scrub_body
from mailcloak.mail.verp import make_bounce_address

# Fields carried over from the owner's message as they are: content, threading, subject.
KEPT_FIELDS = frozenset({
    "subject", "date", "in-reply-to", "references", "mime-version", "content-type",
    "content-transfer-encoding", "content-language", "content-disposition", "content-id",
    "content-description", "thread-topic", "thread-index", "importance", "priority",
    "x-priority", "keywords",
})
THREAD_FIELDS = frozenset({"in-reply-to", "references"})
_MESSAGE_ID = re.compile(r"<[^<>]*>")


@dataclass(frozen=True)
class OutboundMessage:
    content: bytes
    mail_from: str  # VERP bounce address on the alias domain (SPF and DKIM align with it)
    recipients: tuple[str, ...]  # the contacts' real addresses


def prepare_reply(raw: bytes, *, alias: Alias, contacts: Iterable[Contact], queue_id: str,
                  owner: Identity) -> OutboundMessage:
    """The owner's message `raw` as it leaves `alias` for `contacts` (the envelope recipients).

    `owner` names what must not leak: the owner's mailbox addresses and display names."""
    message = split_message(raw)
    recipients = {c.reverse_address: c for c in contacts}
    named = {mb.address.lower() for f in message.fields if f.key in ("to", "cc")
             for mb in parse_mailboxes(f.value)}
    known = {c.reverse_address: c for c in Contact.objects.filter(
        alias=alias, reverse_address__in=named - recipients.keys())} | recipients
    eol = message.eol
    fields = [HeaderField.build("From", format_mailbox(alias.display_name, alias.address), eol)]
    to = (_participants(message.fields, "to", known)
          or ", ".join(map(_mailbox_of, recipients.values())))
    fields.append(HeaderField.build("To", to, eol))
    cc = _participants(message.fields, "cc", known)
    if cc:
        fields.append(HeaderField.build("Cc", cc, eol))
    for field in message.fields:
        kept = _without_owner_ids(field, owner, eol) if field.key in THREAD_FIELDS else field
        if kept is not None and kept.key in KEPT_FIELDS:
            fields.append(kept)
    fields.append(HeaderField.build("Message-ID", _new_message_id(alias), eol))
    if not any(field.key == "date" for field in fields):
        fields.append(HeaderField.build("Date", format_datetime(timezone.now()), eol))
    body = scrub_body(message.fields, message.body, owner, alias_identity(alias))
    return OutboundMessage(
        content=join_message(fields, body, message.separator or eol),
        mail_from=make_bounce_address(alias.domain.name, alias_id=alias.pk, queue_id=queue_id),
        recipients=tuple(dict.fromkeys(c.email for c in recipients.values())),
    )


def alias_identity(alias: Alias) -> Identity:
    """What stands in for the owner wherever the body names them."""
    return Identity(addresses=(alias.address,), names=(alias.display_name,)
                    if alias.display_name else ())


def _participants(fields: list[HeaderField], key: str, known: dict[str, Contact]) -> str:
    mailboxes = [mb for field in fields if field.key == key for mb in parse_mailboxes(field.value)]
    contacts = [known[mb.address.lower()] for mb in mailboxes if mb.address.lower() in known]
    unique = {contact.pk: contact for contact in contacts}
    return ", ".join(_mailbox_of(contact) for contact in unique.values())


def _mailbox_of(contact: Contact) -> str:
    return format_mailbox(contact.display_name, contact.email)


def _without_owner_ids(field: HeaderField, owner: Identity, eol: bytes) -> HeaderField | None:
    """In-Reply-To/References minus ids made by the owner's provider (they name it)."""
    ids = _MESSAGE_ID.findall(field.value)
    kept = [i for i in ids if not owner.names_domain(i[1:-1].rpartition("@")[2])]
    if len(kept) == len(ids):
        return field
    return HeaderField.build(field.name, " ".join(kept), eol) if kept else None


def _new_message_id(alias: Alias) -> str:
    return f"<{secrets.token_hex(16)}@{alias.domain.name}>"
