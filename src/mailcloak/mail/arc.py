"""ARC (RFC 8617): validating the chain a message arrives with, and sealing what we forward.

Forwarding rewrites From and breaks the sender's DKIM signature, so the owner's mailbox
provider can no longer check the sender itself. The ARC set we add records what we found
when the message reached us (our Authentication-Results) and seals it with our DKIM RSA key,
so a receiver that trusts us can rely on those results. Ed25519 ARC is not widely supported,
so only the RSA key seals.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dkim
from authres import AuthenticationResultsHeader
from authres.core import AuthResError
from dkim.util import InvalidTagValueList, parse_tag_value

from mailcloak.mail import arc_results, dkim_fast, rsa_openssl
from mailcloak.mail.arc_sign import arc_sign
from mailcloak.mail.auth_message import ParsedMessage, as_domain, dkimpy_log
from mailcloak.mail.dkimkeys import DkimKey, signing_keys

# dkimpy and authres read hostile fields with bare indexing and attribute access: a set
# without its ARC-Message-Signature raises IndexError, a result property authres parsed as
# plain text AttributeError when written back. Each means "cannot read (or seal) this".
LIBRARY_ERRORS = (dkim.DKIMException, AuthResError, AttributeError, IndexError, KeyError,
                  TypeError, ValueError)

rsa_openssl.install()  # seals are RSA signatures: through OpenSSL, not Python integers
arc_results.install()  # dkimpy reads our Authentication-Results back without authres's parser
dkim_fast.install()  # and canonicalises as our own DKIM signer does, without needless regexes

ARC_FIELDS = ("arc-seal", "arc-message-signature", "arc-authentication-results")
MAX_INSTANCES = 50  # RFC 8617 4.2.1: i= runs from 1 to 50
MAX_KEYS = 20  # distinct key records fetched for one chain; a longer list fails the chain

DnsFunc = Callable[..., bytes | None]


class SealError(Exception):
    """The message cannot be sealed; str() says why."""


@dataclass(frozen=True)
class ArcResult:
    result: str  # none (no ARC sets), pass or fail
    instances: int = 0  # ARC sets on the message
    sealer: str = ""  # d= of the newest ARC-Seal: who vouches for the chain
    comment: str = ""  # why it failed, in our words


# --- validation ---------------------------------------------------------------------------------


def _tags(value: bytes) -> dict[bytes, bytes]:
    try:
        return parse_tag_value(value)
    except InvalidTagValueList:
        return {}


def _key_name(tags: dict[bytes, bytes]) -> str:
    domain = as_domain(tags.get(b"d", b"").decode("ascii", "replace"))
    selector = as_domain(tags.get(b"s", b"").decode("ascii", "replace"))
    return f"{selector}._domainkey.{domain}" if domain and selector else ""


def _all_key_names(message: ParsedMessage) -> list[str]:
    values = message.values("arc-seal") + message.values("arc-message-signature")
    names = (_key_name(_tags(value)) for value in values)
    return list(dict.fromkeys(name for name in names if name))


def _instances(message: ParsedMessage) -> int:
    numbers = [_tags(value).get(b"i", b"0") for value in message.values("arc-seal")]
    return max((int(number) for number in numbers if number.isdigit()), default=0)


def _overlong(message: ParsedMessage) -> bool:
    """More sets than RFC 8617 allows, or more sealers than we look up: fails unverified."""
    return _instances(message) > MAX_INSTANCES or len(_all_key_names(message)) > MAX_KEYS


def key_names(message: ParsedMessage) -> list[str]:
    """The key records the chain's seals and signatures name (to fetch them all at once)."""
    return [] if _overlong(message) else _all_key_names(message)


def validate_chain(message: ParsedMessage, dnsfunc: DnsFunc) -> ArcResult:
    """The chain validation status (RFC 8617 5.2) of the ARC sets on `message`."""
    if not any(message.has(name) for name in ARC_FIELDS):
        return ArcResult("none")
    instances = _instances(message)
    if _overlong(message):
        return ArcResult("fail", instances, comment="too many ARC sets")
    try:
        status, sets, _ = message.verifier(dkim.ARC).verify(dnsfunc=dnsfunc)
    except LIBRARY_ERRORS:  # a chain dkimpy cannot read is a broken one
        status, sets = dkim.CV_Fail, []
    sealer = sets[0]["as-domain"].decode("ascii", "replace") if sets else ""
    if status == dkim.CV_Pass:
        return ArcResult("pass", instances, as_domain(sealer))
    if status == dkim.CV_None and not instances:
        return ArcResult("none")
    # dkimpy's None: an earlier sealer already reported the chain broken (cv=fail).
    return ArcResult("fail", instances, as_domain(sealer), "broken chain")


