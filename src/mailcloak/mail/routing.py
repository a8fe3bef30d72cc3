"""Where mail for a domain goes: a configured transport, the relay host, or the domain's MX.

In that order: MAILCLOAK_TRANSPORTS entries (`domain=[host]:port`), then MAILCLOAK_RELAYHOST,
then the MX records (by preference, equal preferences shuffled to spread load). A domain
without MX gets the implicit MX (its own A/AAAA, RFC 5321 5.1); a null MX (`0 .`, RFC 7505)
means the domain accepts no mail.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
from dataclasses import dataclass

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.dns import DnsError, DnsTemporaryError, MxRecord, NoSuchDomain, Resolver
from mailcloak.mail.smtp_client import HostFailure, Target

SMTP_PORT = 25
MAX_ADDRESSES_PER_HOST = 4  # a host with many addresses is one host: try a few, then move on


@dataclass(frozen=True)
class Route:
    kind: str  # "transport" | "relay" | "mx"
    hosts: tuple[tuple[str, int], ...]  # (name or IP, port), most preferred first

    @property
    def is_mx(self) -> bool:
        return self.kind == "mx"


class RouteError(Exception):
    """No host to send to. `permanent`: the domain cannot receive mail (bounce);
    `no_route`: nothing was found at all (local mode keeps such mail in the local outbox)."""

    def __init__(self, reason: str, *, permanent: bool, no_route: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.no_route = no_route


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def order_mx(records: list[MxRecord]) -> list[MxRecord]:
    """By preference; records of equal preference in random order (RFC 5321 5.1)."""
    ordered: list[MxRecord] = []
    for _, group in itertools.groupby(sorted(records), key=lambda record: record.preference):
        same = list(group)
        random.shuffle(same)
        ordered += same
    return ordered


class Router:
    def __init__(self, resolver: Resolver, *, config: mailcloak_settings.Config,
                 mx_port: int = SMTP_PORT) -> None:
        self.resolver = resolver
        self.transports: dict[str, mailcloak_settings.HostPort] = config.transports
        self.relayhost: mailcloak_settings.HostPort | None = config.relayhost
        self.mx_port = mx_port
        # Production never follows an MX to this machine's own or unroutable addresses.
        self.allow_local_addresses = not config.is_production

    async def route(self, domain: str) -> Route:
        if domain in self.transports:
            target = self.transports[domain]
            return Route("transport", ((target.host, target.port),))
        if self.relayhost is not None:
            return Route("relay", ((self.relayhost.host, self.relayhost.port),))
        return Route("mx", await self._mx_hosts(domain))

    async def _mx_hosts(self, domain: str) -> tuple[tuple[str, int], ...]:
        try:
            records = await self.resolver.mx(domain)
        except NoSuchDomain:
            raise RouteError(f"5.1.2 {domain}: no such domain", permanent=True,
                             no_route=True) from None
        except DnsError as exc:
            raise RouteError(f"4.4.3 MX lookup failed: {exc}", permanent=False,
                             no_route=True) from None
        if any(record.is_null for record in records):
            raise RouteError(f"5.1.10 {domain} does not accept mail (null MX)",
                             permanent=True, no_route=False)
        if not records:
            await self._check_implicit_mx(domain)
            return ((domain, self.mx_port),)
        return tuple((record.exchange, self.mx_port) for record in order_mx(records))

    async def _check_implicit_mx(self, domain: str) -> None:
        """Without MX the domain's own address records receive its mail, if it has any."""
        try:
            addresses = await self.resolver.addresses(domain)
        except NoSuchDomain:
            addresses = []
        except DnsTemporaryError as exc:
            raise RouteError(f"4.4.3 address lookup failed: {exc}", permanent=False,
                             no_route=True) from None
        if not addresses:
            raise RouteError(f"5.1.2 {domain} has no MX and no address records",
                             permanent=True, no_route=True)

    async def targets(self, route: Route, host: str, port: int) -> list[Target]:
        """The addresses to try for one host of the route."""
        if is_ip(host):
            return [Target(host, host, port)]
        try:
            addresses = await self.resolver.addresses(host)
        except NoSuchDomain:
            raise HostFailure(f"{host}: no such host") from None
        except DnsTemporaryError as exc:
            raise HostFailure(str(exc)) from None
        if route.is_mx and not self.allow_local_addresses:
            addresses = [address for address in addresses if _routable(address)]
        if not addresses:
            raise HostFailure(f"{host}: no usable address")
        return [Target(host, address, port) for address in addresses[:MAX_ADDRESSES_PER_HOST]]


def _routable(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not (ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast)
