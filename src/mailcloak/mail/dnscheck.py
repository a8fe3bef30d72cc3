"""Compare what DNS serves with the records Mailcloak needs (mailcloak.mail.dnsrecords).

Each check returns RecordCheck values: "ok", "missing", "wrong" (published but unusable), or
"error" (DNS did not answer: a timeout or SERVFAIL says nothing about the record). Every
result that is not ok carries the exact fix. `mailcloak dns check` prints them; the web app
checks users' own domains with `check_domain()` or the single checks.

Lookups go through the resolver passed in, else the process-wide one (which honours
MAILCLOAK_DNS_SERVERS), so tests and callers can aim them at any server.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import spf

from mailcloak import settings as mailcloak_settings
from mailcloak.mail import auth_spf
from mailcloak.mail.auth_dmarc import POLICIES, is_dmarc, organizational_domain
from mailcloak.mail.dkimkeys import DkimKey, signing_keys
from mailcloak.mail.dns import DnsTemporaryError, NoSuchDomain, Resolver, get_resolver
from mailcloak.mail.dnsrecords import (
    MTA_STS_PREFIX,
    Record,
    dmarc_value,
    host_spf_value,
    mta_sts_host_record,
    mta_sts_id,
    mta_sts_policy,
    mta_sts_record,
    spf_value,
    tls_rpt_record,
    zone_line,
)

Status = Literal["ok", "missing", "wrong", "error"]
Config = mailcloak_settings.Config

MX = "MX"
SPF = "SPF"
DKIM = "DKIM"
DMARC = "DMARC"
MTA_STS = "MTA-STS"
MTA_STS_HOST = "MTA-STS host"
TLS_RPT = "TLS-RPT"
ADDRESS = "A/AAAA"
PTR = "PTR"


@dataclass(frozen=True)
class RecordCheck:
    kind: str  # one of the names above: MX, SPF, DKIM, DMARC, MTA-STS, ...
    name: str  # the DNS name looked up
    status: Status
    found: str  # what DNS answered, in words or record text
    expected: str  # the value we need (record text, or a description)
    fix: str  # what to do; "" when the record is ok

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _publish(record: Record) -> str:
    return f"publish: {zone_line(record)}"


def _dns_failure(kind: str, name: str, expected: str, exc: DnsTemporaryError) -> RecordCheck:
    reason = str(exc).split(": ", 1)[-1]  # the message starts with the name and type asked
    return RecordCheck(kind, name, "error", reason, expected,
                       "DNS did not answer; try again later (check MAILCLOAK_DNS_SERVERS "
                       "and the domain's name servers if it persists)")


def _txt(resolver: Resolver, name: str) -> list[str]:
    """The TXT records at `name` (CNAMEs followed); [] when there are none or no such name."""
    try:
        values = resolver.txt_sync(name)
    except NoSuchDomain:
        return []
    return [value.decode("utf-8", "replace") for value in values]


def _tags(text: str) -> dict[str, str]:
    """`k=v; k=v` tag lists (DKIM, DMARC, MTA-STS, TLS-RPT); the first of a repeated tag wins."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip():
            tags.setdefault(name.strip().lower(), value.strip())
    return tags


def _versioned(values: Sequence[str], version: str) -> list[str]:
    """The records whose first tag is `v=<version>`, as every one of these formats requires."""
    return [value for value in values
            if _tags(value.split(";", 1)[0]).get("v", "").lower() == version.lower()]


# --- MX -------------------------------------------------------------------------------------


def check_mx(domain: str, *, resolver: Resolver | None = None,
             config: Config | None = None) -> RecordCheck:
    """Every MX of `domain` must be MAILCLOAK_HOSTNAME."""
    config = config or mailcloak_settings.get()
    resolver = resolver or get_resolver()
    hostname = config.hostname.lower()
    record = Record(domain, "MX", f"10 {hostname}", "")
    try:
        exchanges = resolver.mx_sync(domain)
    except NoSuchDomain:
        return RecordCheck(MX, domain, "missing", f"{domain} does not exist in DNS",
                           record.value, _publish(record))
    except DnsTemporaryError as exc:
        return _dns_failure(MX, domain, record.value, exc)
    if not exchanges:
        return RecordCheck(MX, domain, "missing", "no MX record", record.value,
                           _publish(record))
    found = ", ".join(f"{mx.preference} {mx.exchange or '.'}" for mx in exchanges)
    if all(mx.exchange == hostname for mx in exchanges):
        return RecordCheck(MX, domain, "ok", found, record.value, "")
    return RecordCheck(MX, domain, "wrong", found, record.value,
                       f"replace every MX record of {domain} with: {zone_line(record)}")


