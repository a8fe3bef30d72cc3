"""The one DNS resolver behind every lookup Mailcloak makes (MX, A/AAAA, TXT, PTR).

It reads MAILCLOAK_DNS_SERVERS (`IP` or `IP:PORT` entries) or, when that is empty, the
system's resolv.conf. Lookups raise typed errors so callers can tell "this name does not
exist" (permanent) from "DNS did not answer" (try again later). Tests inject a resolver that
talks to a DNS server on loopback: `set_resolver()` / `use_resolver()`.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename

from mailcloak import settings as mailcloak_settings

DEFAULT_TIMEOUT = 3.0  # per server and try
DEFAULT_LIFETIME = 8.0  # for a whole lookup, all servers and retries included
EDNS_PAYLOAD = 1232  # the DNS flag day 2020 size: avoids fragmentation, rarely needs TCP


class DnsError(Exception):
    """A lookup failed; str() says which name and why."""


class DnsTemporaryError(DnsError):
    """DNS gave no usable answer (timeout, SERVFAIL, no resolver): it may work later."""


class NoSuchDomain(DnsError):
    """The name does not exist (NXDOMAIN)."""


@dataclass(frozen=True, order=True)
class MxRecord:
    preference: int
    exchange: str  # lower case, no trailing dot; "" for the null MX target "."

    @property
    def is_null(self) -> bool:
        """RFC 7505: `0 .` says the domain accepts no mail at all."""
        return self.exchange == ""


def parse_server(entry: str) -> dns.nameserver.Do53Nameserver:
    """`192.0.2.1`, `192.0.2.1:5353`, `2001:db8::1` or `[2001:db8::1]:5353`."""
    text = entry.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest.removeprefix(":") or 53)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = int(port_text)
    ipaddress.ip_address(host)  # raises ValueError with the offending text
    return dns.nameserver.Do53Nameserver(host, port)


def _fqdn(name: str) -> str:
    """Absolute form: lookups never go through the resolver's search list."""
    return name if name.endswith(".") else name + "."


def _host(name: object) -> str:
    return str(name).rstrip(".").lower()


