"""`mailcloak check`: is this installation ready to run, and if not, what to do about it.

Each check prints one line, `ok`, `warn` or `FAIL`, and a failing one says how to fix it. The
exit status is 1 when anything failed, so the command also serves as a container HEALTHCHECK
and as a step before restarting services after an upgrade. The checks apply no migration,
create no DKIM key and leave no port bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import errno
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.replies import GREETING_IDENT

Status = Literal["ok", "warn", "FAIL"]
CERT_WARN_DAYS = 14
PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Result:
    status: Status
    check: str
    message: str
    fix: str = ""

    def line(self) -> str:
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"{self.status:<4}  {self.check}: {self.message}{fix}"


def ok(check: str, message: str) -> Result:
    return Result("ok", check, message)


def warn(check: str, message: str, fix: str = "") -> Result:
    return Result("warn", check, message, fix)


def fail(check: str, message: str, fix: str) -> Result:
    return Result("FAIL", check, message, fix)


# --- settings --------------------------------------------------------------------------------


def check_settings() -> tuple[Result, mailcloak_settings.Config | None]:
    try:
        config = mailcloak_settings.load(create_secret=False)
    except mailcloak_settings.ConfigError as exc:
        return fail("settings", str(exc), "correct the variable in the environment file"), None
    domains = ", ".join(config.domains)
    if not config.is_production:
        return warn("settings", f"local mode (domains {domains})",
                    "set MAILCLOAK_MODE=production on a server that receives real mail"), config
    summary = f"production mode, domains {domains}, mail name {config.hostname}"
    return ok("settings", summary), config


# --- database --------------------------------------------------------------------------------


def check_database() -> Iterator[Result]:
    from django.db import DatabaseError, connection
    from django.db.migrations.executor import MigrationExecutor

    where = _database_description()
    if connection.vendor == "sqlite" and not Path(connection.settings_dict["NAME"]).exists():
        yield fail("database", f"no database yet ({where})", "run `mailcloak migrate`")
        return
    try:
        connection.ensure_connection()
    except DatabaseError as exc:
        yield fail("database", f"cannot connect to {where}: {_first_line(exc)}",
                   "check MAILCLOAK_DATABASE_URL and that the database server is running")
        return
    yield ok("database", f"connected to {where}")
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        yield fail("migrations", f"cannot read the applied migrations: {_first_line(exc)}",
                   "run `mailcloak migrate`")
        return
    if plan:
        first = plan[0][0]
        yield fail("migrations", f"{len(plan)} not applied (first: {first.app_label}."
                                 f"{first.name})", "run `mailcloak migrate`")
    else:
        yield ok("migrations", "the database schema is up to date")


def _database_description() -> str:
    from django.db import connection

    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"SQLite at {params['NAME']}"
    host = params.get("HOST") or "local socket"
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return f"{connection.vendor} database {params.get('NAME')!r} on {host}{port}"


def _first_line(exc: BaseException) -> str:
    return next(iter(str(exc).strip().splitlines()), type(exc).__name__)


# --- keys and certificates -------------------------------------------------------------------


def check_dkim(config: mailcloak_settings.Config) -> Result:
    from mailcloak.mail.dkimkeys import DkimKeyError, key_directory, load_keys

    directory = key_directory(config)
    try:
        keys = load_keys(directory)
    except DkimKeyError as exc:
        if not config.is_production:
            return warn("dkim", f"{exc} (local mode creates them on first use)")
        return fail("dkim", str(exc), "run `mailcloak dkim init`, then publish the records "
                                      "`mailcloak dns` prints")
    names = ", ".join(f"{key.selector} ({key.algorithm})" for key in keys)
    return ok("dkim", f"signing keys {names} in {directory}")


def check_tls(config: mailcloak_settings.Config,
              now: datetime.datetime | None = None) -> Result:
    from mailcloak.mail.tls import server_context

    if not config.tls_cert:
        return ok("tls", "self-signed certificate for STARTTLS (local mode)")
    fix = ("point MAILCLOAK_TLS_CERT and MAILCLOAK_TLS_KEY at the certificate your ACME client "
           "renews, readable by the mailcloak user")
    try:
        server_context(config)  # the key matches and both files are readable, as smtpd loads them
        certificate = x509.load_pem_x509_certificates(Path(config.tls_cert).read_bytes())[0]
    except (mailcloak_settings.ConfigError, OSError, ValueError) as exc:
        return fail("tls", str(exc), fix)
    now = now or datetime.datetime.now(datetime.UTC)
    left = certificate.not_valid_after_utc - now
    expiry = certificate.not_valid_after_utc.strftime("%Y-%m-%d")
    renew = ("renew it (your ACME client's renewal), then restart mailcloak-smtpd, which "
             "reads the certificate when it starts")
    if left <= datetime.timedelta(0):
        return fail("tls", f"certificate {config.tls_cert} expired on {expiry}", renew)
    if left < datetime.timedelta(days=CERT_WARN_DAYS):
        return warn("tls", f"certificate {config.tls_cert} expires in {left.days} days "
                           f"({expiry})", renew)
    if not _certificate_covers(certificate, config.hostname):
        return warn("tls", f"certificate {config.tls_cert} does not name {config.hostname}",
                    "get a certificate for the mail name MAILCLOAK_HOSTNAME")
    return ok("tls", f"certificate for {config.hostname} valid until {expiry}")


def _certificate_covers(certificate: x509.Certificate, hostname: str) -> bool:
    """Whether the certificate's DNS names cover `hostname` (a wildcard covers one label)."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    parent = hostname.partition(".")[2]
    return any(name.lower() in {hostname, f"*.{parent}"}
               for name in extension.value.get_values_for_type(x509.DNSName))


