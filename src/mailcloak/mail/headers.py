"""A message's raw header block: split it from the body, read its fields, write new ones.

Forwarding changes a few header fields and must leave the rest of the message byte for byte
as it arrived (MIME boundaries, transfer encodings, folding, 8-bit text), so the email
package's generator is never used: the header block is a list of raw fields, and fields we
write are folded here.
"""

from __future__ import annotations

import base64
import functools
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from mailcloak.mail.policy_email import decode_raw

CRLF = b"\r\n"
FOLD_WIDTH = 78  # RFC 5322 2.1.1: SHOULD
MAX_LINE = 998  # RFC 5322 2.1.1: MUST, excluding CRLF

# A field name is printable US-ASCII except the colon; obsolete syntax allows space before it.
_FIELD_START = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
_UNFOLD = re.compile(rb"\r?\n(?=[ \t])")
_EMPTY_LINE = re.compile(rb"(?:\A|\n)\r?\n")
_QUOTED_OR_WORD = re.compile(r'(?:"(?:[^"\\]|\\.)*"|[^\s"])+')
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_Q_SAFE = frozenset(string.ascii_letters + string.digits + "!*+-/")
_WORD_AND_SPACE = re.compile(r"[^ ]+ ?| ")
# RFC 2047 allows encoded words of 75 characters; 72 keeps "From: " and one word within 78.
_WORD_ROOM = 72 - len("=?utf-8?q??=")
_LINE_BREAKS = re.compile(r"[\r\n]+")


@dataclass(frozen=True)
class HeaderField:
    """One header field exactly as it arrived: first line, continuation lines, line endings."""

    name: str
    raw: bytes

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def value(self) -> str:
        """The unfolded value after the colon, as text, without surrounding whitespace."""
        colon = self.raw.index(b":")
        return decode_raw(_UNFOLD.sub(b"", self.raw[colon + 1 :])).strip()

    @classmethod
    def build(cls, name: str, value: str, eol: bytes = CRLF) -> HeaderField:
        """A new field, folded at spaces of `value` (which must not contain line breaks)."""
        return cls(name, fold(name, value, eol))


@dataclass(frozen=True)
class SplitMessage:
    fields: list[HeaderField]
    body: bytes  # everything after the empty line, untouched
    eol: bytes  # the message's line ending, used for fields we write
    separator: bytes  # the empty line as it arrived (empty when the message had none)
    dropped_lines: int  # lines in the header block that were no header field


def split_message(raw: bytes) -> SplitMessage:
    """Split at the first empty line (CRLF CRLF, or LF LF in stored mail).

    Lines of the header block that are neither a field nor a continuation line (an mbox
    "From " line, a header without colon) are dropped. A message without an empty line ends
    its header block at the first such line, which then starts the body.
    """
    if len(raw) > _CACHED_SIZE_LIMIT:
        return _split(raw)
    cached = _split_cached(raw)
    return replace(cached, fields=list(cached.fields))  # the caller's own list


# The SMTP server splits each message four times on its way (the check before the scan, the
# blocked-sender check, the rewrite, the log entry), while other sessions' messages go through
# the same steps in between: the last 32 of up to 128 KB are kept (8 MB at most, messages
# and split bodies together).
_CACHED_SIZE_LIMIT = 128 * 1024


@functools.lru_cache(maxsize=32)
def _split_cached(raw: bytes) -> SplitMessage:
    return _split(raw)


def _split(raw: bytes) -> SplitMessage:
    eol = _line_ending(raw)
    has_empty_line = _EMPTY_LINE.search(raw) is not None
    fields: list[HeaderField] = []
    current: list[bytes] = []
    dropped = 0
    for start, line in _lines(raw):
        content = line.rstrip(b"\r\n")
        if not content:
            _close(current, fields, eol)
            return SplitMessage(fields, raw[start + len(line) :], eol, line, dropped)
        if content[:1] in (b" ", b"\t"):
            if current:
                current.append(line)
            else:
                dropped += 1  # a continuation of nothing
            continue
        _close(current, fields, eol)
        if _FIELD_START.match(content):
            current = [line]
        elif has_empty_line:
            current, dropped = [], dropped + 1
        else:
            return SplitMessage(fields, raw[start:], eol, b"", dropped)
    _close(current, fields, eol)
    return SplitMessage(fields, b"", eol, b"", dropped)