# --- SPF ------------------------------------------------------------------------------------


def check_spf(domain: str, ips: Sequence[str] = (), *, resolver: Resolver | None = None,
              config: Config | None = None) -> RecordCheck:
    """`domain`'s SPF record must let this server send: each of `ips` (default: the addresses
    of MAILCLOAK_HOSTNAME) must get an SPF pass. For the host name itself the record checked
    is the EHLO name's."""
    config = config or mailcloak_settings.get()
    resolver = resolver or get_resolver()
    hostname = config.hostname.lower()
    wanted = host_spf_value() if domain.lower() == hostname else spf_value()
    record = Record(domain, "TXT", wanted, "")
    try:
        found = [text for text in _txt(resolver, domain) if _is_spf(text)]
        if not found:
            return RecordCheck(SPF, domain, "missing", "no SPF record", wanted,
                               _publish(record))
        if len(found) > 1:
            return RecordCheck(SPF, domain, "wrong", " | ".join(found), wanted,
                               f"{len(found)} SPF records make SPF fail (permerror); keep "
                               f"one: {zone_line(record)}")
        senders = list(ips) or _addresses_or_none(resolver, hostname)
        if not senders:
            return _spf_by_mechanisms(domain, found[0], hostname, record)
        results = {ip: _spf_result(resolver, ip, domain, hostname) for ip in senders}
    except DnsTemporaryError as exc:
        return _dns_failure(SPF, domain, wanted, exc)
    return _spf_verdict(domain, found[0], results, record)


def _is_spf(text: str) -> bool:
    """RFC 7208 4.5: exactly `v=spf1`, then the end or a space."""
    return text.lower() == "v=spf1" or text.lower().startswith("v=spf1 ")


def _addresses_or_none(resolver: Resolver, host: str) -> list[str]:
    try:
        return resolver.addresses_sync(host)
    except NoSuchDomain:
        return []


def _spf_result(resolver: Resolver, ip: str, domain: str, hostname: str) -> str:
    """pyspf's verdict for mail from postmaster@`domain` sent by `ip`, looked up through
    `resolver`."""
    token = auth_spf.lookup_resolver.set(resolver)
    try:
        result, _ = spf.check2(i=ip, s=f"postmaster@{domain}", h=hostname,
                               querytime=auth_spf.SPF_TIME_LIMIT)
    finally:
        auth_spf.lookup_resolver.reset(token)
    return str(result).lower()


def _spf_verdict(domain: str, text: str, results: dict[str, str],
                 record: Record) -> RecordCheck:
    failed = {ip: result for ip, result in results.items() if result != "pass"}
    if not failed:
        return RecordCheck(SPF, domain, "ok", text, record.value, "")
    found = f"{text} (SPF {', '.join(f'{r} for {ip}' for ip, r in failed.items())})"
    if "temperror" in failed.values():
        return RecordCheck(SPF, domain, "error", found, record.value,
                           "DNS did not answer a lookup the record needs; try again later")
    if text.lower() == record.value.lower():
        by = "its address records" if record.value == host_spf_value() else "the MX"
        return RecordCheck(SPF, domain, "wrong", found, record.value,
                           f"the record is right and names this server by {by}: fix the MX "
                           f"and A/AAAA lines so they lead to {', '.join(failed)}")
    return RecordCheck(SPF, domain, "wrong", found, record.value,
                       f"authorise this server ({', '.join(failed)}): {zone_line(record)}")


