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
from mailcloak.mail.policy import Action, Decision
from mailcloak.mail.queue import new_queue_id
from mailcloak.mail.replies import Reply
from mailcloak.mail.spam.verdict import EngineUnavailable

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
