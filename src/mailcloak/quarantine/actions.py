"""The quick actions on held mail, shared by the web pages, the API and the emailed links.

Each action checks that the message or alias belongs to `user` (callers look objects up scoped
to the user as well), records itself in the activity log, and for a block or a disable says how
to undo it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import QuerySet

from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias, BlockedSender
from mailcloak.aliases.services import AliasError, block_sender
from mailcloak.mail.forward import UnparseableMessage, prepare_forward
from mailcloak.mail.headers import HeaderField, join_message, split_message
from mailcloak.mail.models import QueuedMessage
from mailcloak.mail.queue import enqueue, new_queue_id
from mailcloak.mail.spam.engine import thresholds_for
from mailcloak.quarantine import activity
from mailcloak.quarantine.crypto import QuarantineKeyError
from mailcloak.quarantine.learning import teach
from mailcloak.quarantine.models import Activity, QuarantinedMessage
from mailcloak.quarantine.store import message_bytes

RELEASED_FIELD = "X-Mailcloak-Released"
Via = Activity.Via


class QuarantineError(Exception):
    """An action that cannot be done on this message; str() says why, in one line."""


@dataclass(frozen=True)
class Undo:
    """How to take back a block or a disable: `kind` is "unblock" or "enable"."""

    kind: str
    object_id: int
    label: str


@dataclass(frozen=True)
class Outcome:
    message: str
    undo: Undo | None = None


def _check_owner(user: User, *objects: QuarantinedMessage | Alias) -> None:
    if any(obj.user_id != user.pk for obj in objects):
        raise QuarantineError("not found")


# --- block the sender ------------------------------------------------------------------------


def block_sender_of(held: QuarantinedMessage, user: User, *, whole_domain: bool = False,
                    all_aliases: bool = False, via: Via = Via.WEB) -> Outcome:
    """Refuse future mail from this message's sender (or its whole domain), for the alias it
    came to or for all of the owner's aliases."""
    _check_owner(user, held)
    if not held.is_inbound:
        raise QuarantineError("this message was sent from your alias: there is no sender to block")
    value = held.block_domain if whole_domain else held.block_address
    if not value or "@" not in held.block_address:
        raise QuarantineError("this message has no sender address to block")
    alias = None if all_aliases else held.alias
    kind = BlockedSender.Kind.DOMAIN if whole_domain else BlockedSender.Kind.ADDRESS
    existed = BlockedSender.objects.filter(user=user, alias=alias, kind=kind, value=value).exists()
    try:
        blocked = block_sender(user, value, alias=alias)
    except AliasError as exc:
        raise QuarantineError(str(exc)) from None
    scope = "all your aliases" if alias is None else alias.address
    if existed:
        return Outcome(f"{value} was already blocked for {scope}.")
    activity.record(user, Activity.Action.BLOCK, via=via, target=value,
                    alias_address=held.alias.address, detail=f"for {scope}")
    return Outcome(f"Blocked {value} for {scope}.",
                   Undo("unblock", blocked.pk, f"Unblock {value}"))


def unblock(user: User, blocked: BlockedSender, *, via: Via = Via.WEB) -> Outcome:
    if blocked.user_id != user.pk:
        raise QuarantineError("not found")
    scope = blocked.alias.address if blocked.alias else "all your aliases"
    blocked.delete()
    activity.record(user, Activity.Action.UNBLOCK, via=via, target=blocked.value,
                    alias_address=blocked.alias.address if blocked.alias else "",
                    detail=f"for {scope}")
    return Outcome(f"Unblocked {blocked.value} for {scope}.")


# --- disable the alias -----------------------------------------------------------------------


def disable_alias(alias: Alias, user: User, *, via: Via = Via.WEB) -> Outcome:
    _check_owner(user, alias)
    if not alias.enabled:
        return Outcome(f"{alias.address} was already disabled.")
    alias.enabled = False
    alias.save(update_fields=["enabled"])
    activity.record(user, Activity.Action.DISABLE_ALIAS, via=via, target=alias.address,
                    alias_address=alias.address)
    refused = "refused" if alias.disabled_action == Alias.DisabledAction.REJECT else "dropped"
    return Outcome(f"Disabled {alias.address}: mail to it is now {refused}.",
                   Undo("enable", alias.pk, f"Enable {alias.address} again"))


def enable_alias(alias: Alias, user: User, *, via: Via = Via.WEB) -> Outcome:
    _check_owner(user, alias)
    if alias.enabled:
        return Outcome(f"{alias.address} is enabled.")
    alias.enabled = True
    alias.save(update_fields=["enabled"])
    activity.record(user, Activity.Action.ENABLE_ALIAS, via=via, target=alias.address,
                    alias_address=alias.address)
    return Outcome(f"{alias.address} is enabled again.")


# --- delete ------------------------------------------------------------------------------------


def delete_messages(user: User, messages: QuerySet[QuarantinedMessage], *,
                    via: Via = Via.WEB) -> int:
    """Delete the given held messages of `user` (others' are never touched); returns how many."""
    owned = messages.filter(user=user)
    with transaction.atomic():
        aliases = sorted(set(owned.values_list("alias__address", flat=True)))
        count, _ = owned.delete()
        if count:
            activity.record(user, Activity.Action.DELETE, via=via,
                            target=aliases[0] if len(aliases) == 1 else f"{len(aliases)} aliases",
                            detail=f"{count} message{'s' if count != 1 else ''}")
    return count


# --- release ("not spam") ----------------------------------------------------------------------


def can_release(held: QuarantinedMessage, user: User) -> bool:
    """Inbound mail below the owner's reject threshold may be released; mail sent from an
    alias that looked like spam, or anything over the reject line, may not."""
    return held.is_inbound and held.score < thresholds_for(user.spam_sensitivity).reject


def release(held: QuarantinedMessage, user: User, *, via: Via = Via.WEB) -> Outcome:
    """Forward the message to the owner after all, marked as released; teach the spam engine
    that it was wanted; delete the held copy."""
    _check_owner(user, held)
    if not can_release(held, user):
        raise QuarantineError("only mail sent to your alias and scored below the reject "
                              "threshold can be released")
    try:
        raw = message_bytes(held)
    except QuarantineKeyError as exc:
        raise QuarantineError(str(exc)) from None
    queue_id = new_queue_id()
    with transaction.atomic():
        try:
            forward = prepare_forward(raw, alias=held.alias, envelope_from=held.mail_from,
                                      queue_id=queue_id)
        except UnparseableMessage as exc:
            raise QuarantineError(f"this message cannot be forwarded: {exc}") from None
        enqueue(kind=QueuedMessage.Kind.FORWARD, mail_from=forward.mail_from,
                recipients=[forward.recipient], content=mark_released(forward.content),
                alias=held.alias, queue_id=queue_id)
        activity.record(user, Activity.Action.RELEASE, via=via, target=held.block_address,
                        alias_address=held.alias.address)
        held.delete()
        transaction.on_commit(_wake_workers)
    teach(raw, is_spam=False)
    return Outcome(f"Released: the message is on its way to {forward.recipient}.")


def mark_released(content: bytes) -> bytes:
    """`content` with an X-Mailcloak-Released field at the top, body and MIME untouched."""
    message = split_message(content)
    field = HeaderField.build(RELEASED_FIELD, "yes", message.eol)
    return join_message([field, *message.fields], message.body, message.separator or message.eol)


def _wake_workers() -> None:
    from mailcloak.mail.worker import wake

    wake()
