"""Bulk-mail signs: mass mailings that hide their recipients or their way out."""

from __future__ import annotations

import re

from mailcloak.mail.spam.features import MessageView, may_contain
from mailcloak.mail.spam.rules.base import Hit, Rule

_OPT_OUT = re.compile(r"\b(?:unsubscribe|opt[- ]?out|remove yourself|stop receiving)\b",
                      re.IGNORECASE)
_OPT_OUT_WORDS = ("unsubscribe", "opt", "remove yourself", "stop receiving")  # one per match
_UNDISCLOSED = re.compile(r"undisclosed|recipient list (?:suppressed|not shown)", re.IGNORECASE)


def opt_out_without_header(view: MessageView) -> Hit | None:
    """Honest bulk senders give a List-Unsubscribe header (large mailbox providers require
    it); spam offers an "unsubscribe" link that confirms the address instead."""
    if view.has_header("List-Unsubscribe") or view.has_header("List-Id"):
        return None
    text = view.visible_text
    if may_contain(text, _OPT_OUT_WORDS) and _OPT_OUT.search(text):
        return Hit(0.5, "Bulk mail with an unsubscribe link but no unsubscribe header")
    return None


def hidden_recipients(view: MessageView) -> Hit | None:
    to = view.header("To")
    if not to or _UNDISCLOSED.search(to):
        return Hit(0.3, "Recipients are hidden (no To address)")
    return None


RULES: tuple[Rule, ...] = (
    Rule("BULK_NO_UNSUBSCRIBE_HEADER", "Unsubscribe text without a List-Unsubscribe header",
         opt_out_without_header),
    Rule("BULK_HIDDEN_RECIPIENTS", "No To address, or undisclosed recipients",
         hidden_recipients),
)