def _spf_by_mechanisms(domain: str, text: str, hostname: str, record: Record) -> RecordCheck:
    """Without an IP to test (no --ip, no address for the host name), accept a record that
    names this server by its MX or its host name."""
    terms = {term.lstrip("+").lower() for term in text.split()[1:]}
    ours = {"mx", f"mx:{domain}", f"a:{hostname}"} | ({"a"} if domain == hostname else set())
    if terms & ours:
        return RecordCheck(SPF, domain, "ok", text, record.value, "")
    return RecordCheck(SPF, domain, "wrong", text, record.value,
                       f"the record does not name this server (give --ip to test by "
                       f"address): {zone_line(record)}")


# --- DKIM -----------------------------------------------------------------------------------


def check_dkim(domain: str, *, resolver: Resolver | None = None, config: Config | None = None,
               keys: Sequence[DkimKey] | None = None) -> list[RecordCheck]:
    """One check per signing key: SELECTOR._domainkey.DOMAIN must publish our public key,
    either as TXT there or through a CNAME chain to a name that does."""
    config = config or mailcloak_settings.get()
    resolver = resolver or get_resolver()
    return [_check_dkim_key(domain, key, resolver, config)
            for key in (keys if keys is not None else signing_keys(config))]


def _check_dkim_key(domain: str, key: DkimKey, resolver: Resolver,
                    config: Config) -> RecordCheck:
    name = f"{key.selector}._domainkey.{domain}"
    expected = key.txt_record()
    fix = _publish(Record(name, "TXT", expected, ""))
    if domain != config.primary_domain:
        target = f"{key.selector}._domainkey.{config.primary_domain}"
        fix += f"  (or a CNAME to our key: {zone_line(Record(name, 'CNAME', target, ''))})"
    try:
        published = _txt(resolver, name)
    except DnsTemporaryError as exc:
        return _dns_failure(DKIM, name, expected, exc)
    # v=DKIM1 is optional (RFC 6376 3.6.1), but where some records carry it, they are the keys
    found = _versioned(published, "DKIM1") or published
    if not found:
        return RecordCheck(DKIM, name, "missing", "no DKIM key", expected, fix)
    tags = _tags(found[0])
    public = re.sub(r"\s", "", tags.get("p", ""))
    algorithm = tags.get("k", "rsa").lower()
    if len(found) == 1 and public == key.public and algorithm == key.algorithm:
        return RecordCheck(DKIM, name, "ok", found[0], expected, "")
    if len(found) > 1:
        fix = f"keep one record; {fix}"
    return RecordCheck(DKIM, name, "wrong", " | ".join(found), expected, fix)


# --- DMARC ----------------------------------------------------------------------------------


def check_dmarc(domain: str, *, resolver: Resolver | None = None,
                config: Config | None = None) -> RecordCheck:
    """_dmarc.DOMAIN must hold one DMARC record with a valid policy."""
    config = config or mailcloak_settings.get()
    resolver = resolver or get_resolver()
    name = f"_dmarc.{domain}"
    expected = dmarc_value(domain, config.reports_address)
    record = Record(name, "TXT", expected, "")
    try:
        found = [text for text in _txt(resolver, name) if is_dmarc(text)]
        inherited = "" if found else _inherited_dmarc(domain, resolver)
    except DnsTemporaryError as exc:
        return _dns_failure(DMARC, name, expected, exc)
    if inherited:
        return RecordCheck(DMARC, name, "ok", inherited, expected, "")
    if not found:
        return RecordCheck(DMARC, name, "missing", "no DMARC record", expected,
                           _publish(record))
    if len(found) > 1:
        return RecordCheck(DMARC, name, "wrong", " | ".join(found), expected,
                           f"{len(found)} DMARC records count as none; keep one: "
                           f"{zone_line(record)}")
    policy = _tags(found[0]).get("p", "").lower()
    if policy not in POLICIES:
        return RecordCheck(DMARC, name, "wrong", found[0], expected,
                           f"p= must be one of {', '.join(POLICIES)}: {zone_line(record)}")
    return RecordCheck(DMARC, name, "ok", found[0], expected, "")


