"""Named rules and the chain that runs them, recording every hit as a reason.

A rule is a small named check of a parsed message: it returns a Hit (points and a sentence the
owner understands) or None. Rules never see raw bytes and never raise into the scan: a rule
that fails on hostile input is logged by name and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mailcloak.mail.spam.features import MessageView
from mailcloak.mail.spam.verdict import Reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    score: float
    text: str


@dataclass(frozen=True)
class Rule:
    name: str          # the stable code recorded in reasons, e.g. "LINK_TEXT_MISMATCH"
    description: str   # what the rule looks for, for operators
    check: Callable[[MessageView], Hit | None]


class RuleChain:
    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)
        names = [rule.name for rule in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("rule names must be unique")

    def run(self, view: MessageView) -> list[Reason]:
        reasons = []
        for rule in self.rules:
            try:
                hit = rule.check(view)
            except Exception:  # one broken rule must not stop the scan
                log.exception("spam rule %s failed; skipped", rule.name)
                continue
            if hit is not None:
                reasons.append(Reason(rule.name, hit.text, hit.score))
        return reasons
