"""HTML rules: no text version, hidden text, pictures instead of words, forms and scripts."""

from __future__ import annotations

from mailcloak.mail.spam.features import MessageView
from mailcloak.mail.spam.rules.base import Hit, Rule

HIDDEN_WORDS = 25      # preheaders of honest newsletters hide a sentence, not a paragraph
FEW_VISIBLE_WORDS = 25


def html_only(view: MessageView) -> Hit | None:
    if view.has_html and not view.has_plain:
        return Hit(0.5, "HTML-only message (no plain-text version)")
    return None


def hidden_text(view: MessageView) -> Hit | None:
    hidden = len(view.html.hidden.split())
    if hidden < HIDDEN_WORDS:
        return None
    if not view.has_plain:
        return Hit(2.0, "HTML-only message with hidden text")
    return Hit(1.5, "Message with hidden text")


def images_instead_of_text(view: MessageView) -> Hit | None:
    if view.html.images and len(view.visible_text.split()) < FEW_VISIBLE_WORDS:
        return Hit(1.5, "Mostly pictures with almost no text")
    return None


def html_form(view: MessageView) -> Hit | None:
    if view.html.forms:
        return Hit(0.5, "Message contains a form to fill in")
    return None


RULES: tuple[Rule, ...] = (
    Rule("HTML_ONLY", "An HTML body without a plain-text version", html_only),
    Rule("HTML_HIDDEN_TEXT", "Text styled so that the reader cannot see it", hidden_text),
    Rule("HTML_IMAGES_NO_TEXT", "Pictures with almost no text", images_instead_of_text),
    Rule("HTML_FORM", "An HTML form inside the message", html_form),
)
