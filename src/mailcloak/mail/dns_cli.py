"""`mailcloak dns` (the records to publish) and `mailcloak dns check` (are they published?).

    mailcloak dns [--ip IP]...                  zone-file lines for every configured domain
    mailcloak dns check [DOMAIN] [--ip IP]...   one line per record: ok, missing, wrong, error

`dns check` exits 0 when every record is ok, 1 when one is missing, wrong or could not be
looked up, and 2 for bad arguments such as a domain this instance does not serve.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence
from typing import Any

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.dnscheck import RecordCheck

FOUND_WIDTH = 60  # long values (DKIM keys) are cut on the status line; the fix has them whole
STATUS_WIDTH = 8
KIND_WIDTH = 13
NAME_WIDTH = 34  # longer names (IPv6 reverse names) push their line's value further right


def add_commands(sub: Any) -> None:
    """Add the `dns` command and its `check` action to the main parser's subparsers."""
    summary = "print the DNS records to publish for every configured domain"
    dns = sub.add_parser("dns", help=summary, description=summary)
    _ip_option(dns, default=[])
    dns.set_defaults(handler=cmd_records)
    actions = dns.add_subparsers(dest="action", metavar="ACTION")
    check_summary = ("look the records up and report each as ok, missing or wrong with the fix "
                     "(exit status 1 when one is not ok)")
    check = actions.add_parser("check", help=check_summary, description=check_summary)
    check.add_argument("domain", nargs="?", metavar="DOMAIN",
                       help="check only this configured domain (default: all of them)")
    _ip_option(check, default=argparse.SUPPRESS)  # keeps an --ip given before `check`
    check.set_defaults(handler=cmd_check)


def _ip_option(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument("--ip", action="append", default=default, type=ip_address_argument,
                        help="this server's public IP address (repeat for IPv4 and IPv6)")


def ip_address_argument(text: str) -> str:
    """argparse type of --ip options: a normalised IP address."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def _error(message: str) -> Exception:
    from mailcloak.cli import CommandError

    return CommandError(message)


# --- mailcloak dns --------------------------------------------------------------------------


def cmd_records(args: argparse.Namespace) -> int:
    from mailcloak.mail.dkimkeys import DkimKeyError
    from mailcloak.mail.dnsrecords import dns_command

    try:
        print(dns_command(args.ip), end="")
    except DkimKeyError as exc:
        raise _error(str(exc)) from None
    return 0


# --- mailcloak dns check --------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from mailcloak.mail.dkimkeys import DkimKeyError
    from mailcloak.mail.dnscheck import check_instance

    config = mailcloak_settings.get()
    domains = _chosen_domains(args.domain, config.domains)
    if domains is None:
        print(f"mailcloak: {args.domain} is not a domain of this instance "
              f"(MAILCLOAK_DOMAINS: {', '.join(config.domains)})", file=sys.stderr)
        return 2
    silence = _resolver_silence()
    if silence:
        raise _error(f"DNS does not answer ({silence}): check MAILCLOAK_DNS_SERVERS or "
                     "/etc/resolv.conf")
    try:
        results = check_instance(domains, args.ip, config=config)
    except DkimKeyError as exc:
        raise _error(str(exc)) from None
    print(format_report(results), end="")
    return 0 if all(check.ok for checks in results.values() for check in checks) else 1


def _resolver_silence() -> str:
    """Why the resolver gives no answers at all ("" when it answers): asked once, so a dead
    resolver is one message instead of a timeout for every record."""
    from mailcloak.mail.dns import DnsTemporaryError, NoSuchDomain, get_resolver

    try:
        get_resolver().records_sync(".", "NS")
    except NoSuchDomain:
        pass  # an answer all the same
    except DnsTemporaryError as exc:
        return str(exc).split(": ", 1)[-1]
    return ""


def _chosen_domains(requested: str | None, configured: Sequence[str]) -> list[str] | None:
    """The domains to check: all, or the one asked for (None when it is not ours)."""
    if requested is None:
        return list(configured)
    domain = requested.strip().lower().rstrip(".")
    return [domain] if domain in configured else None


def _shorten(text: str) -> str:
    return text if len(text) <= FOUND_WIDTH else text[:FOUND_WIDTH - 1] + "…"


def format_check(check: RecordCheck, name_width: int = 0) -> list[str]:
    """The status line of one record, then its fix when it is not ok."""
    line = (f"  {check.status:<{STATUS_WIDTH}} {check.kind:<{KIND_WIDTH}} "
            f"{check.name:<{name_width}}  {_shorten(check.found)}")
    if check.ok:
        return [line]
    return [line, f"  {'':<{STATUS_WIDTH}} fix: {check.fix}"]


def format_report(results: dict[str, list[RecordCheck]]) -> str:
    """Each checked name's records, then one summary line."""
    names = [check.name for checks in results.values() for check in checks]
    name_width = min(NAME_WIDTH, max(map(len, names), default=0))
    lines: list[str] = []
    for subject, checks in results.items():
        lines.append(subject)
        for check in checks:
            lines += format_check(check, name_width)
    lines.append(_summary([check for checks in results.values() for check in checks]))
    return "\n".join(lines) + "\n"


def _summary(checks: Sequence[RecordCheck]) -> str:
    counts = {status: sum(check.status == status for check in checks)
              for status in ("missing", "wrong", "error")}
    if not any(counts.values()):
        return f"all {len(checks)} records are ok"
    parts = [f"{count} {status}" for status, count in counts.items() if count]
    return (f"{sum(counts.values())} of {len(checks)} records need attention "
            f"({', '.join(parts)})")
