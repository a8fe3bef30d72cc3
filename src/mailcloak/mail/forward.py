"""Forwarding: a message received for an alias, made ready for the alias owner's mailbox.

The message leaves as it came, byte for byte, except for the header fields rewrite.py must
change: the body, MIME structure, encodings and the folding of untouched fields are never
re-serialised. Its envelope sender is a VERP bounce address, so bounces find the alias.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import format_datetime

from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.aliases.models import Alias, Contact
from mailcloak.mail.contacts import contact_for
from mailcloak.mail.headers import HeaderField, join_message, split_message
from mailcloak.mail.policy_email import Mailbox
from mailcloak.mail.rewrite import Rewriter, original_sender
from mailcloak.mail.verp import make_bounce_address

ALIAS_FIELD = "X-Mailcloak-Alias"


class UnparseableMessage(Exception):
    """The input has no usable header block, or names no sender at all: nothing to forward.
    The SMTP server answers 554 5.6.0."""


@dataclass(frozen=True)
class ForwardedMessage:
    content: bytes
    mail_from: str  # VERP bounce address
    recipient: str  # the alias owner's mailbox
    contact: Contact  # the original sender, as this alias knows them


def prepare_forward(raw: bytes, *, alias: Alias, envelope_from: str,
                    queue_id: str) -> ForwardedMessage:
    """The message `raw`, received for `alias`, rewritten for its owner's mailbox.

    Creates the contacts (reverse addresses) of its sender and of every other address the
    owner could answer to. Raises UnparseableMessage only when there is no header to work on.
    """
    message = split_message(raw)
    sender = _sender(message.fields, envelope_from)
    config = mailcloak_settings.get()
    mail_from = make_bounce_address(alias.domain.name, alias_id=alias.pk, queue_id=queue_id)
    contact = contact_for(alias, sender.address, sender.name)
    rewriter = Rewriter(
        alias_address=alias.address, hostname=config.hostname, sender=sender,
        sender_reverse=contact.reverse_address, name_format=config.sender_name_format,
        reverse=lambda address, name: contact_for(alias, address, name).reverse_address,
        eol=message.eol,
    )
    fields = rewriter.rewrite(message.fields)
    fields += _added_fields(fields, alias=alias, queue_id=queue_id, hostname=config.hostname,
                            eol=message.eol)
    content = join_message(fields, message.body, message.separator or message.eol)
    return ForwardedMessage(content=content, mail_from=mail_from,
                            recipient=alias.mailbox.email, contact=contact)


def check_forwardable(raw: bytes, envelope_from: str) -> None:
    """Raise UnparseableMessage if `raw` could not be forwarded (checked before scanning)."""
    _sender(split_message(raw).fields, envelope_from)


def _sender(fields: list[HeaderField], envelope_from: str) -> Mailbox:
    if not fields:
        raise UnparseableMessage("the message has no header fields")
    sender = original_sender(fields, envelope_from)
    if sender is None:
        raise UnparseableMessage("the message names no sender (no From, null envelope sender)")
    return sender


def _added_fields(fields: list[HeaderField], *, alias: Alias, queue_id: str, hostname: str,
                  eol: bytes) -> list[HeaderField]:
    """Our alias marker, and the Message-ID and Date every message must have."""
    present = {field.key for field in fields}
    added = [HeaderField.build(ALIAS_FIELD, alias.address, eol)]
    if "message-id" not in present:
        # Derived from the queue id (checked by make_bounce_address): preparing the same
        # forward again, after a crash, gives the same id.
        message_id = f"<{queue_id.lower()}.{alias.pk}@{hostname}>"
        added.append(HeaderField.build("Message-ID", message_id, eol))
    if "date" not in present:
        added.append(HeaderField.build("Date", format_datetime(timezone.now()), eol))
    return added
