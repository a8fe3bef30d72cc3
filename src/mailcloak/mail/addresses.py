"""Strict parsing of the envelope addresses in MAIL FROM and RCPT TO (RFC 5321, RFC 6531).

Each parser returns the normalised address (lower case, the domain as ASCII A-labels without a
trailing dot) or the Reply to send. Relay tricks cannot work here because nothing is ever routed
by the local part: `user%other@ours`, `other!user@ours` and `"user@other"@ours` are just local
parts on our domain that match no alias, and a source route (`<@a,@b:user@c>`) is ignored as RFC
5321 says, so only its final mailbox counts.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass

from mailcloak.mail import replies
from mailcloak.mail.replies import Reply

MAX_ADDRESS_LENGTH = 254  # RFC 3696 erratum 1690: the longest forward-path minus "<>"

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_UTF8_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_STRING = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_UTF8_DOT_STRING = re.compile(rf"{_UTF8_ATEXT}+(?:\.{_UTF8_ATEXT}+)*")
# Quoted-string: printable ASCII (or UTF-8) except `"` and `\`, or a backslash pair.
_QUOTED = re.compile(r'"((?:[ !#-\[\]-~]|\\[ -~])*)"')
_UTF8_QUOTED = re.compile(r'"((?:[ !#-\[\]-~\u0080-\U0010ffff]|\\[ -~\u0080-\U0010ffff])*)"')
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ROUTE = re.compile(r"@[^,:@<>\s]+(?:,@[^,:@<>\s]+)*:")


@dataclass(frozen=True)
class Address:
    """A normalised envelope address; the null reverse-path `<>` has empty parts."""

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}" if self.domain else ""

    @property
    def is_null(self) -> bool:
        return not self.domain

    @property
    def is_literal(self) -> bool:
        return self.domain.startswith("[")


NULL = Address("", "")


def split_path(argument: str) -> tuple[str, str]:
    """Split the text after `MAIL FROM:`/`RCPT TO:` into the path and its parameters.

    `<a@b> SIZE=10` -> (`<a@b>`, `SIZE=10`). A `>` inside a quoted local part does not end
    the path. An unterminated path is returned whole so that parsing it fails with a clear reply.
    """
    text = argument.strip()
    if not text.startswith("<"):
        path, _, params = text.partition(" ")
        return path, params.strip()
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return text[: index + 1], text[index + 1:].strip()
    return text, ""


def parse_reverse_path(path: str, *, smtputf8: bool) -> Address | Reply:
    """MAIL FROM: a mailbox, or NULL for `<>` (bounces)."""
    if path.strip() == "<>":
        return NULL
    return _parse_path(path, smtputf8=smtputf8, syntax_error=replies.SENDER_SYNTAX,
                       unqualified=replies.SENDER_SYNTAX)


def parse_forward_path(path: str, *, smtputf8: bool) -> Address | Reply:
    """RCPT TO: always a fully qualified mailbox."""
    if path.strip() == "<>":
        return replies.NULL_RECIPIENT
    return _parse_path(path, smtputf8=smtputf8, syntax_error=replies.RECIPIENT_SYNTAX,
                       unqualified=replies.UNQUALIFIED_RECIPIENT)


def _parse_path(path: str, *, smtputf8: bool, syntax_error: Reply,
                unqualified: Reply) -> Address | Reply:
    text = path.strip()
    if text.startswith("<"):
        mailbox = _without_route(text[1:-1]) if text.endswith(">") else None
        if mailbox is None:
            return syntax_error
        text = mailbox
    if not text.isascii():
        if not smtputf8:
            return replies.NON_ASCII_ADDRESS
        if not _is_valid_utf8(text):
            return syntax_error
    local, at, domain = text.rpartition("@")
    if not at:
        return unqualified if _DOT_STRING.fullmatch(text) else syntax_error
    normal_local = _normalise_local(local, smtputf8=smtputf8)
    normal_domain = _normalise_domain(domain, smtputf8=smtputf8)
    if normal_local is None or normal_domain is None:
        return syntax_error
    address = Address(normal_local, normal_domain)
    if len(str(address).encode()) > MAX_ADDRESS_LENGTH:
        return syntax_error
    return address


def _without_route(inner: str) -> str | None:
    """The mailbox of `@a,@b:mailbox`: a source route is ignored (RFC 5321 section 3.6.1)."""
    if not inner.startswith("@"):
        return inner
    match = _ROUTE.match(inner)
    if match is None:
        return None
    hops = match.group(0)[1:-1].split(",@")
    if any(hop.startswith("[") or _normalise_domain(hop, smtputf8=False) is None
           for hop in hops):  # At-domain is "@" Domain: no address literals
        return None
    return inner[match.end():]


def _normalise_local(local: str, *, smtputf8: bool) -> str | None:
    dot_string = _UTF8_DOT_STRING if smtputf8 else _DOT_STRING
    if dot_string.fullmatch(local):
        return local.lower()
    quoted = (_UTF8_QUOTED if smtputf8 else _QUOTED).fullmatch(local)
    if quoted is None:
        return None
    content = re.sub(r"\\(.)", r"\1", quoted.group(1)).lower()
    if dot_string.fullmatch(content):
        return content  # `"john"` is `john`
    return '"' + content.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _normalise_domain(domain: str, *, smtputf8: bool) -> str | None:
    if domain.startswith("["):
        return _normalise_literal(domain)
    name = domain.lower().removesuffix(".")
    if not name.isascii():
        if not smtputf8:
            return None
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return None
    return name


def _normalise_literal(literal: str) -> str | None:
    """`[192.0.2.1]` or `[IPv6:2001:db8::1]` in canonical form; other literals are refused."""
    if not literal.endswith("]"):
        return None
    inner = literal[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return f"[IPv6:{ipaddress.IPv6Address(inner[5:]).compressed}]"
        return f"[{ipaddress.IPv4Address(inner)}]"
    except ValueError:
        return None


def _is_valid_utf8(text: str) -> bool:
    """aiosmtpd decodes with surrogateescape: undecodable bytes survive as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def redact(address: Address | str, key: bytes) -> str:
    """An address as it may appear in logs: the domain, and a keyed hash of the local part
    (whoever holds the key can check whether a log line is about a given address)."""
    text = str(address)
    if not text:
        return "<>"
    local, _, domain = text.rpartition("@")
    digest = hmac.new(key, local.encode("utf-8", "surrogateescape"), hashlib.sha256)
    return f"{digest.hexdigest()[:10]}@{domain}"
