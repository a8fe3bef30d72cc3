"""The RCPT TO decision: is this recipient one of ours, and may this sender write to it?

Mail is only ever forwarded to the owner's mailbox of an alias found by its exact address, never
to anything spelled in the recipient address, so no address trick can make us relay. Addresses
of deleted aliases are refused like unknown ones (their rows are gone; they are never reissued).
A user's own domain is ours only while it is verified; its catch-all, when on, creates the alias
for an unknown address on first mail (aliases.catchall).

Runs in a worker thread (it uses the ORM). The common cases cost one indexed lookup, plus the
blocked-sender check for an alias that takes mail.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailcloak.aliases.catchall import alias_on_first_mail
from mailcloak.aliases.models import Alias, Contact, Domain
from mailcloak.aliases.services import is_sender_blocked
from mailcloak.mail import replies, verp
from mailcloak.mail.addresses import Address
from mailcloak.mail.counters import add_after_commit
from mailcloak.mail.lookups import RcptAlias, rcpt_alias
from mailcloak.mail.replies import Reply
from mailcloak.mail.sending import is_owner_mailbox, record_refused_reply


class Action(enum.Enum):
    FORWARD = "forward"  # to the alias owner's mailbox
    REPLY = "reply"  # from the alias owner, out through the alias to a contact (reverse alias)
    DROP = "drop"  # a disabled alias whose owner chose to drop mail silently
    BOUNCE = "bounce"  # a delivery report for mail we sent, at a VERP address
    REJECT = "reject"


@dataclass(frozen=True)
class Decision:
    action: Action
    reply: Reply
    recipient: str  # normalised address
    alias_id: int | None = None
    contact_id: int | None = None  # REPLY: the contact behind the reverse alias

    @property
    def accepted(self) -> bool:
        return self.action is not Action.REJECT


def decide(sender: Address, recipient: Address, peer: str | None = None) -> Decision:
    """What to answer to RCPT TO `recipient` in a transaction from `sender` (NULL for `<>`).

    `peer` (the client's address) is accepted for the per-client limits to come.
    """
    address = str(recipient)
    if recipient.is_literal:
        return _reject(replies.RELAY_DENIED, address)
    if verp.is_bounce_local_part(recipient.local):
        return _bounce(address, recipient.domain)
    alias = rcpt_alias(address, "" if sender.is_null else str(sender))
    if alias is None:
        return _no_alias(sender, address, recipient, peer)
    if not alias.domain_takes_mail:
        return _reject(replies.RELAY_DENIED, address)
    return _for_alias(alias, sender, address)


def serves_domain(name: str) -> bool:
    """Whether `name` is one of our alias domains: active, and an instance domain or a user
    domain while it is verified."""
    return Domain.objects.accepting_mail().filter(name=name).exists()


def _for_alias(alias: Alias | RcptAlias, sender: Address, address: str) -> Decision:
    if not alias.enabled:
        if alias.disabled_action == Alias.DisabledAction.DROP:
            return Decision(Action.DROP, replies.RECIPIENT_OK, address, alias.pk)
        return _reject(replies.UNKNOWN_RECIPIENT, address)
    if isinstance(alias, RcptAlias):  # the RCPT lookup knows
        blocked = alias.sender_blocked
    else:  # an alias the catch-all has just created
        blocked = not sender.is_null and is_sender_blocked(alias, str(sender))
    if blocked:
        add_after_commit(Alias, alias.pk, "blocked_count")
        return _reject(replies.SENDER_BLOCKED, address)
    return Decision(Action.FORWARD, replies.RECIPIENT_OK, address, alias.pk)


def _bounce(address: str, domain: str) -> Decision:
    if not serves_domain(domain):
        return _reject(replies.RELAY_DENIED, address)
    bounce = verp.parse_bounce_address(address)
    if bounce is None:  # our shape, but not a tag we made
        return _reject(replies.UNKNOWN_RECIPIENT, address)
    return Decision(Action.BOUNCE, replies.RECIPIENT_OK, address, bounce.alias_id)


def _no_alias(sender: Address, address: str, recipient: Address,
              peer: str | None) -> Decision:
    domain = (Domain.objects.accepting_mail().only("id", "owner_id", "catch_all", "name")
              .filter(name=recipient.domain).first())
    if domain is None:
        return _reject(replies.RELAY_DENIED, address)
    contact = (Contact.objects.select_related("alias", "alias__domain")
               .filter(reverse_address=address).first())
    if contact is not None:
        return _reverse_alias(contact, sender, address, peer)
    if domain.catch_all and domain.owner_id is not None:
        return _catch_all(domain, recipient, sender, address)
    return _reject(replies.UNKNOWN_RECIPIENT, address)


def _catch_all(domain: Domain, recipient: Address, sender: Address, address: str) -> Decision:
    created = alias_on_first_mail(domain, recipient.local)
    if isinstance(created, Reply):
        return _reject(created, address)
    return _for_alias(created, sender, address)


def _reverse_alias(contact: Contact, sender: Address, address: str,
                   peer: str | None) -> Decision:
    """Accepted for now when the envelope sender is one of the owner's verified mailboxes;
    the end of DATA checks From and authentication before anything is sent."""
    alias = contact.alias
    if not alias.domain.active or not alias.domain.is_verified:
        return _reject(replies.RELAY_DENIED, address)
    if sender.is_null or not is_owner_mailbox(alias, str(sender)):
        record_refused_reply(alias, mail_from=str(sender), peer_ip=peer or "",
                             reason="envelope sender is not the owner's verified mailbox")
        return _reject(replies.FORGED_REPLY, address)
    return Decision(Action.REPLY, replies.RECIPIENT_OK, address, alias.pk, contact.pk)


def _reject(reply: Reply, address: str) -> Decision:
    return Decision(Action.REJECT, reply, address)
