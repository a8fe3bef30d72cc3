"""The end of DATA: store the message durably for every accepted recipient, then answer.

Runs in a worker thread. `accept` stores one message in one transaction and returns the reply:
250 only after the commit; 451 when storage fails (the client keeps the message and retries);
554 when the message truly cannot be parsed. `store` does the work inside a transaction owned
by its caller, so several messages can later share one commit (group commit): each in a
savepoint, each answered after the shared commit.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from django.db import DatabaseError, transaction

from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import is_sender_blocked
from mailcloak.mail import replies
from mailcloak.mail.analysis import Analysis
from mailcloak.mail.arc import SealError, arc_seal
from mailcloak.mail.bounces import record_dsn
from mailcloak.mail.counters import add_after_commit
from mailcloak.mail.forward import ForwardedMessage, UnparseableMessage, prepare_forward
from mailcloak.mail.headers import split_message
from mailcloak.mail.lookups import aliases_to_forward
from mailcloak.mail.models import QueuedMessage
from mailcloak.mail.policy import Action, Decision
from mailcloak.mail.queue import enqueue, new_queue_id
from mailcloak.mail.replies import Reply
from mailcloak.mail.rewrite import original_sender
from mailcloak.mail.sending import send_replies
from mailcloak.mail.spam.verdict import Action as SpamAction
from mailcloak.mail.spam.verdict import Direction
from mailcloak.observability.logsetup import fields
from mailcloak.quarantine.forwarded import record_forward
from mailcloak.quarantine.store import log_rejection, quarantine_message, summarise

log = logging.getLogger("mailcloak.smtpd")


@dataclass(frozen=True)
class InboundMessage:
    queue_id: str  # the name given to the client in "250 ... queued as"
    sender: str  # "" for the null sender
    recipients: tuple[Decision, ...]  # the accepted ones, in RCPT order
    content: bytes
    analysis: Analysis | None = None  # None: nothing to forward, so nothing was scanned
    # The scan as outbound mail, for the replies, when the same transaction also forwards
    # (otherwise `analysis` is already the one the replies need).
    outbound_analysis: Analysis | None = None
    # Forwarded copies rewritten and sealed ahead of the commit, by alias id (prepare_copies).
    prepared: Mapping[int, PreparedCopy] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedCopy:
    queue_id: str
    forwarded: ForwardedMessage  # its content ARC-sealed, our results on top


@dataclass
class Outcome:
    reply: Reply
    queue_ids: list[str] = field(default_factory=list)  # one per forwarded copy or reply
    replies: int = 0  # of those, replies sent out through an alias
    dropped: int = 0
    bounces: int = 0
    quarantined: int = 0
    rejected: int = 0
    blocked: int = 0  # aliases whose owner blocks the From address


def accept(message: InboundMessage) -> Outcome:
    """Store `message` in its own transaction; the reply says whether it is safe with us."""
    try:
        with transaction.atomic():
            return store(message)
    except Exception as exc:
        return failed(message, exc)


def failed(message: InboundMessage, exc: Exception) -> Outcome:
    """The reply for a message that could not be stored: it stays the client's to retry."""
    if isinstance(exc, UnparseableMessage):
        return Outcome(replies.UNPARSEABLE)
    if isinstance(exc, DatabaseError):
        log.warning("message not stored: database error %s", describe(exc),
                    extra=fields(queue_id=message.queue_id))
        return Outcome(replies.TEMPORARY_FAILURE)
    # A bug must cost a retry, never a lost message or a 250.
    log.error("message not stored: %s", describe(exc), extra=fields(queue_id=message.queue_id))
    return Outcome(replies.LOCAL_ERROR)


def decision(reply: Reply, outcome: Outcome | None) -> str:
    """What became of a message, for the log: reject or defer when refused, else what was done
    with its copies ("forward", "quarantine", "forward+reject" ...)."""
    if not reply.accepted:
        return "reject" if reply.permanent else "defer"
    if outcome is None:
        return "accept"
    forwarded = len(outcome.queue_ids) - outcome.replies
    done = (("forward", forwarded), ("reply", outcome.replies), ("quarantine", outcome.quarantined),
            ("reject", outcome.rejected), ("drop", outcome.dropped), ("block", outcome.blocked),
            ("bounce-report", outcome.bounces))
    return "+".join(name for name, count in done if count) or "accept"