def join_message(fields: list[HeaderField], body: bytes, separator: bytes) -> bytes:
    return b"".join(field.raw for field in fields) + separator + body


def _line_ending(raw: bytes) -> bytes:
    first = raw.find(b"\n")
    return b"\n" if first > 0 and raw[first - 1 : first] != b"\r" else CRLF


def _lines(raw: bytes) -> Iterator[tuple[int, bytes]]:
    start = 0
    while start < len(raw):
        end = raw.find(b"\n", start)
        end = len(raw) if end < 0 else end + 1
        yield start, raw[start:end]
        start = end


def _close(lines: list[bytes], fields: list[HeaderField], eol: bytes) -> None:
    if not lines:
        return
    raw = b"".join(lines)
    if not raw.endswith(b"\n"):
        raw += eol  # the last line of a message without body
    match = _FIELD_START.match(raw)
    assert match is not None
    fields.append(HeaderField(match.group(1).decode("ascii"), raw))
    lines.clear()


# --- writing -------------------------------------------------------------------------------


def fold(name: str, value: str, eol: bytes = CRLF) -> bytes:
    """`Name: value` folded at its spaces into lines of at most 78 characters where possible,
    preferring spaces outside quoted strings, and never more than 998 (a longer word is cut:
    only URLs in angle brackets get that long, and RFC 2369 says to ignore whitespace in them).
    """
    lines: list[str] = []
    line = name + ":"
    has_word = False
    for unit in _fold_units(_LINE_BREAKS.sub(" ", value)):  # a value can never add a field
        if has_word and _octets(line) + 1 + _octets(unit) > FOLD_WIDTH:
            lines.append(line)
            line = " " + unit
        else:
            line += " " + unit
        has_word = True
    lines.append(line)
    return b"".join(chunk + eol for text in lines for chunk in _hard_wrap(text))


def _fold_units(value: str) -> Iterator[str]:
    """Space-separated pieces of `value`, a quoted string kept whole unless it is too long
    for a line of its own."""
    for unit in _QUOTED_OR_WORD.findall(value):
        if unit.startswith('"') and _octets(unit) > FOLD_WIDTH - 1:
            yield from unit.split()
        else:
            yield unit


def _octets(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogateescape"))


def _hard_wrap(line: str) -> Iterator[bytes]:
    data = line.encode("utf-8", errors="surrogateescape")
    yield data[:MAX_LINE]
    for start in range(MAX_LINE, len(data), MAX_LINE - 1):
        yield b" " + data[start : start + MAX_LINE - 1]


def format_mailbox(name: str, address: str) -> str:
    """`name <address>` with the name as atoms, a quoted string or RFC 2047 encoded words."""
    return f"{encode_phrase(name)} <{address}>" if name else address


def encode_phrase(text: str) -> str:
    if not text.isascii() or "=?" in text:
        return " ".join(encoded_words(text))
    if all(_ATOM.fullmatch(word) for word in text.split(" ")):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encoded_words(text: str) -> list[str]:
    """UTF-8 encoded words of at most 75 characters, each a whole number of characters, cut at
    spaces where possible; Q encoding for mostly-Latin text, base64 when that is shorter."""
    q_words = ["=?utf-8?q?" + _q_encode(chunk) + "?="
               for chunk in _chunks(text, lambda s: len(_q_encode(s)), _WORD_ROOM)]
    b_words = ["=?utf-8?b?" + base64.b64encode(_utf8(chunk)).decode("ascii") + "?="
               for chunk in _chunks(text, lambda s: len(_utf8(s)), _WORD_ROOM // 4 * 3)]
    return q_words if sum(map(len, q_words)) <= sum(map(len, b_words)) else b_words


def _q_encode(text: str) -> str:
    return "".join(char if char in _Q_SAFE else "_" if char == " " else
                   "".join(f"={byte:02X}" for byte in _utf8(char)) for char in text)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", errors="replace")


def _chunks(text: str, size: Callable[[str], int], room: int) -> list[str]:
    """`text` in pieces of at most `room` as measured by `size` (which adds up over
    concatenation): whole words with their trailing space where they fit, else characters."""
    chunks, current, used = [], "", 0
    for word in _WORD_AND_SPACE.findall(text):
        for piece in [word] if size(word) <= room else list(word):
            length = size(piece)
            if current and used + length > room:
                chunks.append(current)
                current, used = "", 0
            current, used = current + piece, used + length
    return [*chunks, current] if current else chunks
