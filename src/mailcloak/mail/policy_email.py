"""Reading header values of mail as it really arrives: broken syntax, wrong or unknown charsets.

The mail core never re-serialises a message with the email package; it uses it only to read
values, through the tolerant helpers here. Nothing in this module raises on bad input: what
cannot be read comes back empty, and callers fall back to something sensible.
"""

from __future__ import annotations

import base64
import binascii
import functools
import inspect
import re
from dataclasses import dataclass
from email import policy
from email.utils import getaddresses

# compat32 never raises on defects and keeps undecodable bytes as surrogate escapes instead of
# failing; linesep only matters if something is ever serialised, which the mail core avoids.
READ_POLICY = policy.compat32.clone(raise_on_defect=False, linesep="\r\n")

# Python builds carrying the CVE-2023-27043 fix parse "strictly" by default, and that parser
# refuses valid domain literals (user@[192.0.2.1]). Every address is checked here afterwards
# (is_plausible_address), so ask for the lenient parse wherever there is a choice: the same
# result on every 3.11 build.
_LENIENT_PARSE = {"strict": False} if "strict" in inspect.signature(getaddresses).parameters else {}

_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(?<=\?=)[ \t\r\n]+(?==\?)")
_PLACEHOLDER = re.compile("\ue000([0-9]+)\ue001")  # private-use marks around a stashed word
_NO_MARKERS = str.maketrans("", "", "\ue000\ue001")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")
_ADDR_CHARS = r"[^\s\x00-\x1f\x7f@<>()\[\],;:\"\\]+"
_ADDRESS = re.compile(rf"{_ADDR_CHARS}@(?:{_ADDR_CHARS}|\[[^\s\x00-\x1f\x7f\[\]\\]+\])")


@dataclass(frozen=True)
class Mailbox:
    """One address from an address header, with its display name decoded to plain text."""

    name: str
    address: str


def decode_raw(value: bytes) -> str:
    """Header bytes as text: UTF-8 (RFC 6532) when valid, else the legacy Windows charset,
    which is what undeclared 8-bit headers almost always are."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("cp1252", errors="replace")


def decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words wherever they appear (also inside quotes, as many
    senders put them there). Unknown charsets and broken encodings never raise."""
    return _ENCODED_WORD.sub(_decode_word, _BETWEEN_WORDS.sub("", text))


def _decode_word(match: re.Match[str]) -> str:
    charset, encoding, text = match.group(1), match.group(2).lower(), match.group(3)
    data = text.encode("utf-8", errors="surrogateescape")  # should be ASCII; may not be
    if encoding == "q":
        data = _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data.replace(b"_", b" "))
    else:
        try:
            data = base64.b64decode(data + b"=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            return match.group(0)
    return _decode_charset(data, charset)


def _decode_charset(data: bytes, charset: str) -> str:
    try:
        return data.decode(charset, errors="replace")
    except (LookupError, ValueError):  # unknown, made-up, not for text (base64), idna...
        return decode_raw(data)


def clean_text(text: str) -> str:
    """Text safe to put back into a header: no control characters (a decoded CR LF must never
    start a new field), runs of whitespace collapsed."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()


def is_plausible_address(address: str) -> bool:
    """local@domain or local@[literal], with nothing that cannot appear unquoted in SMTP."""
    return len(address) <= 320 and _ADDRESS.fullmatch(address) is not None


def parse_mailboxes(value: str) -> list[Mailbox]:
    """The usable addresses of an address-list header value, display names decoded.
    Groups are flattened; entries without a plausible address are skipped.

    Encoded words are parsed as the single atoms they are (RFC 2047 section 5) and decoded
    afterwards, so a name such as `=?utf-8?q?a=2C_b:?=` cannot split or re-shape the list.
    """
    if len(value) > _CACHED_VALUE_LIMIT:
        return _parse_mailboxes(value)
    return list(_parse_mailboxes_cached(value))


# A message's From is read four times on its way through (the check before the scan, the
# blocked-sender check, the rewrite, the log entry), each time through the email package's
# slow address parser. A few recent short values are kept; long ones are parsed each time.
_CACHED_VALUE_LIMIT = 998


@functools.lru_cache(maxsize=64)
def _parse_mailboxes_cached(value: str) -> tuple[Mailbox, ...]:
    return tuple(_parse_mailboxes(value))


def _parse_mailboxes(value: str) -> list[Mailbox]:
    words: list[str] = []

    def stash(match: re.Match[str]) -> str:
        words.append(match.group(0))
        return f"\ue000{len(words) - 1}\ue001"

    def restore(text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: words[int(m.group(1))], text)

    masked = _ENCODED_WORD.sub(stash, _CONTROL.sub(" ", value).translate(_NO_MARKERS))
    mailboxes = []
    for name, address in getaddresses([masked], **_LENIENT_PARSE):
        address = restore(address).strip()
        if is_plausible_address(address):
            mailboxes.append(Mailbox(clean_text(decode_words(restore(name))), address))
    return mailboxes


def parse_envelope_address(value: str) -> str:
    """An SMTP reverse-path as the SMTP server stored it ("<a@b>" or "a@b"); "" for the null
    sender or anything that is not an address."""
    address = value.strip().removeprefix("<").removesuffix(">").strip()
    return address if is_plausible_address(address) else ""
