"""Stage: authenticate and classify a received message before anything is stored.

Runs at the end of DATA, outside the database transaction: SPF, DKIM, DMARC and ARC checks
(mailcloak.mail.auth), then the spam engine. The verdict's score is the same for every
recipient; what it means (forward, quarantine, reject) depends on each owner's sensitivity,
which intake decides per alias. If the engine cannot answer, the message is not accepted
(451 4.7.1, the sender retries): nothing is ever forwarded unscanned.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.auth import AuthResult, authenticate_async
from mailcloak.mail.spam.engine import base_thresholds, get_engine, thresholds_for
from mailcloak.mail.spam.verdict import (
    Action,
    Direction,
    EngineUnavailable,
    Reason,
    ScanRequest,
    Sensitivity,
    Verdict,
)
from mailcloak.observability.instruments import SPAM_SCAN_SECONDS

DMARC_REJECT_SUMMARY = "The sender's domain says to reject mail that fails DMARC"


@dataclass(frozen=True)
class Analysis:
    auth: AuthResult
    verdict: Verdict

    def action_for(self, sensitivity: Sensitivity | str) -> Action:
        """What to do with the message for an owner who picked `sensitivity`."""
        if self.auth.dmarc_reject:
            return Action.REJECT
        action = thresholds_for(sensitivity).action_for(self.verdict.score)
        if action is Action.DELIVER and self.auth.dmarc_quarantine:
            return Action.QUARANTINE
        return action

    def summary(self) -> str:
        """The main reasons in a line, for the owner's log of rejected mail."""
        top: tuple[Reason, ...] = self.verdict.top_reasons(3)
        if self.auth.dmarc_reject:
            return DMARC_REJECT_SUMMARY
        return "; ".join(reason.text for reason in top) or f"spam score {self.verdict.score}"

    def headers(self, linesep: bytes = b"\r\n") -> bytes:
        """Authentication-Results and the spam score, for the forwarded copy."""
        score = f"X-Mailcloak-Spam-Score: {self.verdict.score:.1f}".encode()
        return self.auth.header_field(linesep) + score + linesep


async def analyse(raw: bytes, *, peer_ip: str, helo: str, mail_from: str,
                  recipients: tuple[str, ...],
                  direction: Direction = Direction.INBOUND) -> Analysis:
    """Authenticate and score `raw` (mail to an alias, or OUTBOUND: an owner's reply from
    one). Raises EngineUnavailable when the engine cannot answer
    in time (MAILCLOAK_SPAM_TIMEOUT)."""
    auth = await authenticate_async(raw, peer_ip=peer_ip, helo=helo, mail_from=mail_from)
    request = ScanRequest(raw=raw, direction=direction, peer_ip=peer_ip, helo=helo,
                          mail_from=mail_from, recipients=recipients,
                          authentication_results=auth.authentication_results,
                          auth_reasons=auth.reasons)
    config = mailcloak_settings.get()
    timeout = config.spam_timeout
    try:
        with SPAM_SCAN_SECONDS.labels(config.spam_engine).time():
            async with asyncio.timeout(timeout):
                verdict = await get_engine().scan(request, base_thresholds())
    except TimeoutError:
        raise EngineUnavailable(f"the spam engine did not answer within {timeout} s") from None
    return Analysis(auth, verdict)
