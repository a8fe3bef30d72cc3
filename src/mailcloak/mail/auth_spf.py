"""SPF (RFC 7208) with pyspf, its DNS lookups answered by Mailcloak's resolver.

pyspf looks names up through its module-level `DNSLookup` function; this module replaces it
once, on import, with one that asks mailcloak.mail.dns.get_resolver(), so SPF obeys
MAILCLOAK_DNS_SERVERS, shares the resolver's cache and timeouts, and tests can serve records.
"""

from __future__ import annotations

import ipaddress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import spf

from mailcloak.mail.auth_message import as_domain
from mailcloak.mail.dns import DnsTemporaryError, NoSuchDomain, Resolver, get_resolver

# RFC 7208 4.6.4: a whole check may take at least 20 s before it is a temporary error.
SPF_TIME_LIMIT = 20.0

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")

# A resolver to use instead of the process-wide one in this thread or task (DNS record checks
# are handed one); pyspf's lookup function has no parameter for it.
lookup_resolver: ContextVar[Resolver | None] = ContextVar("spf_lookup_resolver", default=None)


@dataclass(frozen=True)
class SpfResult:
    result: str  # one of RESULTS
    identity: str  # "mailfrom", or "helo" for an empty MAIL FROM (bounces)
    domain: str  # the domain whose policy was checked ("" when there was none to check)
    # pyspf's explanation; for a fail it may quote the sender domain's own exp= text, so it is
    # for logs and debugging, not for the owner's eyes or headers.
    explanation: str = ""


def _lookup(name: str, qtype: str, strict: object = True,
            timeout: object = None) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's DNSLookup: [((name, type), value), ...]; NXDOMAIN and no records are []."""
    try:
        records = (lookup_resolver.get() or get_resolver()).records_sync(name, qtype)
    except NoSuchDomain:
        return []
    except DnsTemporaryError as exc:
        raise spf.TempError(f"DNS {exc}") from None
    return [((name, qtype), _value(qtype, rdata)) for rdata in records]


def _value(qtype: str, rdata: Any) -> Any:
    if qtype in ("A", "AAAA"):
        return rdata.address
    if qtype == "MX":
        return (rdata.preference, rdata.exchange.to_text(omit_final_dot=True))
    if qtype == "PTR":
        return rdata.target.to_text(omit_final_dot=True)
    return rdata.strings  # TXT and the old SPF type: the character-strings, joined by pyspf


spf.DNSLookup = _lookup


def _client_address(peer_ip: str) -> str:
    """The address SPF evaluates ("" if unusable); IPv4-mapped IPv6 counts as IPv4."""
    try:
        address = ipaddress.ip_address(peer_ip.strip().strip("[]"))
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def check_spf(peer_ip: str, *, helo: str, mail_from: str) -> SpfResult:
    """SPF for MAIL FROM, or for the HELO name when MAIL FROM is empty (RFC 7208 2.4)."""
    identity = "mailfrom" if mail_from else "helo"
    domain = as_domain(mail_from.rpartition("@")[2] if mail_from else helo)
    client = _client_address(peer_ip)
    if not domain:
        return SpfResult("none", identity, "", "no domain to check")
    if not client:
        return SpfResult("none", identity, domain, "no client address")
    # pyspf splits at the first "@"; hand it the domain we report, already in ASCII form.
    local = mail_from.rpartition("@")[0].replace("@", "_") if "@" in mail_from else ""
    sender = f"{local}@{domain}" if mail_from else ""
    try:
        result, explanation = spf.check2(i=client, s=sender, h=helo, querytime=SPF_TIME_LIMIT)
    except (ValueError, UnicodeError) as exc:  # an address pyspf cannot take apart
        return SpfResult("permerror", identity, domain, str(exc))
    result = str(result).lower()
    return SpfResult(result if result in RESULTS else "permerror", identity, domain,
                     str(explanation))
