"""DKIM (RFC 6376): every signature on the message checked with dkimpy, each with its own
result, so "signed by the sender's domain and valid" can be told from "signed by someone".

Key records are fetched together beforehand (auth_dns.TxtLookups); a lookup that fails
temporarily makes that signature `temperror`, never `fail`.
"""

from __future__ import annotations

from dataclasses import dataclass

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from mailcloak.mail.auth_dns import TxtLookups
from mailcloak.mail.auth_message import ParsedMessage, as_domain
from mailcloak.mail.dns import DnsTemporaryError, NoSuchDomain

# Signatures checked per message; more are ignored (each costs a DNS lookup and a pass over
# the body).
MAX_SIGNATURES = 8


@dataclass(frozen=True)
class DkimResult:
    domain: str  # d=
    selector: str  # s=
    result: str  # pass, fail, neutral, temperror or permerror
    algorithm: str = ""  # a=, e.g. rsa-sha256
    signature_prefix: str = ""  # the first 8 characters of b=, to tell signatures apart
    comment: str = ""  # why it did not pass, in our words


@dataclass(frozen=True)
class Signature:
    """One DKIM-Signature field as found on the message, before verification."""

    index: int  # among DKIM-Signature fields, top first (what dkimpy's verify(idx=) takes)
    domain: str
    selector: str
    algorithm: str
    signature_prefix: str
    problem: str = ""  # set when the field is too broken to verify

    @property
    def key_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def result(self, result: str, comment: str = "") -> DkimResult:
        return DkimResult(self.domain, self.selector, result, self.algorithm,
                          self.signature_prefix, comment)


def _text(tags: dict[bytes, bytes], name: bytes) -> str:
    return tags.get(name, b"").decode("ascii", "replace").strip()


def _selector(text: str) -> str:
    """A selector may have several labels (RFC 6376 3.1)."""
    return as_domain(text) if text else ""


def find_signatures(message: ParsedMessage) -> list[Signature]:
    signatures = []
    for index, value in enumerate(message.values("dkim-signature")[:MAX_SIGNATURES]):
        try:
            tags = parse_tag_value(value)
        except InvalidTagValueList:
            tags = {}
        domain, selector = as_domain(_text(tags, b"d")), _selector(_text(tags, b"s"))
        prefix = "".join(_text(tags, b"b").split())[:8]
        missing = [name for name in ("v", "a", "b", "bh", "d", "h", "s")
                   if name.encode() not in tags]
        problem = ("malformed signature" if not tags or missing
                   else "" if domain and selector else "bad d= or s= tag")
        signatures.append(Signature(index, domain or _text(tags, b"d")[:64],
                                    selector or _text(tags, b"s")[:64],
                                    _text(tags, b"a")[:32], prefix, problem))
    return signatures


def key_names(signatures: list[Signature]) -> list[str]:
    return [signature.key_name for signature in signatures if not signature.problem]


def _key_problem(signature: Signature, keys: TxtLookups) -> DkimResult | None:
    """The result when the key record alone decides it (missing, unusable, DNS failure)."""
    try:
        values = keys.values(signature.key_name)
    except NoSuchDomain:
        return signature.result("permerror", "no key")
    except DnsTemporaryError:
        return signature.result("temperror", "key lookup failed")
    if not values:
        return signature.result("permerror", "no key")
    try:
        dkim.evaluate_pk(signature.key_name.encode(), values[0])
    except (dkim.DKIMException, ValueError):  # ValueError: base64 that does not decode
        return signature.result("permerror", "unusable key")
    return None


def _verify(verifier: dkim.DKIM, signature: Signature, keys: TxtLookups) -> DkimResult:
    if signature.problem:
        return signature.result("permerror", signature.problem)
    decided = _key_problem(signature, keys)
    if decided is not None:
        return decided
    try:
        valid = verifier.verify(idx=signature.index, dnsfunc=keys.dkim_dnsfunc)
    except dkim.ValidationError as exc:  # body hash mismatch, expired, ...
        return signature.result("fail", _failure(exc))
    except dkim.KeyFormatError:  # e.g. an RSA key shorter than 1024 bits
        return signature.result("permerror", "unusable key")
    except dkim.DKIMException:
        return signature.result("permerror", "malformed signature")
    return signature.result("pass") if valid else signature.result("fail", "bad signature")


def _failure(exc: dkim.ValidationError) -> str:
    text = str(exc)
    if "body hash" in text:
        return "body changed"
    if "expired" in text:
        return "signature expired"
    return "bad signature"


def verify_signatures(message: ParsedMessage, signatures: list[Signature],
                      keys: TxtLookups) -> tuple[DkimResult, ...]:
    """One result per signature, in the order they appear."""
    if not signatures:
        return ()
    verifier = message.verifier(dkim.DKIM)
    return tuple(_verify(verifier, signature, keys) for signature in signatures)
