"""The end of DATA without a socket: what the SMTP server does with a message it received.

`run_message` takes the steps of `smtpd.Handler.handle_DATA` in the same order (the forward
check, authentication and the spam verdict, then intake.accept in one transaction) and says
which of the three states the message ended in:

    forwarded    a QueuedMessage for the alias owner (a 250)
    quarantined  a QuarantinedMessage in the owner's quarantine (a 250)
    rejected     a 4xx or 5xx reply from the catalogue, nothing stored

A reply of `replies.LOCAL_ERROR` is how intake reports an exception it caught: for the fuzz
tests that is a crash, not a rejection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from mailcloak.aliases.models import Alias
from mailcloak.mail import intake, replies
from mailcloak.mail.analysis import analyse
from mailcloak.mail.forward import UnparseableMessage, check_forwardable
from mailcloak.mail.headers import split_message
from mailcloak.mail.models import QueuedMessage
from mailcloak.mail.policy import Action, Decision
from mailcloak.mail.queue import new_queue_id
from mailcloak.mail.replies import Reply
from mailcloak.mail.spam.verdict import EngineUnavailable
from mailcloak.quarantine.models import QuarantinedMessage
from mailcloak.quarantine.reader import read_message
from mailcloak.quarantine.store import message_bytes

CATALOGUE = {value for value in vars(replies).values() if isinstance(value, Reply)}
# Fields the forward path writes: our marker, the results of our checks, the ARC set, the
# Message-ID and Date a message must have, and From when the sender wrote none.
ADDED_FIELDS = {"x-mailcloak-alias", "x-mailcloak-spam-score", "authentication-results",
                "arc-seal", "arc-message-signature", "arc-authentication-results",
                "message-id", "date", "from"}
EXPECTED_ROWS = {"forwarded": (1, 0), "quarantined": (0, 1), "rejected": (0, 0)}
SENDER = "friend@sender.test"
PEER_IP = "192.0.2.10"
HELO = "client.sender.test"


@dataclass(frozen=True)
class Result:
    state: str  # "forwarded", "quarantined" or "rejected"
    reply: Reply
    outcome: intake.Outcome | None  # None when refused before intake

    @property
    def crashed(self) -> bool:
        return self.reply == replies.LOCAL_ERROR


def to_alias(alias: Alias) -> Decision:
    """The RCPT decision the policy takes for mail to an enabled alias."""
    return Decision(Action.FORWARD, replies.RECIPIENT_OK, alias.address, alias.pk)


def run_message(content: bytes, alias: Alias, *, sender: str = SENDER) -> Result:
    """`content`, received from `sender` for `alias`, through the end-of-DATA path."""
    decision = to_alias(alias)
    try:
        check_forwardable(content, sender)
        analysis = asyncio.run(analyse(content, peer_ip=PEER_IP, helo=HELO, mail_from=sender,
                                       recipients=(decision.recipient,)))
    except UnparseableMessage:
        return Result("rejected", replies.UNPARSEABLE, None)
    except EngineUnavailable:
        return Result("rejected", replies.SCANNER_UNAVAILABLE, None)
    outcome = intake.accept(intake.InboundMessage(queue_id=new_queue_id(), sender=sender,
                                                  recipients=(decision,), content=content,
                                                  analysis=analysis))
    return Result(_state(outcome), outcome.reply, outcome)


def _state(outcome: intake.Outcome) -> str:
    if not outcome.reply.accepted:
        return "rejected"
    if outcome.queue_ids:
        return "forwarded"
    if outcome.quarantined:
        return "quarantined"
    return "accepted-but-nothing-stored"  # never expected: the tests say so


def check_message(content: bytes, alias: Alias) -> tuple[Result | None, str | None]:
    """Run `content` through the path; its result, and what is wrong with how it ended:
    an exception, the 451 standing for a bug or a failed scan, a state that does not match
    the rows stored (one QueuedMessage, one QuarantinedMessage or none), a refusal outside
    the catalogue, a forwarded copy with a header field nobody wrote, a quarantined message
    the quarantine cannot show."""
    before = QueuedMessage.objects.count(), QuarantinedMessage.objects.count()
    try:
        result = run_message(content, alias)
    except Exception as exc:  # the failure to report, with the message that caused it
        return None, f"raised {type(exc).__name__}"
    rows = (QueuedMessage.objects.count() - before[0],
            QuarantinedMessage.objects.count() - before[1])
    if result.crashed or result.reply == replies.SCANNER_UNAVAILABLE:
        return result, f"ended as {result.state} with {result.reply.line}"
    if EXPECTED_ROWS.get(result.state) != rows:
        return result, f"{result.state} but stored {rows} (queued, quarantined)"
    if result.state == "rejected" and result.reply not in CATALOGUE:
        return result, f"refused with a reply outside the catalogue: {result.reply.line}"
    return result, _check_stored(content, result)


def _check_stored(content: bytes, result: Result) -> str | None:
    if result.state == "forwarded":
        copy = bytes(QueuedMessage.objects.latest("pk").content)
        sent = {field.key for field in split_message(content).fields}
        added = {field.key for field in split_message(copy).fields} - sent - ADDED_FIELDS
        return f"forwarded copy gained fields {sorted(added)}" if added else None
    if result.state == "quarantined":
        try:
            read_message(message_bytes(QuarantinedMessage.objects.latest("pk")))
        except Exception as exc:  # the quarantine page would fail the same way
            return f"quarantine reader raised {type(exc).__name__}"
    return None
