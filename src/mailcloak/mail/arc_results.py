"""Reading Authentication-Results for dkimpy's ARC sealing, without authres's slow parser for
the plain values Mailcloak writes.

To seal, dkimpy parses each Authentication-Results field of the message with authres and
writes the results of ours back as ARC-Authentication-Results. authres's parser compiles its
patterns again at every step: 0.3 to 0.7 ms for our one field, a quarter of the seal. The
values auth_report writes are mostly plain: tokens, and comments of a few safe characters,
which authres drops. One regular expression reads those, and the very objects authres's parser
would build are built from what it read. Anything else (quoted values, fields from other hops)
still goes to authres. `install()` points dkimpy at this parser.
"""

from __future__ import annotations

import re
import types
from typing import Any

import authres
import authres.core
import dkim

# Only what authres reads back unchanged: RFC 2045 tokens (no @, no quotes), our methods,
# and comments (dropped) of the characters auth_report keeps in them.
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]+"
_PROPERTY = rf" (smtp|header|body|policy)\.([a-z]+)=({_TOKEN})"
_RESULT = rf"(?:spf|dkim|dmarc|arc)=[a-z]+(?: \([A-Za-z0-9 .,:=_+-]+\))?(?:{_PROPERTY})*"
_FIELD = re.compile(rf"Authentication-Results: ([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)"
                    rf"((?:; {_RESULT})+)")
_ONE_RESULT = re.compile(rf"([a-z]+)=([a-z]+)(?: \([^()]*\))?((?:{_PROPERTY})*)")
_PROPERTIES = re.compile(_PROPERTY)


def parse(field: str) -> authres.core.AuthenticationResultsHeader:
    """authres.AuthenticationResultsHeader.parse(field), faster for the plain values."""
    plain = _FIELD.fullmatch(field)
    if plain is None:
        return authres.AuthenticationResultsHeader.parse(field)
    features = authres.core_features()
    results = []
    for text in plain.group(2)[2:].split("; "):  # no ";" inside tokens and comments
        one = _ONE_RESULT.fullmatch(text)
        if one is None:  # cannot happen once _FIELD matched; authres decides if it does
            return authres.AuthenticationResultsHeader.parse(field)
        method, result, after_comment = one.groups()[:3]
        properties = [authres.core.AuthenticationResultProperty(*found)
                      for found in _PROPERTIES.findall(after_comment)]
        results.append(features.result(method, None, result, None, None, None, properties))
    return authres.core.AuthenticationResultsHeader(features, authserv_id=plain.group(1),
                                                    results=results)


class _HeaderParser:
    """What dkimpy calls as authres.AuthenticationResultsHeader."""

    parse = staticmethod(parse)


class _AuthresForDkim(types.ModuleType):
    """authres as dkimpy sees it: the same module, with our parser in front."""

    AuthenticationResultsHeader = _HeaderParser

    def __getattr__(self, name: str) -> Any:
        return getattr(authres, name)


def install() -> None:
    dkim.authres = _AuthresForDkim("authres")
