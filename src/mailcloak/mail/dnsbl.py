"""DNS blocklists: is the connecting IP (MAILCLOAK_DNSBL) or a domain that the message links
to (MAILCLOAK_URIBL) listed as a spam source?

Both are off unless zones are configured: most lists want registration before commercial or
high-volume use, and refuse queries that come through large public resolvers. A list answers
`<reversed IP>.<zone>` or `<domain>.<zone>` with an address in 127.0.0.0/8 when the entry is
listed and NXDOMAIN when it is not. A few answers are the lists' error codes (such as "queries
through public resolvers refused"): they never mean "listed". A lookup that fails adds
nothing; a blocklist is one signal among many.
"""

from __future__ import annotations

import email
import ipaddress
import re
from collections.abc import Iterable, Sequence
from email.message import Message
from email.policy import compat32

from mailcloak import settings as mailcloak_settings
from mailcloak.mail import auth_dns
from mailcloak.mail.auth_dmarc import organizational_domain
from mailcloak.mail.auth_message import as_domain
from mailcloak.mail.dns import DnsError, get_resolver
from mailcloak.mail.spam.verdict import Reason

IP_LISTED_SCORE = 3.0
LINK_LISTED_SCORE = 2.5
MAX_LINK_DOMAINS = 20  # looked up per message, in the order the links appear
SCANNED_PART_BYTES = 512 * 1024  # of each text part, when looking for links

_LISTED = ipaddress.ip_network("127.0.0.0/8")
# Answers that lists use for "we refuse your query" (rate limits, public resolvers):
# 127.0.0.1 (URIBL, SURBL), 127.0.1.255 (Spamhaus DBL), 127.255.255.0/24 (Spamhaus).
_LIST_ERRORS = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("127.0.1.255/32"),
                ipaddress.ip_network("127.255.255.0/24"))
_LINK_HOST = re.compile(r"(?i)(?:\bhttps?://(?:[^/\s@\"'<>]*@)?|\b(?=www\.))([a-z0-9.-]+)")
_TEXT_PARTS = ("text/plain", "text/html")


def ip_query_name(ip: str, zone: str) -> str:
    """`<reversed address>.<zone>`, or "" for an address no list would know (private,
    loopback, reserved): asking would only tell the list operator about our network."""
    try:
        address = ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if not address.is_global:
        return ""
    reverse = address.reverse_pointer.rsplit(".", 2)[0]  # without in-addr.arpa / ip6.arpa
    return f"{reverse}.{zone}"


def _is_listed(name: str) -> bool:
    try:
        records = get_resolver().records_sync(name, "A")
    except DnsError:  # NXDOMAIN: not listed; anything else: no answer, so no signal
        return False
    addresses = [ipaddress.ip_address(rdata.address) for rdata in records]
    return any(address in _LISTED and not any(address in error for error in _LIST_ERRORS)
               for address in addresses)


Query = tuple[str, Reason]  # (name to look up, the reason if it is listed)


def _hits(queries: Sequence[Query]) -> tuple[Reason, ...]:
    """The reasons of the listed queries; all are looked up at once."""
    futures = [auth_dns.start(_is_listed, name) for name, _ in queries]
    hits = []
    for (name, reason), future in zip(queries, futures, strict=True):
        try:
            if auth_dns.wait_for(future, name):
                hits.append(reason)
        except DnsError:
            continue
    return tuple(hits)


def _ip_queries(peer_ip: str, zones: Sequence[str]) -> list[Query]:
    queries = [(ip_query_name(peer_ip, zone), zone) for zone in zones]
    return [(name, Reason("DNSBL_LISTED", f"The sending server {peer_ip} is listed by {zone}",
                          IP_LISTED_SCORE))
            for name, zone in queries if name]


def _domain_queries(domains: Iterable[str], zones: Sequence[str]) -> list[Query]:
    registered = dict.fromkeys(organizational_domain(d) for d in map(as_domain, domains) if d)
    return [(f"{domain}.{zone}",
             Reason("URIBL_LISTED", f"The message links to {domain}, which is listed by {zone}",
                    LINK_LISTED_SCORE))
            for domain in list(registered)[:MAX_LINK_DOMAINS] for zone in zones]


def check_ip(peer_ip: str, zones: Sequence[str]) -> tuple[Reason, ...]:
    """A reason for each zone that lists the connecting IP."""
    return _hits(_ip_queries(peer_ip, zones))


def check_domains(domains: Iterable[str], zones: Sequence[str]) -> tuple[Reason, ...]:
    """A reason for each (domain, zone) listing. Domains are looked up by their registered
    (organisational) domain, at most MAX_LINK_DOMAINS of them."""
    return _hits(_domain_queries(domains, zones))


def _text_parts(message: Message) -> Iterable[str]:
    for part in message.walk():
        if part.get_content_type() not in _TEXT_PARTS:
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            charset = part.get_content_charset() or "utf-8"
            try:
                yield payload[:SCANNED_PART_BYTES].decode(charset, "replace")
            except LookupError:  # an unknown charset name
                yield payload[:SCANNED_PART_BYTES].decode("latin-1")


def link_domains(raw: bytes) -> list[str]:
    """The distinct host names of web links in the message's text and HTML parts, in order."""
    message = email.message_from_bytes(raw, policy=compat32)
    hosts = (as_domain(match.group(1)) for text in _text_parts(message)
             for match in _LINK_HOST.finditer(text))
    return list(dict.fromkeys(host for host in hosts if "." in host))


def blocklist_reasons(raw: bytes, peer_ip: str,
                      config: mailcloak_settings.Config | None = None) -> tuple[Reason, ...]:
    """Every blocklist signal MAILCLOAK_DNSBL and MAILCLOAK_URIBL ask for; () when both are
    empty. Blocking: call it from a worker thread."""
    config = config or mailcloak_settings.get()
    queries = _ip_queries(peer_ip, config.dnsbl)
    if config.uribl:
        queries += _domain_queries(link_domains(raw), config.uribl)
    return _hits(queries)