# --- sealing ------------------------------------------------------------------------------------

_FIELD = re.compile(rb"^([^:\r\n]+):[^\r\n]*\r?\n(?:[ \t][^\r\n]*\r?\n)*", re.MULTILINE)
_COMMENT = re.compile(rb"\([^()]*\)")


def _linesep(content: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in content[:1000] else b"\n"


def _authserv_id(field_value: bytes) -> bytes:
    """The authserv-id an Authentication-Results value starts with, comments removed."""
    return _COMMENT.sub(b"", field_value.split(b";", 1)[0]).strip()


def _split_head(content: bytes) -> tuple[bytes, bytes]:
    """(header fields with their line breaks, the blank line and body)."""
    end = re.search(rb"\r?\n(?=\r?\n)", content)
    return (content, b"") if end is None else (content[:end.end()], content[end.end():])


def without_own_results(content: bytes, authserv_id: str) -> bytes:
    """`content` without Authentication-Results fields that claim to be ours (RFC 8601 5):
    whatever arrived with our name on it was written by someone else."""
    head, rest = _split_head(content)
    ours = authserv_id.lower().encode()

    def keep(field: re.Match[bytes]) -> bytes:
        name = field.group(1).strip().lower()
        value = field.group(0).split(b":", 1)[1]
        mine = name == b"authentication-results" and _authserv_id(value).lower() == ours
        return b"" if mine else field.group(0)

    return _FIELD.sub(keep, head) + rest


_ARC_VERDICT = re.compile(r"(?i)(?:^|;)\s*arc\s*=\s*(?:pass|fail)\b")


def _results_to_seal(auth_results: str, content: bytes) -> str:
    """The A-R value to seal. Without earlier ARC sets our seal starts a new chain, so an
    `arc=` verdict (about sets since removed) must not be carried into it. Looking for the
    sets, and parsing the value, only in that rare case keeps sealing fast."""
    if not _ARC_VERDICT.search(auth_results):
        return auth_results
    parsed = ParsedMessage.parse(content)
    if any(parsed.has(name) for name in ARC_FIELDS):
        return auth_results
    try:
        header = AuthenticationResultsHeader.parse("Authentication-Results: " + auth_results)
    except (AuthResError, ValueError) as exc:
        raise SealError(f"not an Authentication-Results value: {exc}") from None
    header.results = [result for result in header.results if result.method != "arc"]
    try:
        return str(header).split(":", 1)[1].strip()
    except LIBRARY_ERRORS as exc:
        name = type(exc).__name__
        raise SealError(f"cannot write the Authentication-Results value: {name}") from None


def _rsa_key(keys: Sequence[DkimKey]) -> DkimKey:
    for key in keys:
        if key.algorithm == "rsa":
            return key
    raise SealError("ARC sealing needs an RSA DKIM key")


def arc_seal(content: bytes, *, auth_results: str, domain: str,
             keys: Sequence[DkimKey] | None = None, timestamp: int | None = None) -> bytes:
    """`content` with an ARC set (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results)
    prepended, sealed for `domain` with the RSA DKIM key.

    `auth_results` is the Authentication-Results value from authenticate() for this message;
    its authserv-id names the sealer. Seal only mail forwarded to an owner: the sealed results
    name the original sender's domains, and on a reply they would describe the owner's own
    mailbox. Fields that claim our authserv-id but arrived with the message are dropped."""
    linesep = _linesep(content)
    key = _rsa_key(keys if keys is not None else signing_keys())
    authserv_id = _authserv_id(auth_results.encode()).decode()
    if not as_domain(authserv_id):
        raise SealError(f"the authserv-id {authserv_id!r} is not a host name")
    results = _results_to_seal(auth_results, content)
    message = without_own_results(content, authserv_id)
    stamped = b"Authentication-Results: " + results.encode() + linesep + message
    signing_domain = as_domain(domain)
    if not signing_domain:
        raise SealError(f"{domain!r} is not a domain name")
    try:
        arc_set = arc_sign(stamped, key.selector.encode(), signing_domain.encode(),
                           key.private, authserv_id.encode(), timestamp=timestamp,
                           logger=dkimpy_log, linesep=linesep)
    except LIBRARY_ERRORS as exc:
        raise SealError(f"cannot ARC-seal the message: {type(exc).__name__}") from None
    if not arc_set:  # dkimpy found no results of ours, or none about the existing chain
        raise SealError("the Authentication-Results value does not parse, or says nothing "
                        "(arc=) about the ARC sets the message carries")
    return b"".join(arc_set) + message
