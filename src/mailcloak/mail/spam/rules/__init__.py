"""The builtin engine's rules: headers, HTML, links, attachments and bulk-mail signs."""

from mailcloak.mail.spam.rules import attachments, bulk, headers, html, links
from mailcloak.mail.spam.rules.base import Hit, Rule, RuleChain

DEFAULT_RULES: tuple[Rule, ...] = (
    *headers.RULES, *html.RULES, *links.RULES, *attachments.RULES, *bulk.RULES,
)

__all__ = ["DEFAULT_RULES", "Hit", "Rule", "RuleChain"]
