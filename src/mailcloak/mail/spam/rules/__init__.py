"""The builtin engine's rules: headers, HTML, links, attachments and bulk-mail signs."""

from mailcloak.mail.spam.rules.attachments import RULES as ATTACHMENT_RULES
from mailcloak.mail.spam.rules.base import Hit, Rule, RuleChain
from mailcloak.mail.spam.rules.bulk import RULES as BULK_RULES
from mailcloak.mail.spam.rules.headers import RULES as HEADER_RULES
from mailcloak.mail.spam.rules.html import RULES as HTML_RULES
from mailcloak.mail.spam.rules.links import RULES as LINK_RULES

DEFAULT_RULES: tuple[Rule, ...] = (
    *HEADER_RULES, *HTML_RULES, *LINK_RULES, *ATTACHMENT_RULES, *BULK_RULES,
)

__all__ = ["DEFAULT_RULES", "Hit", "Rule", "RuleChain"]