class Resolver:
    """Async lookups (for the delivery path) and sync ones (for dkimpy, pyspf and the CLI)."""

    def __init__(self, nameservers: Sequence[dns.nameserver.Nameserver] | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, lifetime: float = DEFAULT_LIFETIME,
                 unavailable: str = "", resolv_conf: str = "/etc/resolv.conf") -> None:
        """`nameservers=None` reads resolv.conf; `unavailable` makes every lookup fail with
        that reason (used when no resolver configuration could be loaded)."""
        self.unavailable = unavailable
        self._async = dns.asyncresolver.Resolver(configure=False)
        self._sync = dns.resolver.Resolver(configure=False)
        cache = dns.resolver.LRUCache(max_size=10_000)
        for resolver in (self._async, self._sync):
            if nameservers is None and not unavailable:
                resolver.read_resolv_conf(resolv_conf)
            elif nameservers is not None:
                resolver.nameservers = list(nameservers)
            resolver.timeout = timeout
            resolver.lifetime = lifetime
            resolver.use_edns(0, 0, EDNS_PAYLOAD)
            resolver.cache = cache

    @classmethod
    def from_settings(cls, servers: Sequence[str] = (), *,
                      resolv_conf: str = "/etc/resolv.conf") -> Resolver:
        """The resolver MAILCLOAK_DNS_SERVERS asks for; the system's when it is empty."""
        if servers:
            return cls([parse_server(entry) for entry in servers])
        try:
            return cls(resolv_conf=resolv_conf)
        except (OSError, dns.exception.DNSException) as exc:
            return cls([], unavailable=f"no DNS resolver configured ({exc}); "
                                       "set MAILCLOAK_DNS_SERVERS")

    @property
    def nameservers(self) -> list[str]:
        """`IP:PORT` of each server asked, in order."""
        return [f"{getattr(server, 'address', server)}:{getattr(server, 'port', 53)}"
                for server in self._sync.nameservers]

    # --- async lookups ------------------------------------------------------------------------

    async def mx(self, domain: str) -> list[MxRecord]:
        """MX records sorted by preference; [] when the domain exists but has none."""
        answer = await self._resolve(domain, "MX")
        return sorted(_mx_records(answer))

    async def addresses(self, host: str) -> list[str]:
        """IPv4 then IPv6 addresses of `host`; [] when it has neither.

        Raises NoSuchDomain only when both lookups say the name does not exist, and
        DnsTemporaryError only when neither gave an answer."""
        results = await asyncio.gather(self._resolve(host, "A"), self._resolve(host, "AAAA"),
                                       return_exceptions=True)
        return _merge_address_results(host, results)

    async def txt(self, name: str) -> list[bytes]:
        """Each TXT record with its strings joined, as RFC 7208 and RFC 6376 read them."""
        return _txt_values(await self._resolve(name, "TXT"))

    async def ptr(self, ip: str) -> list[str]:
        """Host names the address maps back to."""
        answer = await self._resolve(dns.reversename.from_address(ip).to_text(), "PTR")
        return [_host(rdata.target) for rdata in answer]

    async def _resolve(self, name: str, rdtype: str) -> list[Any]:  # rdata of `rdtype`
        self._check_available(name)
        try:
            answer = await self._async.resolve(_fqdn(name), rdtype, raise_on_no_answer=False)
        except dns.exception.DNSException as exc:
            raise _translate(name, rdtype, exc) from None
        return list(answer.rrset or [])

    # --- sync lookups -------------------------------------------------------------------------

    def mx_sync(self, domain: str) -> list[MxRecord]:
        return sorted(_mx_records(self._resolve_sync(domain, "MX")))

    def addresses_sync(self, host: str) -> list[str]:
        results: list[list[Any] | DnsError] = []
        for rdtype in ("A", "AAAA"):
            try:
                results.append(self._resolve_sync(host, rdtype))
            except DnsError as exc:
                results.append(exc)
        return _merge_address_results(host, results)

    def txt_sync(self, name: str) -> list[bytes]:
        return _txt_values(self._resolve_sync(name, "TXT"))

    def txt_cached(self, name: str) -> list[bytes] | None:
        """txt_sync(name) if the cache can answer it (NoSuchDomain included), else None."""
        self._check_available(name)
        cached = self._cached(name, "TXT")
        return None if cached is None else _txt_values(cached)

    def records_sync(self, name: str, rdtype: str) -> list[Any]:
        """The rdata of one lookup of any type (for pyspf and DNS blocklists); [] when the
        name exists without such records."""
        return self._resolve_sync(name, rdtype)

    def ptr_sync(self, ip: str) -> list[str]:
        answer = self._resolve_sync(dns.reversename.from_address(ip).to_text(), "PTR")
        return [_host(rdata.target) for rdata in answer]

    def dkim_dnsfunc(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """dkimpy's `dnsfunc=`: the first TXT record of `name`, or None when there is none.

        DNS failures raise dkim.DnsTimeoutError so dkimpy reports a temporary error rather
        than a missing key."""
        import dkim

        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        try:
            values = self.txt_sync(text)
        except NoSuchDomain:
            return None
        except DnsTemporaryError as exc:
            raise dkim.DnsTimeoutError(str(exc)) from None
        return values[0] if values else None

    def _resolve_sync(self, name: str, rdtype: str) -> list[Any]:
        self._check_available(name)
        cached = self._cached(name, rdtype)
        if cached is not None:
            return cached
        try:
            answer = self._sync.resolve(_fqdn(name), rdtype, raise_on_no_answer=False)
        except dns.exception.DNSException as exc:
            raise _translate(name, rdtype, exc) from None
        return list(answer.rrset or [])

    def _cached(self, name: str, rdtype: str) -> list[Any] | None:
        """What the cache holds for the lookup, as dnspython's resolve() would answer from it
        (an answer, an empty one, or NXDOMAIN), without setting up a resolution: most mail
        comes from domains looked up moments before. None when it must be asked."""
        try:
            qname = dns.name.from_text(_fqdn(name))
        except dns.exception.DNSException:
            return None  # resolve() explains what is wrong with the name
        cache = self._sync.cache
        answer = cache.get((qname, dns.rdatatype.from_text(rdtype), dns.rdataclass.IN))
        if answer is not None:
            return list(answer.rrset or [])
        nxdomain = cache.get((qname, dns.rdatatype.ANY, dns.rdataclass.IN))
        if nxdomain is not None and nxdomain.response.rcode() == dns.rcode.NXDOMAIN:
            raise NoSuchDomain(f"{name}: no such domain")
        return None

    def _check_available(self, name: str) -> None:
        if self.unavailable:
            raise DnsTemporaryError(f"cannot look up {name}: {self.unavailable}")


def _translate(name: str, rdtype: str, exc: dns.exception.DNSException) -> DnsError:
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return NoSuchDomain(f"{name}: no such domain")
    if isinstance(exc, dns.exception.Timeout):
        return DnsTemporaryError(f"{name} {rdtype}: DNS timeout")
    if isinstance(exc, dns.resolver.NoNameservers):
        return DnsTemporaryError(f"{name} {rdtype}: no DNS server answered (SERVFAIL or refused)")
    return DnsTemporaryError(f"{name} {rdtype}: DNS error ({type(exc).__name__})")


def _mx_records(answer: list[Any]) -> list[MxRecord]:
    return [MxRecord(int(rdata.preference), _host(rdata.exchange)) for rdata in answer]


def _txt_values(answer: list[Any]) -> list[bytes]:
    return [b"".join(rdata.strings) for rdata in answer]


def _merge_address_results(host: str, results: Sequence[object]) -> list[str]:
    """Combine the A and AAAA outcomes: any address wins; otherwise a temporary failure of
    either lookup is temporary (the other family may exist); NXDOMAIN needs both to agree."""
    found = [str(rdata) for result in results if isinstance(result, list) for rdata in result]
    if found:
        return found
    errors = [result for result in results if isinstance(result, DnsError)]
    temporary = [error for error in errors if isinstance(error, DnsTemporaryError)]
    if temporary:
        raise temporary[0]
    if errors and len(errors) == len(results):
        raise errors[0]
    return []


# --- the process-wide resolver ---------------------------------------------------------------

_resolver: Resolver | None = None


def get_resolver() -> Resolver:
    """The resolver every lookup uses, built from the settings on first use."""
    global _resolver
    if _resolver is None:
        _resolver = Resolver.from_settings(mailcloak_settings.get().dns_servers)
    return _resolver


def set_resolver(resolver: Resolver | None) -> Resolver | None:
    """Replace the process-wide resolver (None: rebuild from settings); returns the old one."""
    global _resolver
    previous, _resolver = _resolver, resolver
    return previous


@contextmanager
def use_resolver(resolver: Resolver) -> Iterator[Resolver]:
    previous = set_resolver(resolver)
    try:
        yield resolver
    finally:
        set_resolver(previous)


def dkim_dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
    """dkimpy's `dnsfunc=` backed by the process-wide resolver."""
    return get_resolver().dkim_dnsfunc(name, timeout)

