"""Sending through a reverse alias: who may, and putting the rewritten message on the queue.

A reverse address lets anyone who knows it write "from" the alias, so knowing it is not
enough. At RCPT time the envelope sender must be one of the alias owner's verified mailboxes;
at the end of DATA the From header must be one too, and the message must pass SPF or DKIM
aligned (as DMARC defines it) with that mailbox's domain. Every refusal is recorded for the
owner to see. Accepted replies are scanned like inbound mail: spam is held in the owner's
quarantine marked outbound (with a "not sent" notice), never sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Protocol

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import Mailbox
from mailcloak.aliases.models import Alias, Contact
from mailcloak.mail import replies, reputation
from mailcloak.mail.auth import AuthResult
from mailcloak.mail.auth_dmarc import aligned
from mailcloak.mail.counters import add_after_commit
from mailcloak.mail.headers import split_message
from mailcloak.mail.models import QueuedMessage, RefusedReply
from mailcloak.mail.outbound import prepare_reply
from mailcloak.mail.policy_email import parse_mailboxes
from mailcloak.mail.queue import enqueue
from mailcloak.mail.ratelimit import Charge, RateLimited, charge, rates_for
from mailcloak.mail.replies import Reply
from mailcloak.mail.scrub import Identity
from mailcloak.mail.spam.verdict import Action as SpamAction
from mailcloak.mail.spam.verdict import Direction, Verdict
from mailcloak.quarantine.store import quarantine_message

FIELD_LIMIT = 320


class _Decision(Protocol):
    """What the RCPT stage hands over (mail.policy.Decision)."""

    @property
    def alias_id(self) -> int | None: ...

    @property
    def contact_id(self) -> int | None: ...


@dataclass
class SendOutcome:
    queue_ids: list[str] = field(default_factory=list)
    quarantined: int = 0
    refusal: Reply | None = None  # set when some reply was refused


def is_owner_mailbox(alias: Alias, address: str) -> bool:
    """Whether `address` is one of the verified mailboxes of `alias`'s owner."""
    return Mailbox.objects.filter(user_id=alias.user_id, email__iexact=address.strip(),
                                  verified_at__isnull=False).exists()


def record_refused_reply(alias: Alias, *, mail_from: str, reason: str, header_from: str = "",
                         peer_ip: str = "",
                         kind: str = RefusedReply.Kind.FORGED) -> RefusedReply:
    return RefusedReply.objects.create(alias=alias, kind=kind, mail_from=mail_from[:FIELD_LIMIT],
                                       header_from=header_from[:FIELD_LIMIT],
                                       peer_ip=peer_ip[:45], reason=reason[:200])


def authenticates_as(auth: AuthResult, domain: str) -> bool:
    """SPF or DKIM passed for a domain aligned with `domain` (relaxed, or strict when the
    domain's DMARC record asks for it), and DMARC itself did not fail for it."""
    if auth.dmarc.domain == domain and auth.dmarc.result == "fail":
        return False
    spf = auth.spf.result == "pass" and aligned(auth.spf.domain, domain, "r")
    return spf or any(d.result == "pass" and aligned(d.domain, domain, "r") for d in auth.dkim)


def send_replies(raw: bytes, *, sender: str, decisions: Iterable[_Decision], auth: AuthResult,
                 verdict: Verdict | None, action_for: Callable[[str], SpamAction],
                 new_queue_id: Callable[[], str]) -> SendOutcome:
    """Authorise and queue (or quarantine) the owner's message once per alias it goes out
    through; the caller owns the transaction."""
    outcome = SendOutcome()
    header_from = _header_from(raw)
    by_alias = groupby(sorted(decisions, key=lambda d: d.alias_id or 0),
                       key=lambda d: d.alias_id or 0)
    for alias_id, group in by_alias:
        alias = Alias.objects.select_related("domain", "user").filter(pk=alias_id).first()
        contacts = list(Contact.objects.filter(alias_id=alias_id,
                                               pk__in=[d.contact_id for d in group]))
        if alias is None or not contacts:
            continue  # deleted since RCPT
        refusal = _refusal(alias, sender, header_from, auth)
        if refusal:
            record_refused_reply(alias, mail_from=sender, header_from=header_from, reason=refusal)
            outcome.refusal = replies.REPLY_NOT_AUTHENTICATED
        elif verdict is not None and action_for(alias.user.spam_sensitivity) != SpamAction.DELIVER:
            quarantine_message(raw=raw, alias=alias, direction=Direction.OUTBOUND,
                               verdict=verdict, mail_from=sender,
                               authentication_results=auth.authentication_results)
            outcome.quarantined += 1
        elif reputation.is_paused(alias):
            record_refused_reply(alias, mail_from=sender, header_from=header_from,
                                 reason="sending paused", kind=RefusedReply.Kind.PAUSED)
            outcome.refusal = replies.SENDING_PAUSED
        else:
            try:
                charge_sending(alias, recipients=len(contacts))
            except RateLimited as limited:
                record_refused_reply(alias, mail_from=sender, header_from=header_from,
                                     reason=str(limited), kind=RefusedReply.Kind.RATE_LIMITED)
                outcome.refusal = _limit_reply(limited)
                continue
            outcome.queue_ids.append(_queue(raw, alias, contacts, new_queue_id()))
    return outcome


