"""Body scrubbing: the owner's real address and mailbox display name out of a message body.

Mail clients quote the message being answered ("On Fri, Jane <owner@mailbox.example> wrote:"),
and signatures repeat the name and address. Every text part (plain and HTML, in any transfer
encoding and charset) is decoded, the owner's addresses and names are replaced by the alias's,
and only the parts that changed are encoded again, with their own charset and transfer
encoding. Everything else stays byte for byte.
"""

from __future__ import annotations

import base64
import email
import email.policy
import html
import quopri
import re
from dataclasses import dataclass
from email.message import Message
from html.entities import codepoint2name

from mailcloak.mail.headers import HeaderField, encode_phrase, format_mailbox, join_message
from mailcloak.mail.policy_email import clean_text, decode_raw, decode_words, parse_mailboxes

MIN_NAME_LENGTH = 3  # shorter "names" would replace ordinary words

# Header fields of an attached message (message/rfc822) that survive, owner scrubbed out of
# them. The rest (Received, Delivered-To, Return-Path, DKIM and ARC sets, the provider's own
# X- fields...) traces the attached message's way into the owner's mailbox: dropped whole.
ATTACHED_KEPT_FIELDS = frozenset({
    "from", "to", "cc", "reply-to", "subject", "date", "message-id", "in-reply-to",
    "references", "mime-version", "content-type", "content-transfer-encoding",
    "content-disposition", "content-language", "content-id", "content-description",
})
ADDRESS_FIELDS = frozenset({"from", "to", "cc", "reply-to"})
_MESSAGE_ID = re.compile(r"<[^<>]*>")


@dataclass(frozen=True)
class Identity:
    addresses: tuple[str, ...]
    names: tuple[str, ...] = ()

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple({a.rpartition("@")[2].lower() for a in self.addresses if "@" in a})

    def names_domain(self, host: str) -> bool:
        """Whether `host` is one of these addresses' domains or a name under one."""
        host = host.lower().rstrip(".")
        return any(host == domain or host.endswith("." + domain) for domain in self.domains)


def scrub_body(fields: list[HeaderField], body: bytes, owner: Identity,
               replacement: Identity) -> bytes:
    """`body` (the part after the header `fields`) with `owner` replaced by `replacement`."""
    pattern = _pattern(owner)
    if pattern is None:
        return body
    eol = b"\r\n" if b"\r\n" in body[:2000] or not body else b"\n"
    substitute = _substitute(owner, replacement)
    mime_fields = [f for f in fields if f.key.startswith("content-") or f.key == "mime-version"]
    raw = join_message(mime_fields, body, eol)
    policy = email.policy.compat32.clone(linesep=eol.decode())
    message = email.message_from_bytes(raw, policy=policy)
    changed = False
    for part in message.walk():
        if part.get_content_type() == "message/rfc822" and part.is_multipart():
            for attached in part.get_payload():
                if isinstance(attached, Message):
                    changed |= _scrub_attached_header(attached, owner, pattern, substitute)
        elif part.get_content_maintype() == "text" and not part.is_multipart():
            changed |= _scrub_part(part, pattern, substitute)
    if not changed:
        return body
    text = message.as_bytes(policy=policy)
    return text.split(eol + eol, 1)[1] if eol + eol in text else text


def _pattern(owner: Identity) -> re.Pattern[str] | None:
    table = _substitute(owner, owner)
    if not table:
        return None
    alternatives = sorted((re.escape(form) for form in table), key=len, reverse=True)
    return re.compile("|".join(alternatives), re.IGNORECASE)


def _substitute(owner: Identity, replacement: Identity) -> dict[str, str]:
    """Every spelling of the owner's addresses and names (lower case) -> what replaces it."""
    address = replacement.addresses[0] if replacement.addresses else ""
    name = replacement.names[0] if replacement.names else address
    table: dict[str, str] = {}
    for word in filter(None, owner.addresses):
        table.update(dict.fromkeys(_forms(word), address))
    for word in owner.names:
        if len(word.strip()) >= MIN_NAME_LENGTH:
            for spelling in _name_orders(word.strip()):
                table.update(dict.fromkeys(_forms(spelling), name))
    return table


