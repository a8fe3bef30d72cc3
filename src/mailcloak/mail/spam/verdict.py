"""What every spam engine returns, and what it is given.

Scores use one scale across engines (SpamAssassin-style points): at or above the quarantine
threshold a message is held in the owner's quarantine, at or above the reject threshold it is
refused during DATA. A user's sensitivity moves both thresholds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class Action(enum.StrEnum):
    DELIVER = "deliver"
    QUARANTINE = "quarantine"
    REJECT = "reject"


class Direction(enum.StrEnum):
    INBOUND = "inbound"    # mail to an alias
    OUTBOUND = "outbound"  # mail from an alias (replies, new conversations)


class Sensitivity(enum.StrEnum):
    RELAXED = "relaxed"
    NORMAL = "normal"
    STRICT = "strict"


# How far each sensitivity moves the thresholds (points).
SENSITIVITY_SHIFT = {Sensitivity.RELAXED: 2.0, Sensitivity.NORMAL: 0.0, Sensitivity.STRICT: -2.0}


@dataclass(frozen=True)
class Reason:
    """One named rule or signal that contributed to the score, in words the owner understands."""

    code: str      # stable identifier, e.g. "SPF_FAIL", "BAYES_99", "LINK_TEXT_MISMATCH"
    text: str      # "SPF failed for example.org"
    score: float   # points it added (negative for good signs)


@dataclass(frozen=True)
class Thresholds:
    quarantine: float
    reject: float

    def shifted(self, sensitivity: Sensitivity) -> Thresholds:
        shift = SENSITIVITY_SHIFT[sensitivity]
        return Thresholds(self.quarantine + shift, self.reject + shift)

    def action_for(self, score: float) -> Action:
        if score >= self.reject:
            return Action.REJECT
        if score >= self.quarantine:
            return Action.QUARANTINE
        return Action.DELIVER


@dataclass(frozen=True)
class Verdict:
    score: float
    action: Action
    reasons: tuple[Reason, ...] = ()
    engine: str = ""
    # What the engine needs to learn this message later without its content (the builtin
    # engine's hashed word features); empty for engines that learn from whole messages.
    features: tuple[int, ...] = field(default=(), repr=False, compare=False)

    def top_reasons(self, count: int = 3) -> tuple[Reason, ...]:
        return tuple(sorted(self.reasons, key=lambda r: -r.score)[:count])


@dataclass(frozen=True)
class ScanRequest:
    """Everything an engine may look at. `raw` is the message as received (CRLF line endings)."""

    raw: bytes
    direction: Direction = Direction.INBOUND
    peer_ip: str = ""
    helo: str = ""
    mail_from: str = ""
    recipients: tuple[str, ...] = ()
    # Authentication-Results produced by mailcloak.mail.auth for this message, if any.
    authentication_results: str = ""
    auth_reasons: tuple[Reason, ...] = field(default=())


class EngineUnavailable(Exception):
    """The engine is down or timed out: the SMTP server answers 451 4.7.1 so the sender retries;
    nothing is ever forwarded unscanned."""


class SpamEngine(Protocol):
    name: str

    async def scan(self, request: ScanRequest, thresholds: Thresholds) -> Verdict:
        """Score the message. Raises EngineUnavailable when it cannot."""
        ...

    async def learn(self, raw: bytes, *, is_spam: bool) -> None:
        """Teach the engine from an owner's decision ("spam" / "not spam")."""
        ...