def charge_sending(alias: Alias, *, recipients: int) -> None:
    """Count one message to `recipients` against the owner's and the alias's limits;
    raises RateLimited (counting nothing) when one would be exceeded."""
    config = mailcloak_settings.get()
    joined = alias.user.date_joined
    user, alias_key = str(alias.user_id), str(alias.pk)
    charge([
        Charge("user-messages", user, 1, rates_for(config.send_messages_per_user, joined)),
        Charge("user-recipients", user, recipients,
               rates_for(config.send_recipients_per_user, joined)),
        Charge("alias-messages", alias_key, 1, rates_for(config.send_messages_per_alias, joined)),
        Charge("alias-recipients", alias_key, recipients,
               rates_for(config.send_recipients_per_alias, joined)),
    ])


def _limit_reply(limited: RateLimited) -> Reply:
    owner, _, what = limited.scope.partition("-")
    per = {3600: "hour", 86400: "day"}.get(limited.rate.seconds, f"{limited.rate.seconds} s")
    return replies.SENDING_LIMIT.with_text(
        limit=f"{limited.rate.count} {what} per {per}",
        what="for your account" if owner == "user" else "for this alias")


def _refusal(alias: Alias, sender: str, header_from: str, auth: AuthResult) -> str:
    """Why this message may not leave through `alias` ("" when it may)."""
    if not is_owner_mailbox(alias, sender):
        return "envelope sender is not the owner's verified mailbox"
    if not header_from or not is_owner_mailbox(alias, header_from):
        return "From is not the owner's verified mailbox"
    if not authenticates_as(auth, header_from.rpartition("@")[2].lower()):
        return "the message does not authenticate as the owner's mailbox (SPF/DKIM/DMARC)"
    return ""


def _header_from(raw: bytes) -> str:
    for header in split_message(raw).fields:
        if header.key == "from":
            mailboxes = parse_mailboxes(header.value)
            return mailboxes[0].address.lower() if len(mailboxes) == 1 else ""
    return ""


def owner_identity(alias: Alias, raw: bytes) -> Identity:
    """Everything that names the owner: their mailboxes, account address, and the display
    names their client put in From and Sender."""
    addresses = {m.lower() for m in Mailbox.objects.filter(user_id=alias.user_id)
                 .values_list("email", flat=True)}
    addresses.add(alias.user.email.lower())
    names = {alias.user.get_full_name().strip()}
    for header in split_message(raw).fields:
        if header.key in ("from", "sender", "reply-to"):
            for mailbox in parse_mailboxes(header.value):
                if mailbox.address.lower() in addresses:
                    names.add(mailbox.name.strip())
    return Identity(addresses=tuple(sorted(addresses)), names=tuple(sorted(n for n in names if n)))


def _queue(raw: bytes, alias: Alias, contacts: list[Contact], queue_id: str) -> str:
    prepared = prepare_reply(raw, alias=alias, contacts=contacts, queue_id=queue_id,
                             owner=owner_identity(alias, raw))
    enqueue(kind=QueuedMessage.Kind.REPLY, mail_from=prepared.mail_from,
            recipients=prepared.recipients, content=prepared.content, alias=alias,
            queue_id=queue_id)
    add_after_commit(Alias, alias.pk, "replied_count")
    for contact in contacts:
        add_after_commit(Contact, contact.pk, "replied_count")
    return queue_id