def _inherited_dmarc(domain: str, resolver: Resolver) -> str:
    """RFC 7489 6.6.3: without its own record, a subdomain follows its organisational domain's
    (its sp= policy). Returns where that record was found, or "" when there is no usable one."""
    parent = organizational_domain(domain)
    if parent == domain:
        return ""
    found = [text for text in _txt(resolver, f"_dmarc.{parent}") if is_dmarc(text)]
    if len(found) != 1:
        return ""
    tags = _tags(found[0])
    if tags.get("sp", tags.get("p", "")).lower() not in POLICIES:
        return ""
    return f"inherited from _dmarc.{parent}: {found[0]}"


# --- MTA-STS and TLS-RPT --------------------------------------------------------------------


def check_mta_sts(domain: str, *, resolver: Resolver | None = None,
                  config: Config | None = None) -> list[RecordCheck]:
    """The _mta-sts record with the current policy id, and a host serving the policy."""
    config = config or mailcloak_settings.get()
    resolver = resolver or get_resolver()
    policy_id = mta_sts_id(mta_sts_policy(config))
    return [_check_mta_sts_id(mta_sts_record(domain, config), policy_id, resolver),
            _check_policy_host(domain, mta_sts_host_record(domain, config), resolver)]


def _check_mta_sts_id(record: Record, policy_id: str, resolver: Resolver) -> RecordCheck:
    try:
        found = _versioned(_txt(resolver, record.name), "STSv1")
    except DnsTemporaryError as exc:
        return _dns_failure(MTA_STS, record.name, record.value, exc)
    if not found:
        return RecordCheck(MTA_STS, record.name, "missing", "no MTA-STS record", record.value,
                           _publish(record))
    if len(found) > 1 or _tags(found[0]).get("id") != policy_id:
        return RecordCheck(MTA_STS, record.name, "wrong", " | ".join(found), record.value,
                           "the id must be the current policy's, or senders keep using the "
                           f"policy they cached: {zone_line(record)}")
    return RecordCheck(MTA_STS, record.name, "ok", found[0], record.value, "")


def _check_policy_host(domain: str, record: Record, resolver: Resolver) -> RecordCheck:
    """mta-sts.DOMAIN must resolve; HTTPS on it is up to the operator's reverse proxy."""
    name = MTA_STS_PREFIX + domain
    expected = f"{record.type} {record.value}"
    try:
        addresses = _addresses_or_none(resolver, name)
    except DnsTemporaryError as exc:
        return _dns_failure(MTA_STS_HOST, name, expected, exc)
    if not addresses:
        return RecordCheck(MTA_STS_HOST, name, "missing", f"{name} has no address", expected,
                           _publish(record))
    return RecordCheck(MTA_STS_HOST, name, "ok", ", ".join(addresses), expected, "")


def check_tls_rpt(domain: str, *, resolver: Resolver | None = None,
                  config: Config | None = None) -> RecordCheck:
    """_smtp._tls.DOMAIN must hold one TLS-RPT record with a report address."""
    config = config or mailcloak_settings.get()
    resolver = resolver or get_resolver()
    record = tls_rpt_record(domain, config)
    publish = _publish(record)
    if not config.reports_address:
        publish = f"set MAILCLOAK_REPORTS_ADDRESS to a mailbox you read, then {publish}"
    try:
        found = _versioned(_txt(resolver, record.name), "TLSRPTv1")
    except DnsTemporaryError as exc:
        return _dns_failure(TLS_RPT, record.name, record.value, exc)
    if not found:
        return RecordCheck(TLS_RPT, record.name, "missing", "no TLS-RPT record", record.value,
                           publish)
    address = _tags(found[0]).get("rua", "")
    if len(found) > 1 or not address or "<" in address:
        return RecordCheck(TLS_RPT, record.name, "wrong", " | ".join(found), record.value,
                           f"keep one record, with a rua= address; {publish}")
    return RecordCheck(TLS_RPT, record.name, "ok", found[0], record.value, "")


# --- the mail server's own name -------------------------------------------------------------


def check_host(ips: Sequence[str] = (), *, resolver: Resolver | None = None,
               config: Config | None = None) -> list[RecordCheck]:
    """MAILCLOAK_HOSTNAME: its addresses (each of `ips` among them), its SPF for bounces, and
    the reverse DNS of each of `ips` naming it."""
    config = config or mailcloak_settings.get()
    resolver = resolver or get_resolver()
    checks = [_check_addresses(config.hostname.lower(), ips, resolver),
              check_spf(config.hostname, ips, resolver=resolver, config=config)]
    return checks + [_check_ptr(ip, config.hostname.lower(), resolver) for ip in ips]


