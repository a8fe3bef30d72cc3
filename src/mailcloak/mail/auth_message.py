"""The message as the authentication checks see it, parsed once for all of them.

The header section is split the way dkimpy splits it (so DKIM and ARC verify exactly what
they would verify on their own), but a line that is not a header field is skipped and noted
rather than aborting: a spoofer must not escape DMARC with one malformed line.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from email.utils import getaddresses
from functools import cached_property
from typing import TypeVar

import dkim

_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+):")
_LINE_BREAK = re.compile(rb"\r?\n")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
                     r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

Signer = TypeVar("Signer", bound=dkim.DomainSigner)

# dkimpy logs every bad signature at error level; spam makes those routine, and the results
# carry the reason instead.
dkimpy_log = logging.getLogger("mailcloak.auth.dkimpy")
dkimpy_log.setLevel(logging.CRITICAL)


def as_domain(text: str) -> str:
    """`text` as a lower-case ASCII domain name (IDNA for international ones); "" if it is
    not one."""
    name = text.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return ""
    return name if _DOMAIN.match(name) else ""


@dataclass
class ParsedMessage:
    # (name, value) pairs as dkimpy holds them: the value keeps its leading space and CRLF.
    headers: list[list[bytes]]
    rest: bytes = field(repr=False)  # everything after the blank line, as received
    malformed: bool = False  # some header line was neither a field nor a continuation

    @classmethod
    def parse(cls, raw: bytes) -> ParsedMessage:
        found = _HEADER_END.search(raw)
        if raw.startswith((b"\r\n", b"\n")):  # no header section at all
            head, rest = b"", raw.split(b"\n", 1)[1]
        elif found:
            head, rest = raw[:found.start()], raw[found.end():]
        else:
            head, rest = raw, b""
        headers: list[list[bytes]] = []
        malformed = False
        for line in _LINE_BREAK.split(head) if head else []:
            if line[:1] in (b" ", b"\t") and headers:
                headers[-1][1] += line + b"\r\n"
            elif match := _FIELD_NAME.match(line):
                headers.append([match.group(1), line[match.end():] + b"\r\n"])
            elif not line.startswith(b"From "):  # an mbox separator is not an error
                malformed = True
        return cls(headers, rest, malformed)

    @cached_property
    def body(self) -> bytes:
        """The body with CRLF line endings, as dkimpy canonicalises it (computed only when
        a signature needs it)."""
        return _LINE_BREAK.sub(b"\r\n", self.rest)

    def values(self, name: str) -> list[bytes]:
        """The unfolded values of every field called `name`, in order."""
        wanted = name.lower().encode()
        return [_unfold(value) for key, value in self.headers if key.lower() == wanted]

    def has(self, name: str) -> bool:
        wanted = name.lower().encode()
        return any(key.lower() == wanted for key, _ in self.headers)

    @cached_property
    def from_domains(self) -> tuple[str, ...]:
        """The distinct domains of the RFC5322.From addresses, in order; unreadable ones are
        left out."""
        texts = [value.decode("utf-8", "replace") for value in self.values("from")]
        domains = (as_domain(address.rpartition("@")[2])
                   for _, address in getaddresses(texts) if "@" in address)
        return tuple(dict.fromkeys(domain for domain in domains if domain))

    def verifier(self, kind: type[Signer]) -> Signer:
        """A dkimpy DKIM or ARC object over this parse (dkimpy would otherwise parse again)."""
        signer = kind(logger=dkimpy_log)
        signer.headers, signer.body = self.headers, self.body
        return signer


def _unfold(value: bytes) -> bytes:
    return _LINE_BREAK.sub(b"", value).strip()