def store(message: InboundMessage) -> Outcome:
    """Forward or quarantine a copy per alias and record delivery reports; the caller commits.

    When the verdict refuses the message for every alias, nothing is stored but the owners'
    metadata-only log lines, and the reply is a 550: the sending server bounces it, so we
    never send backscatter.
    """
    outcome = Outcome(replies.queued(message.queue_id))
    forwards = _unique(d for d in message.recipients if d.action is Action.FORWARD)
    aliases = aliases_to_forward([d.alias_id for d in forwards if d.alias_id is not None])
    refused: list[Alias] = []
    header_sender = _header_sender(message) if forwards else ""
    for decision in forwards:
        alias = aliases.get(decision.alias_id or 0)
        if alias is None:  # deleted since RCPT: mail to it is refused now, so drop it
            outcome.dropped += 1
            continue
        action = _copy_action(message, alias, header_sender)
        if action is None:
            add_after_commit(Alias, alias.pk, "blocked_count")
            outcome.blocked += 1
        elif action is SpamAction.REJECT:
            refused.append(alias)
        elif action is SpamAction.QUARANTINE:
            _quarantine(message, alias)
            outcome.quarantined += 1
        else:
            first = not outcome.queue_ids  # the first copy keeps the name the client was given
            copy = message.prepared.get(alias.pk)
            if copy is None or (copy.queue_id == message.queue_id) != first:
                queue_id = message.queue_id if first else new_queue_id()
                copy = PreparedCopy(queue_id, _forwarded_copy(message, alias, queue_id))
            _forward(message, alias, copy)
            outcome.queue_ids.append(copy.queue_id)
    for decision in _unique(d for d in message.recipients if d.action is Action.BOUNCE):
        record_dsn(message.content, decision.recipient)
        outcome.bounces += 1
    outcome.dropped += sum(1 for d in message.recipients if d.action is Action.DROP)
    refusal = _send_replies(message, outcome)
    if refused:
        _log_rejections(message, refused)
        outcome.rejected = len(refused)
        if not (outcome.queue_ids or outcome.quarantined or outcome.bounces or outcome.dropped):
            outcome.reply = _refusal(message.analysis)
    if refusal and not (outcome.queue_ids or outcome.quarantined or outcome.bounces
                        or outcome.dropped or outcome.rejected):
        outcome.reply = refusal
    if outcome.blocked and not (outcome.queue_ids or outcome.quarantined or outcome.bounces
                                or outcome.dropped or outcome.rejected or refusal):
        outcome.reply = replies.SENDER_BLOCKED
    return outcome


def with_prepared_copies(message: InboundMessage) -> InboundMessage:
    """`message` with its forwarded copies prepared (prepare_copies). Should that fail,
    `store` prepares them itself and meets the failure there, with its reply."""
    if not any(d.action is Action.FORWARD for d in message.recipients):
        return message
    try:
        return replace(message, prepared=prepare_copies(message))
    except Exception as exc:
        log.info("copies not prepared ahead: %s", describe(exc),
                 extra=fields(queue_id=message.queue_id))
        return message


def prepare_copies(message: InboundMessage) -> dict[int, PreparedCopy]:
    """The forwarded copies of `message`, rewritten and ARC-sealed, for `store` to take.

    Run outside the transaction that stores them: rewriting and sealing take a few
    milliseconds of CPU per copy, and inside the transaction they held up every other writer
    (SQLite lets one in at a time). The contacts the rewrite needs are committed here, on
    their own: one left behind by a message that is then not stored is harmless. `store`
    checks everything again and prepares anew what changed in between."""
    forwards = _unique(d for d in message.recipients if d.action is Action.FORWARD)
    aliases = aliases_to_forward([d.alias_id for d in forwards if d.alias_id is not None])
    header_sender = _header_sender(message) if forwards else ""
    prepared: dict[int, PreparedCopy] = {}
    for decision in forwards:
        alias = aliases.get(decision.alias_id or 0)
        if alias is None or _copy_action(message, alias, header_sender) is not SpamAction.DELIVER:
            continue
        queue_id = message.queue_id if not prepared else new_queue_id()
        prepared[alias.pk] = PreparedCopy(queue_id, _forwarded_copy(message, alias, queue_id))
    return prepared


def _copy_action(message: InboundMessage, alias: Alias, header_sender: str
                 ) -> SpamAction | None:
    """What to do with the copy for `alias`: None when its owner blocks the From address."""
    if header_sender and is_sender_blocked(alias, header_sender):
        return None
    if message.analysis is None:
        return SpamAction.DELIVER
    return message.analysis.action_for(alias.user.spam_sensitivity)