def _same_ip(left: str, right: str) -> bool:
    return ipaddress.ip_address(left) == ipaddress.ip_address(right)


def _check_addresses(hostname: str, ips: Sequence[str], resolver: Resolver) -> RecordCheck:
    expected = ", ".join(ips) or "this server's public IP addresses"
    try:
        found = _addresses_or_none(resolver, hostname)
    except DnsTemporaryError as exc:
        return _dns_failure(ADDRESS, hostname, expected, exc)
    absent = [ip for ip in ips if not any(_same_ip(ip, address) for address in found)]
    fix = "; ".join(_publish(Record(hostname, "AAAA" if ":" in ip else "A", ip, ""))
                    for ip in absent) or (
        f"publish A (and AAAA) records of {hostname} with this server's public IPs")
    if not found:
        return RecordCheck(ADDRESS, hostname, "missing", f"{hostname} has no address",
                           expected, fix)
    if absent:
        return RecordCheck(ADDRESS, hostname, "wrong", ", ".join(found), expected, fix)
    return RecordCheck(ADDRESS, hostname, "ok", ", ".join(found), expected, "")


def _check_ptr(ip: str, hostname: str, resolver: Resolver) -> RecordCheck:
    name = ipaddress.ip_address(ip).reverse_pointer
    fix = (f"ask whoever owns {ip} (usually the hosting provider's panel) to set its reverse "
           f"DNS to {hostname}")
    try:
        names = resolver.ptr_sync(ip)
    except NoSuchDomain:
        names = []
    except DnsTemporaryError as exc:
        return _dns_failure(PTR, name, hostname, exc)
    if not names:
        return RecordCheck(PTR, name, "missing", f"no reverse DNS for {ip}", hostname, fix)
    if hostname not in names:
        return RecordCheck(PTR, name, "wrong", ", ".join(names), hostname, fix)
    return RecordCheck(PTR, name, "ok", ", ".join(names), hostname, "")


# --- whole domains --------------------------------------------------------------------------


def check_domain(domain: str, *, ips: Sequence[str] = (), resolver: Resolver | None = None,
                 config: Config | None = None, tls_policies: bool = True,
                 keys: Sequence[DkimKey] | None = None) -> list[RecordCheck]:
    """Every record `domain` needs: MX, SPF, both DKIM keys, DMARC and, unless `tls_policies`
    is false, MTA-STS and TLS-RPT. `ips` are this server's public addresses for the SPF test
    (default: the addresses of MAILCLOAK_HOSTNAME); `keys` default to the signing keys.

    The resolver's cache may hold answers from before a record was published: pass a new
    Resolver when the owner has just changed their DNS."""
    config = config or mailcloak_settings.get()
    resolver = resolver or get_resolver()
    domain = domain.strip().lower().rstrip(".")
    checks = [check_mx(domain, resolver=resolver, config=config),
              check_spf(domain, ips, resolver=resolver, config=config),
              *check_dkim(domain, resolver=resolver, config=config, keys=keys),
              check_dmarc(domain, resolver=resolver, config=config)]
    if tls_policies:
        checks += check_mta_sts(domain, resolver=resolver, config=config)
        checks.append(check_tls_rpt(domain, resolver=resolver, config=config))
    return checks


def check_instance(domains: Sequence[str], ips: Sequence[str] = (), *,
                   resolver: Resolver | None = None, config: Config | None = None,
                   keys: Sequence[DkimKey] | None = None) -> dict[str, list[RecordCheck]]:
    """`mailcloak dns check`: each of `domains`, then the host name, keyed by what was checked."""
    config = config or mailcloak_settings.get()
    resolver = resolver or get_resolver()
    keys = keys if keys is not None else signing_keys(config)
    results: dict[str, list[RecordCheck]] = {
        domain: check_domain(domain, ips=ips, resolver=resolver, config=config, keys=keys)
        for domain in domains}
    results[config.hostname] = check_host(ips, resolver=resolver, config=config)
    return results

