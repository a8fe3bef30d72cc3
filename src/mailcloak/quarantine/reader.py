"""A held message taken apart for the message view: header fields, the plain-text and HTML
bodies, and the list of attachments (named, typed and measured, never opened).

Parsing never raises on broken mail: what cannot be decoded is shown with replacement
characters or left out.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message

from mailcloak.mail.policy_email import clean_text, decode_words
from mailcloak.quarantine.sanitize import SafeHtml, sanitise

SHOWN_HEADERS = ("From", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
                 "Return-Path", "List-Unsubscribe")
MAX_BODY_CHARS = 2_000_000  # shown per body; the rest is cut off (the .eml has it all)
MAX_PARTS = 500


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int


@dataclass
class MessageDisplay:
    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""
    html: SafeHtml | None = None
    attachments: list[Attachment] = field(default_factory=list)
    truncated: bool = False


def read_message(raw: bytes) -> MessageDisplay:
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    display = MessageDisplay(headers=_headers(message))
    html_source = ""
    for part in _leaves(message):
        kind, disposition = part.get_content_type(), part.get_content_disposition()
        is_body = disposition != "attachment" and not part.get_filename()
        if is_body and kind == "text/plain" and not display.text:
            display.text, cut = _limited(_text(part))
            display.truncated |= cut
        elif is_body and kind == "text/html" and not html_source:
            html_source, cut = _limited(_text(part))
            display.truncated |= cut
        else:
            display.attachments.append(_attachment(part))
    if html_source:
        display.html = sanitise(html_source)
    return display


def _leaves(message: Message) -> Iterator[Message]:
    """The non-multipart parts, in order; attached messages are listed as one attachment."""
    count = 0
    stack = [message]
    while stack and count < MAX_PARTS:
        part = stack.pop()
        # is_multipart() first: get_payload() of a text part decodes it with its charset,
        # which raises for some ("idna", a name with a NUL in it).
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend(inner for inner in reversed(payload) if isinstance(inner, Message))
            continue
        count += 1
        yield part


def _headers(message: Message) -> list[tuple[str, str]]:
    shown = []
    for name in SHOWN_HEADERS:
        for value in message.get_all(name, []):
            shown.append((name, clean_text(decode_words(str(value)))))
    return shown


def _text(part: Message) -> str:
    payload = _payload(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except (LookupError, ValueError):  # unknown or made-up charset
        return payload.decode("utf-8", errors="replace")


def _payload(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, TypeError, AssertionError):
        payload = None
    if isinstance(payload, bytes):
        return payload
    try:
        raw = part.get_payload()
    except (UnicodeError, ValueError):  # 8-bit text in a charset no codec takes this way
        return b""
    if isinstance(raw, list):  # an attached message: its size as it was sent
        return b"".join(_message_bytes(inner) for inner in raw if isinstance(inner, Message))
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def _message_bytes(message: Message) -> bytes:
    try:
        return message.as_bytes()
    except (ValueError, TypeError, LookupError, UnicodeError):
        return b""


def _limited(text: str) -> tuple[str, bool]:
    return text[:MAX_BODY_CHARS], len(text) > MAX_BODY_CHARS


def _attachment(part: Message) -> Attachment:
    try:
        filename = part.get_filename() or ""
    except (ValueError, TypeError, LookupError):
        filename = ""
    return Attachment(filename=clean_text(decode_words(str(filename)))[:255],
                      content_type=part.get_content_type(), size=len(_payload(part)))