def _name_orders(name: str) -> set[str]:
    """"Zoë Ownerby" and "Ownerby, Zoë": address books and Outlook write either."""
    if "," in name:
        last, _, first = name.partition(",")
        return {name, f"{first.strip()} {last.strip()}"}
    first, _, last = name.rpartition(" ")
    return {name, f"{last}, {first}"} if first else {name}


def _forms(word: str) -> set[str]:
    """`word` as text and as HTML may spell it (escaped, character references, &#64;)."""
    escaped = html.escape(word, quote=False)
    forms = {word, escaped, escaped.encode("ascii", "xmlcharrefreplace").decode(),
             _named_entities(escaped)}
    forms |= {form.replace("@", "&#64;") for form in forms}
    return {form.lower() for form in forms}


def _named_entities(text: str) -> str:
    return "".join(f"&{codepoint2name[ord(c)]};" if ord(c) > 127 and ord(c) in codepoint2name
                   else c for c in text)


def _scrub_attached_header(attached: Message, owner: Identity, pattern: re.Pattern[str],
                           table: dict[str, str]) -> bool:
    """An attached message's header: trace fields dropped, the owner replaced in the rest,
    message ids made by the owner's provider left out (they name it)."""
    original = list(attached.raw_items())  # 8-bit values stay surrogate-escaped bytes
    kept: list[tuple[str, str]] = []
    for name, value in original:
        if name.lower() not in ATTACHED_KEPT_FIELDS:
            continue
        if name.lower() in ("message-id", "in-reply-to", "references"):
            value = " ".join(i for i in _MESSAGE_ID.findall(str(value))
                             if not owner.names_domain(i[1:-1].rpartition("@")[2]))
            if not value:
                continue
        kept.append((name, _scrub_value(name.lower(), str(value), pattern, table)))
    if kept == original:
        return False
    for name in {n for n, _ in original}:
        del attached[name]
    for name, value in kept:
        attached[name] = value
    return True


def _scrub_value(key: str, value: str, pattern: re.Pattern[str], table: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        return table.get(match.group(0).lower(), "")

    text = decode_raw(value.encode("utf-8", "surrogateescape"))
    if not pattern.search(decode_words(text)):
        return value
    if key in ADDRESS_FIELDS:  # rebuilt mailbox by mailbox, so names are encoded, not addresses
        return ", ".join(
            format_mailbox(pattern.sub(replace, mb.name), pattern.sub(replace, mb.address))
            for mb in parse_mailboxes(text))
    return encode_phrase(clean_text(pattern.sub(replace, decode_words(text))))


def _scrub_part(part: Message, pattern: re.Pattern[str], table: dict[str, str]) -> bool:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return False
    charset = part.get_content_charset() or "us-ascii"
    try:
        text = data.decode(charset)
    except (LookupError, UnicodeDecodeError):
        charset, text = "utf-8", data.decode("utf-8", "replace")
    is_html = part.get_content_subtype() == "html"

    def replace(match: re.Match[str]) -> str:
        value = table.get(match.group(0).lower(), "")
        return html.escape(value, quote=False) if is_html else value

    scrubbed = pattern.sub(replace, text)
    if scrubbed == text:
        return False
    _set_text(part, scrubbed, charset)
    return True


def _set_text(part: Message, text: str, charset: str) -> None:
    """Encode `text` again the way the part was encoded (charset widened to UTF-8 only when
    the replacement does not fit the original one)."""
    try:
        data = text.encode(charset)
    except (UnicodeEncodeError, LookupError):
        data = text.encode("utf-8")
        part.set_param("charset", "utf-8")
    encoding = (part.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    if encoding == "base64":
        payload = base64.encodebytes(data).decode("ascii")
    elif encoding == "quoted-printable":
        payload = quopri.encodestring(data).decode("ascii")
    else:
        if not data.isascii() and encoding == "7bit":
            del part["Content-Transfer-Encoding"]
            part["Content-Transfer-Encoding"] = "8bit"
        payload = data.decode("ascii", "surrogateescape")
    part.set_payload(payload)
