"""The DNS records an operator must publish so mail from and to Mailcloak is trusted.

`required_records()` returns them as data; `format_zone()` prints them as zone-file lines
ready to paste. `mailcloak dns` shows them for every configured domain.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import dns.reversename

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.dkimkeys import DkimKey, signing_keys

TXT_STRING_LIMIT = 255  # one DNS character-string; longer TXT values are split into several
TTL = 3600
SERVER_IP_PLACEHOLDER = "<this server's public IP address>"


@dataclass(frozen=True)
class Record:
    name: str  # fully qualified, no trailing dot
    type: str
    value: str  # for TXT the whole text, before splitting into strings
    purpose: str


def spf_value() -> str:
    """Only the domain's MX (this server) may send mail from it; everything else fails."""
    return "v=spf1 mx -all"


def dmarc_value(domain: str) -> str:
    # Strict alignment: Mailcloak always signs with and sends from the alias domain itself.
    return f"v=DMARC1; p=quarantine; adkim=s; aspf=s; rua=mailto:postmaster@{domain}"


def domain_records(domain: str, hostname: str, keys: Sequence[DkimKey]) -> list[Record]:
    records = [
        Record(domain, "MX", f"10 {hostname}", f"mail to addresses at {domain} comes here"),
        Record(domain, "TXT", spf_value(), "SPF: only this server sends mail for the domain"),
    ]
    records += [
        Record(f"{key.selector}._domainkey.{domain}", "TXT", key.txt_record(),
               f"DKIM public key ({key.algorithm}) for selector {key.selector}")
        for key in keys
    ]
    records.append(Record(f"_dmarc.{domain}", "TXT", dmarc_value(domain),
                          "DMARC: receivers quarantine mail that fails SPF and DKIM; "
                          "aggregate reports go to postmaster"))
    return records


def host_records(hostname: str, server_ips: Sequence[str] = ()) -> list[Record]:
    """The mail server's own name: address records, SPF for its EHLO name, reverse DNS."""
    addresses = list(server_ips) or [SERVER_IP_PLACEHOLDER]
    records = [
        Record(hostname, _address_type(ip), ip, f"{hostname} is this server") for ip in addresses
    ]
    records.append(Record(hostname, "TXT", "v=spf1 a -all",
                          "SPF for the EHLO name, checked for bounces (empty envelope sender)"))
    records += [
        Record(_reverse_name(ip), "PTR", hostname,
               "reverse DNS: set by whoever owns the IP (your hosting provider); many "
               "receivers refuse mail from an IP whose PTR does not match the EHLO name")
        for ip in addresses
    ]
    return records


def _address_type(ip: str) -> str:
    if ip == SERVER_IP_PLACEHOLDER:
        return "A"
    return "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"


def _reverse_name(ip: str) -> str:
    if ip == SERVER_IP_PLACEHOLDER:
        return "<reverse name of this server's IP>"
    return dns.reversename.from_address(ip).to_text().rstrip(".")


def required_records(config: mailcloak_settings.Config, keys: Sequence[DkimKey],
                     server_ips: Sequence[str] = ()) -> list[Record]:
    """Every record to publish: per alias domain, then for the mail server's host name."""
    records: list[Record] = []
    for domain in config.domains:
        records += domain_records(domain, config.hostname, keys)
    return records + host_records(config.hostname, server_ips)


def txt_strings(value: str) -> list[str]:
    """A TXT value split into DNS character-strings of at most 255 characters."""
    return [value[i:i + TXT_STRING_LIMIT] for i in range(0, len(value), TXT_STRING_LIMIT)] or [""]


def _zone_value(record: Record) -> str:
    if record.type == "TXT":
        return " ".join('"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'
                        for part in txt_strings(record.value))
    if record.type in {"MX", "PTR", "CNAME"}:
        return record.value + ("" if record.value.startswith("<") else ".")
    return record.value


def _zone_name(name: str) -> str:
    return name if name.startswith("<") else name + "."


def format_zone(records: Sequence[Record]) -> str:
    """Zone-file lines, each after a comment saying what it is for."""
    width = min(40, max((len(_zone_name(record.name)) for record in records), default=0))
    lines: list[str] = []
    for record in records:
        lines.append(f"; {record.purpose}")
        lines.append(f"{_zone_name(record.name):<{width}}  {TTL} IN {record.type:<4} "
                     f"{_zone_value(record)}")
    return "\n".join(lines) + "\n"


def dns_command(server_ips: Sequence[str] = (),
                config: mailcloak_settings.Config | None = None) -> str:
    """`mailcloak dns`: the zone-file text for every configured domain."""
    config = config or mailcloak_settings.get()
    return format_zone(required_records(config, signing_keys(config), server_ips))
