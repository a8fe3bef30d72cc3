"""Users' own domains in tests: publish their records on the loopback DNS server.

    zone = Zone(dns_server)
    zone.publish(domain)                 # every record right: ownership, MX, SPF, DKIM, DMARC
    zone.publish(domain, mx="10 mx.elsewhere.test")   # one record wrong
    zone.publish(domain, ownership=None)               # one record missing
    zone.clear()                         # remove every name it added
"""

from __future__ import annotations

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import User
from mailcloak.aliases.domains import add_domain, dkim_target, ownership_name, ownership_value
from mailcloak.aliases.models import Domain
from mailcloak.aliases.verification import check_domain
from mailcloak.mail.dkimkeys import signing_keys
from tests.support.dns_server import DnsServer

RIGHT = object()  # publish the value Mailcloak expects


class Zone:
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.names: set[str] = set()

    def add(self, name: str, rdtype: str, *values: str) -> None:
        self.server.add(name, rdtype, *values)
        self.names.add(name)

    def publish(self, domain: Domain, *, ownership: object = RIGHT, mx: object = RIGHT,
                spf: object = RIGHT, dkim: bool = True, dmarc: object = RIGHT) -> None:
        """Publish the domain's records: RIGHT, a value of our own, or None (left out)."""
        hostname = mailcloak_settings.get().hostname
        wanted = {
            (ownership_name(domain), "TXT"): (ownership, ownership_value(domain)),
            (domain.name, "MX"): (mx, f"10 {hostname}"),
            (domain.name, "TXT"): (spf, "v=spf1 mx -all"),
            (f"_dmarc.{domain.name}", "TXT"): (dmarc, "v=DMARC1; p=quarantine"),
        }
        for (name, rdtype), (value, right) in wanted.items():
            if value is not None:
                self.add(name, rdtype, right if value is RIGHT else str(value))
        if dkim:
            for key in signing_keys():
                self.add(f"{key.selector}._domainkey.{domain.name}", "CNAME",
                         dkim_target(key) + ".")
                self.add(dkim_target(key), "TXT", key.txt_record())

    def remove(self, name: str, rdtype: str | None = None) -> None:
        self.server.remove(name, rdtype)

    def clear(self) -> None:
        for name in self.names:
            self.server.remove(name)
        self.names.clear()


def verified_domain(user: User, name: str, zone: Zone) -> Domain:
    """A domain of `user` whose records are all right, checked once (so verified)."""
    domain = add_domain(user, name)
    zone.publish(domain)
    outcome = check_domain(domain)
    assert outcome.proven, outcome.checks
    return domain