# --- ports -----------------------------------------------------------------------------------


def check_port(check: str, listen: mailcloak_settings.HostPort, setting: str,
               greeting: str = "") -> Result:
    """Whether our service can listen on `listen`, or already does. `greeting` is the SMTP
    server's, which tells ours apart when the process on the port cannot be seen."""
    try:
        family, _, _, _, address = socket.getaddrinfo(listen.host, listen.port,
                                                      type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        return fail(check, f"{listen}: {exc.strerror}", f"set {setting} to an address of "
                                                        "this machine")
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind(address)
        except OSError as exc:
            return _port_refused(check, listen, setting, exc, greeting)
    return ok(check, f"{listen} is free to listen on")


def _port_refused(check: str, listen: mailcloak_settings.HostPort, setting: str,
                  exc: OSError, greeting: str = "") -> Result:
    if exc.errno == errno.EADDRINUSE:
        owner = listening_owner(listen.port)
        if owner is not None and owner.mailcloak_command:
            return ok(check, f"{listen} is served by our own `{owner.mailcloak_command}` "
                             f"(pid {owner.pid})")
        if owner is None and greeting and first_line_from(listen) == greeting:
            return ok(check, f"{listen} is served by our SMTP server ({greeting!r})")
        return fail(check, f"{listen} is already in use by {_describe(owner)}",
                    f"stop that service or set {setting} to another address")
    if exc.errno == errno.EACCES:
        # A warning: this command may lack the privilege that the service itself is given.
        return warn(check, f"{listen} needs a privilege this process lacks (ports below 1024)",
                    "run the service with CAP_NET_BIND_SERVICE, as mailcloak-smtpd.service "
                    "does (AmbientCapabilities=); never run Mailcloak as root")
    return fail(check, f"{listen}: {exc.strerror or exc}",
                f"set {setting} to an address of this machine")


def first_line_from(listen: mailcloak_settings.HostPort) -> str:
    """The first line a server on `listen` sends (an SMTP greeting), "" if none comes."""
    wildcards = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 (connects, binds nothing)
    host = wildcards.get(listen.host, listen.host)
    try:
        with socket.create_connection((host, listen.port), timeout=PROBE_TIMEOUT) as conn:
            return conn.makefile("rb").readline(512).decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class PortOwner:
    pid: int
    command: str  # its command line

    @property
    def mailcloak_command(self) -> str | None:
        """`mailcloak smtpd` when this is a mailcloak command (script or `python -m`)."""
        words = self.command.split()
        for position, word in enumerate(words[:3]):
            if Path(word).name == "mailcloak":
                return " ".join(["mailcloak", *words[position + 1:]])
        return None


def listening_owner(port: int, proc: Path = Path("/proc")) -> PortOwner | None:
    """The process listening on TCP `port`, found through /proc (Linux), if this user may see
    it."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port, proc)}
    if not wanted:
        return None
    for pid_dir in proc.iterdir():
        if pid_dir.name.isdigit() and wanted & _open_sockets(pid_dir):
            try:
                raw = (pid_dir / "cmdline").read_bytes()
            except OSError:
                continue  # it has just exited
            return PortOwner(int(pid_dir.name), raw.replace(b"\0", b" ").decode(
                errors="replace").strip())
    return None


def _open_sockets(pid_dir: Path) -> set[str]:
    found: set[str] = set()
    try:
        descriptors = list((pid_dir / "fd").iterdir())
    except OSError:
        return found  # gone, or another user's process
    for descriptor in descriptors:
        with contextlib.suppress(OSError):  # closed meanwhile
            found.add(os.readlink(descriptor))
    return found


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def _describe(owner: PortOwner | None) -> str:
    if owner is None:
        return "another process (not visible to this user)"
    return f"`{owner.command}` (pid {owner.pid})"


# --- spam engine -----------------------------------------------------------------------------


def check_spam_engine(config: mailcloak_settings.Config) -> Result:
    engine = config.spam_engine
    if engine == "rspamd":
        return _ping_rspamd(config)
    if engine == "spamassassin":
        return _ping_spamd(config)
    if config.spam_model and not Path(config.spam_model).is_file():
        return fail("spam", f"MAILCLOAK_SPAM_MODEL={config.spam_model} is not a file",
                    "train one with `mailcloak spam train`, or unset it to use the shipped model")
    return ok("spam", "builtin engine (no service needed)")


# Straight to Rspamd, as the scanner connects: never through an HTTP proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _ping_rspamd(config: mailcloak_settings.Config) -> Result:
    fix = "start Rspamd (systemctl start rspamd) or correct MAILCLOAK_RSPAMD_URL"
    for setting, url in (("MAILCLOAK_RSPAMD_URL", config.rspamd_url),
                         ("MAILCLOAK_RSPAMD_CONTROLLER_URL", config.rspamd_controller_url)):
        try:
            with _DIRECT.open(url + "/ping", timeout=PROBE_TIMEOUT) as reply:
                body = reply.read(64)
        except (OSError, urllib.error.URLError) as exc:
            reason = getattr(exc, "reason", None) or exc
            return fail("spam", f"rspamd at {url} ({setting}) is unreachable: {reason}",
                        fix.replace("MAILCLOAK_RSPAMD_URL", setting))
        if body.strip() != b"pong":
            return fail("spam", f"{url} ({setting}) did not answer like Rspamd", fix)
    return ok("spam", f"rspamd answers at {config.rspamd_url} and {config.rspamd_controller_url}")


def _ping_spamd(config: mailcloak_settings.Config) -> Result:
    address = config.spamd_address
    fix = "start spamd or correct MAILCLOAK_SPAMD_ADDRESS"
    try:
        reply = asyncio.run(spamd_ping(address.host, address.port))
    except TimeoutError:
        return fail("spam", f"spamd at {address} did not answer within {PROBE_TIMEOUT:g}s", fix)
    except OSError as exc:
        return fail("spam", f"spamd at {address} is unreachable: {exc.strerror or exc}", fix)
    if not reply.startswith(b"SPAMD/") or b"PONG" not in reply:
        return fail("spam", f"{address} did not answer like spamd",
                    "correct MAILCLOAK_SPAMD_ADDRESS")
    return ok("spam", f"spamd answers at {address}")


async def spamd_ping(host: str, port: int) -> bytes:
    """spamd's PING: `SPAMD/1.5 0 PONG` from a healthy daemon."""
    async with asyncio.timeout(PROBE_TIMEOUT):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"PING SPAMC/1.5\r\n\r\n")
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()


