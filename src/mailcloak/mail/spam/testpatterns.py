"""Test patterns, as SpamAssassin and Rspamd have them, so that operators and tests can drive
every path of the spam verdict for real.

The standard GTUBE string always gets the reject verdict. With MAILCLOAK_SPAM_TEST_PATTERNS
(on in local mode, off by default in production) its variant starting with "YJS" instead of
"XJS" gets a quarantine verdict, with a score between the user's two thresholds.
"""

from __future__ import annotations

import enum

from mailcloak.mail.spam.verdict import Action, Reason, Thresholds, Verdict

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_QUARANTINE = b"YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
_COMMON = GTUBE[1:]
GTUBE_SCORE = 1000.0


class TestPattern(enum.Enum):
    __test__ = False  # not a test class, whatever pytest thinks of the name

    REJECT = "reject"
    QUARANTINE = "quarantine"


def find(*texts: bytes | str) -> TestPattern | None:
    """Which test pattern, if any, appears in the raw message or in its decoded texts."""
    for text in texts:
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        start = data.find(_COMMON)
        while start > 0:
            if data[start - 1:start] == b"X":
                return TestPattern.REJECT
            if data[start - 1:start] == b"Y":
                return TestPattern.QUARANTINE
            start = data.find(_COMMON, start + 1)
    return None


def verdict(pattern: TestPattern, thresholds: Thresholds, *, variants_enabled: bool,
            engine: str) -> Verdict | None:
    """The verdict a test pattern forces, or None when it has no effect here."""
    if pattern is TestPattern.REJECT:
        score = max(GTUBE_SCORE, thresholds.reject)
        reason = Reason("GTUBE", "Standard anti-spam test message (GTUBE)", score)
        return Verdict(score, Action.REJECT, (reason,), engine)
    if not variants_enabled:
        return None
    score = (thresholds.quarantine + thresholds.reject) / 2
    reason = Reason("GTUBE_QUARANTINE", "Anti-spam test message for the quarantine", score)
    return Verdict(score, Action.QUARANTINE, (reason,), engine)