def _header_sender(message: InboundMessage) -> str:
    """The From address when it differs from the envelope sender (which RCPT already checked
    against the owners' blocks): a contact is known, and blocked, by its From address."""
    sender = original_sender(split_message(message.content).fields, message.sender)
    if sender is None or sender.address.lower() == message.sender.lower():
        return ""
    return sender.address


def _send_replies(message: InboundMessage, outcome: Outcome) -> Reply | None:
    """The owner's replies through reverse aliases (mail.sending); the refusal, if any."""
    decisions = _unique(d for d in message.recipients if d.action is Action.REPLY)
    if not decisions:
        return None
    analysis = message.outbound_analysis or message.analysis
    assert analysis is not None  # replies are always scanned
    names = [] if outcome.queue_ids else [message.queue_id]  # the client's name goes first

    def next_queue_id() -> str:
        return names.pop() if names else new_queue_id()

    sent = send_replies(
        message.content, sender=message.sender, decisions=decisions, auth=analysis.auth,
        verdict=analysis.verdict, action_for=analysis.action_for, new_queue_id=next_queue_id)
    outcome.queue_ids.extend(sent.queue_ids)
    outcome.replies += len(sent.queue_ids)
    outcome.quarantined += sent.quarantined
    return sent.refusal


def _refusal(analysis: Analysis | None) -> Reply:
    if analysis is not None and analysis.auth.dmarc_reject:
        return replies.DMARC_REJECTED
    return replies.SPAM_REJECTED


def _quarantine(message: InboundMessage, alias: Alias) -> None:
    assert message.analysis is not None
    quarantine_message(raw=message.content, alias=alias, direction=Direction.INBOUND,
                       verdict=message.analysis.verdict, mail_from=message.sender,
                       authentication_results=message.analysis.auth.authentication_results)


def _log_rejections(message: InboundMessage, refused: list[Alias]) -> None:
    assert message.analysis is not None
    summary = summarise(message.content)
    for alias in refused:
        log_rejection(alias=alias, mail_from=message.sender, header_from=summary.header_from,
                      subject=summary.subject, reason=message.analysis.summary())


def _forwarded_copy(message: InboundMessage, alias: Alias, queue_id: str) -> ForwardedMessage:
    forwarded = prepare_forward(message.content, alias=alias, envelope_from=message.sender,
                                queue_id=queue_id)
    if message.analysis is None:
        return forwarded
    return replace(forwarded, content=_with_results(forwarded.content, alias, message.analysis))


def _forward(message: InboundMessage, alias: Alias, copy: PreparedCopy) -> QueuedMessage:
    forwarded = copy.forwarded
    queued = enqueue(kind=QueuedMessage.Kind.FORWARD, mail_from=forwarded.mail_from,
                     recipients=[forwarded.recipient], content=forwarded.content, alias=alias,
                     queue_id=copy.queue_id)
    record_forward(raw=message.content, alias=alias, queue_id=copy.queue_id,
                   mail_from=message.sender,
                   verdict=message.analysis.verdict if message.analysis else None)
    add_after_commit(Alias, alias.pk, "forwarded_count")
    return queued


def _with_results(content: bytes, alias: Alias, analysis: Analysis) -> bytes:
    """An ARC seal over what we saw before the rewrite broke the sender's own signatures (so
    the owner's provider can trust it), then our authentication results and score on top."""
    linesep = b"\r\n" if b"\r\n" in content[:2000] else b"\n"
    try:
        content = arc_seal(content, auth_results=analysis.auth.authentication_results,
                           domain=alias.domain.name)
    except SealError as exc:
        log.warning("forwarded copy not ARC-sealed: %s", exc)
    return analysis.headers(linesep) + content


def _unique(decisions: Iterable[Decision]) -> list[Decision]:
    """One per recipient address: a client may repeat RCPT TO."""
    return list({d.recipient: d for d in decisions}.values())


def describe(exc: BaseException) -> str:
    """An exception for the log: its type and where it was raised, never its message (which
    may quote message content)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    sqlstate = getattr(exc.__cause__, "sqlstate", None)  # a database's error class, no data
    return f"{type(exc).__name__}{where}" + (f" sqlstate={sqlstate}" if sqlstate else "")
