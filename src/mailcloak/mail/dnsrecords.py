"""The DNS records an operator must publish so mail from and to Mailcloak is trusted.

`required_records()` returns them as data; `format_zone()` prints them as zone-file lines
ready to paste. `mailcloak dns` shows them for every configured domain, and
mailcloak.mail.dnscheck compares them with what DNS serves.
"""

from __future__ import annotations

import hashlib
import ipaddress
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.reversename

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.dkimkeys import DkimKey, signing_keys

TXT_STRING_LIMIT = 255  # one DNS character-string; longer TXT values are split into several
TTL = 3600
COMMENT_WIDTH = 96
SERVER_IP_PLACEHOLDER = "<this server's public IP address>"
REPORTS_PLACEHOLDER = "<a mailbox you read>"
MTA_STS_PREFIX = "mta-sts."
MTA_STS_PATH = "/.well-known/mta-sts.txt"


@dataclass(frozen=True)
class Record:
    name: str  # fully qualified, no trailing dot
    type: str
    value: str  # for TXT the whole text, before splitting into strings
    purpose: str


def spf_value() -> str:
    """Only the domain's MX (this server) may send mail from it; everything else fails."""
    return "v=spf1 mx -all"


def host_spf_value() -> str:
    """SPF of the EHLO name, which receivers check for bounces (empty envelope sender)."""
    return "v=spf1 a -all"


def dmarc_value(domain: str, reports_address: str = "") -> str:
    # Strict alignment: Mailcloak always signs with and sends from the alias domain itself.
    value = "v=DMARC1; p=quarantine; adkim=s; aspf=s"
    return value + (f"; rua=mailto:{reports_address}" if reports_address else "")


def dmarc_purpose(domain: str, reports_address: str) -> str:
    reports = (f"Aggregate reports go to {reports_address}." if reports_address else
               "Set MAILCLOAK_REPORTS_ADDRESS to receive aggregate reports.")
    return (f"DMARC: receivers quarantine mail from {domain} that fails SPF and DKIM. Safe from "
            "day one because Mailcloak signs everything it sends; start with p=none instead "
            f"if other services also send mail as {domain}. {reports}")


def mta_sts_policy(config: mailcloak_settings.Config) -> str:
    """The RFC 8461 policy file every domain serves at mta-sts.DOMAIN (CRLF line ends)."""
    lines = ["version: STSv1", f"mode: {config.mta_sts_mode}", f"mx: {config.hostname}",
             f"max_age: {config.mta_sts_max_age}"]
    return "\r\n".join(lines) + "\r\n"


def mta_sts_id(policy: str) -> str:
    """The `id=` of the _mta-sts record: changes exactly when the policy text changes."""
    return hashlib.sha256(policy.encode()).hexdigest()[:20]


def mta_sts_value(config: mailcloak_settings.Config) -> str:
    return f"v=STSv1; id={mta_sts_id(mta_sts_policy(config))}"


def tls_rpt_value(reports_address: str) -> str:
    return f"v=TLSRPTv1; rua=mailto:{reports_address or REPORTS_PLACEHOLDER}"


def web_host(config: mailcloak_settings.Config) -> str:
    """The host name (or IP) users reach the web app at, from MAILCLOAK_PUBLIC_URL."""
    return (urlsplit(config.public_url).hostname or "").lower()


def domain_records(domain: str, hostname: str, keys: Sequence[DkimKey],
                   config: mailcloak_settings.Config | None = None) -> list[Record]:
    config = config or mailcloak_settings.get()
    reports = config.reports_address
    records = [
        Record(domain, "MX", f"10 {hostname}", f"mail to addresses at {domain} comes here"),
        Record(domain, "TXT", spf_value(), "SPF: only this server sends mail for the domain"),
    ]
    records += [
        Record(f"{key.selector}._domainkey.{domain}", "TXT", key.txt_record(),
               f"DKIM public key ({key.algorithm}) for selector {key.selector}")
        for key in keys
    ]
    records.append(Record(f"_dmarc.{domain}", "TXT", dmarc_value(domain, reports),
                          dmarc_purpose(domain, reports)))
    records += report_authorisation_records(domain, reports)
    return records + tls_policy_records(domain, config)


def report_authorisation_records(domain: str, reports_address: str) -> list[Record]:
    """RFC 7489 7.1: a report mailbox at another domain must agree to take the reports."""
    reports_domain = reports_address.rpartition("@")[2].lower()
    if not reports_domain or reports_domain == domain:
        return []
    return [Record(f"{domain}._report._dmarc.{reports_domain}", "TXT", "v=DMARC1",
                   f"in the zone of {reports_domain}: accept DMARC reports about {domain}")]