# --- DNS -------------------------------------------------------------------------------------


def check_dns(config: mailcloak_settings.Config, ips: Sequence[str]) -> Iterator[Result]:
    """What `mailcloak dns check` reports: every record of every domain, and the host's."""
    from mailcloak.mail.dkimkeys import DkimKeyError
    from mailcloak.mail.dnscheck import check_instance

    try:
        checked = check_instance(config.domains, ips, config=config)
    except DkimKeyError as exc:
        yield fail("dns", f"cannot tell which DKIM records to expect: {exc}",
                   "run `mailcloak dkim init`")
        return
    for records in checked.values():
        for record in records:
            check = f"dns {record.kind} {record.name}"
            if record.ok:
                yield ok(check, record.found or "as expected")
            else:
                found = f" (found {record.found})" if record.found else ""
                yield fail(check, f"{record.status}{found}", record.fix)


# --- running the checks ----------------------------------------------------------------------


def run_checks(*, dns: bool = False, ips: Sequence[str] = (),
               setup: Callable[[], None] | None = None) -> list[Result]:
    """Every check in order; the rest are skipped when the settings cannot be read. `setup`
    (Django's, for the command) runs once the settings are known to be good."""
    settings_result, config = check_settings()
    if config is None:
        return [settings_result]
    if setup is not None:
        try:
            setup()
        except (mailcloak_settings.ConfigError, OSError) as exc:
            return [settings_result, fail("data directory", str(exc),
                                          "create MAILCLOAK_DATA_DIR, writable by this user")]
    results = [settings_result, *check_database(), check_dkim(config), check_tls(config),
               check_port("smtp port", config.smtp_listen, "MAILCLOAK_SMTP_LISTEN",
                          greeting=f"220 {config.hostname} {GREETING_IDENT}"),
               check_port("web port", config.web_listen, "MAILCLOAK_WEB_LISTEN"),
               check_spam_engine(config)]
    if dns:
        results += check_dns(config, ips)
    return results


def cmd_check(args: argparse.Namespace) -> int:
    from mailcloak.cli import setup_django

    results = run_checks(dns=args.dns, ips=args.ip, setup=setup_django)
    for result in results:
        print(result.line())
    failed = sum(result.status == "FAIL" for result in results)
    warned = sum(result.status == "warn" for result in results)
    print(f"{failed} failed, {warned} warnings, {len(results) - failed - warned} ok")
    return 1 if failed else 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `mailcloak check` with the command line."""
    from mailcloak.mail.dns_cli import ip_address_argument

    help_text = ("check settings, database, keys, certificate, ports and spam engine; "
                 "exit status 1 if anything failed")
    check = sub.add_parser("check", help=help_text, description=help_text)
    check.add_argument("--dns", action="store_true",
                       help="also look up every DNS record `mailcloak dns` asks for")
    check.add_argument("--ip", action="append", default=[], type=ip_address_argument,
                       help="this server's public IP address, for the SPF and PTR checks")
    check.set_defaults(handler=cmd_check)