def tls_policy_records(domain: str, config: mailcloak_settings.Config) -> list[Record]:
    """MTA-STS (the policy's id and the host serving it) and TLS-RPT."""
    return [mta_sts_record(domain, config), mta_sts_host_record(domain, config),
            tls_rpt_record(domain, config)]


def mta_sts_record(domain: str, config: mailcloak_settings.Config) -> Record:
    return Record(f"_mta-sts.{domain}", "TXT", mta_sts_value(config),
                  "MTA-STS: senders must use TLS to the MX; the id changes with the policy")


def mta_sts_host_record(domain: str, config: mailcloak_settings.Config) -> Record:
    """mta-sts.DOMAIN points at the web app: a CNAME to its name, or A/AAAA to its IP."""
    host = web_host(config)
    switch = ("" if config.mta_sts_mode == "enforce" else
              "; set MAILCLOAK_MTA_STS_MODE=enforce once TLS reports show no failures")
    return Record(
        MTA_STS_PREFIX + domain, _host_record_type(host), host,
        f"MTA-STS: https://{MTA_STS_PREFIX}{domain}{MTA_STS_PATH} must reach the web app "
        f"through a TLS certificate valid for that name. Its mode is {config.mta_sts_mode}"
        + switch)


def tls_rpt_record(domain: str, config: mailcloak_settings.Config) -> Record:
    return Record(f"_smtp._tls.{domain}", "TXT", tls_rpt_value(config.reports_address),
                  "TLS-RPT: where senders report TLS failures"
                  + ("" if config.reports_address else " (set MAILCLOAK_REPORTS_ADDRESS)"))


def _host_record_type(host: str) -> str:
    try:
        return "AAAA" if ipaddress.ip_address(host).version == 6 else "A"
    except ValueError:
        return "CNAME"


def host_records(hostname: str, server_ips: Sequence[str] = ()) -> list[Record]:
    """The mail server's own name: address records, SPF for its EHLO name, reverse DNS."""
    addresses = list(server_ips) or [SERVER_IP_PLACEHOLDER]
    records = [
        Record(hostname, _address_type(ip), ip, f"{hostname} is this server") for ip in addresses
    ]
    records.append(Record(hostname, "TXT", host_spf_value(),
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
        records += domain_records(domain, config.hostname, keys, config)
    return records + host_records(config.hostname, server_ips)


def txt_strings(value: str) -> list[str]:
    """A TXT value split into DNS character-strings of at most 255 characters."""
    return [value[i:i + TXT_STRING_LIMIT] for i in range(0, len(value), TXT_STRING_LIMIT)] or [""]


def zone_value(record: Record) -> str:
    if record.type == "TXT":
        return " ".join('"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'
                        for part in txt_strings(record.value))
    if record.type in {"MX", "PTR", "CNAME"}:
        return record.value + ("" if record.value.startswith("<") else ".")
    return record.value


def _zone_name(name: str) -> str:
    return name if name.startswith("<") else name + "."


def zone_line(record: Record, width: int = 0) -> str:
    """One record as a zone-file line."""
    return f"{_zone_name(record.name):<{width}}  {TTL} IN {record.type:<5} {zone_value(record)}"


def format_zone(records: Sequence[Record]) -> str:
    """Zone-file lines, each after a comment saying what it is for."""
    width = min(40, max((len(_zone_name(record.name)) for record in records), default=0))
    lines: list[str] = []
    for record in records:
        lines += textwrap.wrap(record.purpose, COMMENT_WIDTH, initial_indent="; ",
                               subsequent_indent="; ", break_on_hyphens=False)
        lines.append(zone_line(record, width))
    return "\n".join(lines) + "\n"


def dns_command(server_ips: Sequence[str] = (),
                config: mailcloak_settings.Config | None = None) -> str:
    """`mailcloak dns`: the zone-file text, one section per configured domain, then the host."""
    config = config or mailcloak_settings.get()
    keys = signing_keys(config)
    sections = [f";; {domain}: publish in the zone of {domain}\n"
                + format_zone(domain_records(domain, config.hostname, keys, config))
                for domain in config.domains]
    sections.append(f";; {config.hostname}: the mail server's own name and reverse DNS\n"
                    + format_zone(host_records(config.hostname, server_ips)))
    return "\n".join(sections)
