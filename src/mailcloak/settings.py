"""Mailcloak's settings: one declared table, read from MAILCLOAK_* environment variables.

Every setting is declared once in SETTINGS with its default and its documentation; the README's
configuration table is generated from it (`mailcloak settings --markdown`) and a test keeps the
two in step. A bad value raises ConfigError with a one-line message naming the setting.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "MAILCLOAK_"


class ConfigError(Exception):
    """A setting has a value Mailcloak cannot use; str() is a one-line explanation."""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    parse: Callable[[str], Any]
    doc: str

    @property
    def env(self) -> str:
        return PREFIX + self.name


# --- parsers: each takes the raw string and returns the value or raises ValueError ---------------


def parse_str(raw: str) -> str:
    return raw.strip()


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def parse_int(raw: str) -> int:
    value = int(raw.strip())
    if value < 0:
        raise ValueError("must not be negative")
    return value


def parse_positive_int(raw: str) -> int:
    value = int(raw.strip())
    if value <= 0:
        raise ValueError("must be a positive number")
    return value


def parse_key(raw: str) -> bytes:
    """A 256-bit key in base64 (standard or URL-safe alphabet); empty for none."""
    import base64
    import binascii

    value = raw.strip()
    if not value:
        return b""
    try:
        key = base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4),
                               validate=True)
    except binascii.Error:
        raise ValueError("expected 32 bytes in base64 (`openssl rand -base64 32`)") from None
    if len(key) != 32:
        raise ValueError(f"expected 32 bytes in base64, got {len(key)} bytes")
    return key


def parse_key_list(raw: str) -> tuple[bytes, ...]:
    return tuple(parse_key(part) for part in raw.split(",") if part.strip())


def parse_size(raw: str) -> int:
    """Bytes, with an optional K/M/G suffix (powers of 1000, as SMTP SIZE counts)."""
    value = raw.strip().upper().removesuffix("B")
    factor = {"K": 1000, "M": 1000**2, "G": 1000**3}.get(value[-1:], 1)
    number = int(value[:-1] if factor != 1 else value)
    if number <= 0:
        raise ValueError("must be a positive size such as 25M")
    return number * factor


def parse_duration(raw: str) -> int:
    """Seconds, with an optional s/m/h/d suffix."""
    value = raw.strip().lower()
    factor = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(value[-1:], 1)
    number = int(value[:-1] if value[-1:].isalpha() else value)
    if number <= 0:
        raise ValueError("must be a positive duration such as 5d or 30m")
    return number * factor


def parse_domain_list(raw: str) -> tuple[str, ...]:
    domains = tuple(d.strip().lower().rstrip(".") for d in raw.split(",") if d.strip())
    for domain in domains:
        labels = domain.split(".")
        if not all(labels) or any(not lbl.replace("-", "").isalnum() for lbl in labels):
            raise ValueError(f"{domain!r} is not a domain name")
    return domains


def parse_hostport(raw: str, default_port: int = 25) -> HostPort:
    value = raw.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:
        host, port_text = value, ""
    if not host:
        raise ValueError("expected HOST:PORT")
    port = int(port_text) if port_text else default_port
    if not 0 <= port <= 65535:
        raise ValueError("port must be 0-65535")
    return HostPort(host, port)


def parse_http_url(raw: str) -> str:
    from urllib.parse import urlsplit

    value = raw.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL")
    parts.port  # noqa: B018 (raises ValueError for a bad port)
    return value


def parse_optional_hostport(raw: str) -> HostPort | None:
    return parse_hostport(raw) if raw.strip() else None


def parse_transports(raw: str) -> dict[str, HostPort]:
    """`example.test=[127.0.0.3]:25,other.test=127.0.0.4:2526` -> {domain: HostPort}."""
    routes: dict[str, HostPort] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        domain, sep, target = item.partition("=")
        if not sep or not domain.strip():
            raise ValueError(f"{item!r} is not DOMAIN=HOST:PORT")
        routes[domain.strip().lower().rstrip(".")] = parse_hostport(target)
    return routes


def parse_ip_list(raw: str) -> tuple[str, ...]:
    import ipaddress

    items = tuple(part.strip() for part in raw.split(",") if part.strip())
    for item in items:
        host = item.rsplit(":", 1)[0] if item.count(":") == 1 else item
        ipaddress.ip_address(host.strip("[]"))
    return items


def parse_report_address(raw: str) -> str:
    """A mailbox for DNS-published report addresses (`mailto:` URIs in TXT records)."""
    value = raw.strip()
    local, at, domain = value.rpartition("@")
    if value and (not at or not local or "." not in domain
                  or any(c.isspace() or c in ",;!<>\"" for c in value)):
        raise ValueError("expected one email address such as reports@example.org")
    return value


def parse_mta_sts_max_age(raw: str) -> int:
    seconds = parse_duration(raw)
    if seconds > 31_557_600:  # RFC 8461 3.2: at most about one year
        raise ValueError("at most one year (365d)")
    return seconds


def parse_record_days(raw: str) -> int:
    days = parse_positive_int(raw)
    if days < 7:
        raise ValueError("at least 7 days (sending reputation looks back 7 days)")
    return days


def parse_mode(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"local", "production"}:
        raise ValueError("expected local or production")
    return value


def parse_database_url(raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith(("sqlite:", "postgres://", "postgresql://")):
        raise ValueError("expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST/NAME")
    return value


def parse_name_format(raw: str) -> str:
    """A str.format template using only {name} and {address}."""
    import string

    value = raw.strip()
    try:
        fields = {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
        if not fields <= {"name", "address"}:
            raise ValueError("only {name} and {address} may be used")
        value.format(name="Name", address="name@example.org")
    except ValueError as exc:
        raise ValueError(f"not a usable template: {exc}") from None
    return value


@dataclass(frozen=True)
class Rate:
    """At most `count` per `seconds` (a fixed window)."""

    count: int
    seconds: int

    def __str__(self) -> str:
        unit = {1: "s", 60: "m", 3600: "h", 86400: "d"}.get(self.seconds)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.seconds}s"


_RATE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rates(raw: str) -> tuple[Rate, ...]:
    """Comma-separated limits such as `100/h,500/d` (units s, m, h, d); empty for none."""
    rates = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        count, _, unit = item.partition("/")
        if unit.strip().lower() not in _RATE_UNITS or not count.strip().isdigit():
            raise ValueError(f"{item!r} is not a limit like 100/h (units s, m, h, d)")
        rates.append(Rate(int(count), _RATE_UNITS[unit.strip().lower()]))
    return tuple(rates)


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return value

    return parse


def parse_score(raw: str) -> float:
    """Spam points (SpamAssassin-style scale), e.g. 5 or 7.5."""
    value = float(raw.strip())
    if value != value or value in {float("inf"), float("-inf")}:
        raise ValueError("expected a number of points such as 5 or 7.5")
    return value


def parse_optional_bool(raw: str) -> bool | None:
    """true, false, or empty for "decide from the mode"."""
    return None if raw.strip().lower() in {"", "auto"} else parse_bool(raw)


SETTINGS: tuple[Setting, ...] = (
    Setting("MODE", "local", parse_mode,
            "`local` (try it on one machine: self-signed TLS, undeliverable mail shown in the "
            "web app's local outbox) or `production` (real delivery only, secure cookies, "
            "refuses to start with insecure settings)."),
    Setting("DATA_DIR", "./var", parse_str,
            "Where Mailcloak keeps its SQLite database, keys and generated certificates."),
    Setting("DATABASE_URL", "", parse_database_url,
            "Database URL. Empty means SQLite at `DATA_DIR/mailcloak.sqlite3`; "
            "`postgresql://user:pass@host/db` lets several nodes share one database."),
    Setting("DOMAINS", "alias.localhost", parse_domain_list,
            "Alias domains served by this instance, comma-separated; the first is the default."),
    Setting("HOSTNAME", "", parse_str,
            "The server's mail name used in the SMTP greeting, EHLO and Message-IDs "
            "(default: `mail.` + the first alias domain)."),
    Setting("WEB_LISTEN", "127.0.0.1:8000", lambda raw: parse_hostport(raw, 8000),
            "Address and port of the web app."),
    Setting("SMTP_LISTEN", "127.0.0.1:2525", parse_hostport,
            "Address and port of the SMTP server (port 25 in production)."),
    Setting("PUBLIC_URL", "", parse_str,
            "Base URL of the web app as users reach it, used in emailed links "
            "(default: `http://` + WEB_LISTEN)."),
    Setting("SECRET_KEY", "", parse_str,
            "Key for signing sessions and links. When unset one is generated into "
            "`DATA_DIR/secret_key` on first run."),
    Setting("SIGNUPS", "true", parse_bool,
            "Whether new users may sign up in the web app (turn off for single-user hosting)."),
    Setting("MAX_MESSAGE_SIZE", "25M", parse_size,
            "Largest message accepted, announced in EHLO SIZE and enforced with 552 5.3.4."),
    Setting("MAX_RECIPIENTS", "50", parse_int,
            "Most RCPT TO per message; more get 452 4.5.3."),
    Setting("MAX_CONNECTIONS", "200", parse_int,
            "Most simultaneous SMTP connections per process; more get 421 4.7.0."),
    Setting("TLS_CERT", "", parse_str,
            "PEM certificate chain for STARTTLS (a self-signed one is generated in local mode)."),
    Setting("TLS_KEY", "", parse_str, "PEM private key for TLS_CERT."),
    Setting("RELAYHOST", "", parse_optional_hostport,
            "Send all outbound mail through this smarthost (`host:port`) instead of direct to MX."),
    Setting("RELAYHOST_USERNAME", "", parse_str, "SMTP AUTH user name for RELAYHOST."),
    Setting("RELAYHOST_PASSWORD", "", parse_str, "SMTP AUTH password for RELAYHOST."),
    Setting("TRANSPORTS", "", parse_transports,
            "Per-domain routes that override MX lookup, e.g. "
            "`example.test=[127.0.0.3]:25,other.test=[127.0.0.4]:2526`."),
    Setting("DNS_SERVERS", "", parse_ip_list,
            "Resolvers to use instead of the system's (`127.0.0.1:5353` style entries allowed)."),
    Setting("DNSBL", "", parse_domain_list,
            "DNS blocklist zones to look the connecting IP up in, comma-separated, e.g. "
            "`zen.spamhaus.org` (empty: off; most lists need registration for commercial or "
            "high-volume use)."),
    Setting("URIBL", "", parse_domain_list,
            "DNS blocklist zones for the domains of links in a message, comma-separated, e.g. "
            "`dbl.spamhaus.org` (empty: off)."),
    Setting("MTA_STS_MODE", "testing", parse_choice("testing", "enforce"),
            "MTA-STS policy mode served at `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`: "
            "`testing` (senders only report TLS failures) or `enforce` (senders refuse to "
            "deliver without valid TLS to the MX; switch once TLS reports show no failures)."),
    Setting("MTA_STS_MAX_AGE", "7d", parse_mta_sts_max_age,
            "How long senders cache the MTA-STS policy (at most 365d)."),
    Setting("REPORTS_ADDRESS", "", parse_report_address,
            "Mailbox that receives DMARC aggregate reports and TLS-RPT reports, published by "
            "`mailcloak dns` (empty: DMARC without reports and a TLS-RPT record to complete)."),
    Setting("MAX_QUEUE_LIFETIME", "5d", parse_duration,
            "How long a message keeps being retried before it bounces."),
    Setting("DELIVERY_WORKERS", "16", parse_int,
            "Concurrent outbound deliveries per worker process."),
    Setting("DELIVERY_CONCURRENCY_PER_DOMAIN", "8", parse_int,
            "Most simultaneous connections to one destination domain per worker process."),
    Setting("SMTP_PROCESSES", "1", parse_int,
            "SMTP server processes sharing the port (SO_REUSEPORT) for `mailcloak smtpd`."),
    Setting("EVENT_LOOP", "uvloop", parse_choice("uvloop", "asyncio"),
            "Event loop of the SMTP server, the delivery workers and `mailcloak run`: `uvloop` "
            "(faster; asyncio's own loop where uvloop is not installed) or `asyncio`."),
    Setting("SENDER_NAME_FORMAT", "{name} ({address}) via Mailcloak", parse_name_format,
            "Display name of forwarded mail's From; `{name}` and `{address}` are the original "
            "sender's."),
    Setting("SPAM_ENGINE", "builtin", parse_choice("builtin", "rspamd", "spamassassin"),
            "Spam engine: `builtin` (no extra service), `rspamd` or `spamassassin` (spamd)."),
    Setting("RSPAMD_URL", "http://127.0.0.1:11333", parse_http_url,
            "Rspamd's normal worker, for scans (SPAM_ENGINE=rspamd)."),
    Setting("RSPAMD_CONTROLLER_URL", "http://127.0.0.1:11334", parse_http_url,
            "Rspamd's controller, for learning from the quarantine's spam / not spam actions."),
    Setting("RSPAMD_PASSWORD", "", parse_str, "Password of Rspamd's controller, if it has one."),
    Setting("SPAMD_ADDRESS", "127.0.0.1:783", lambda raw: parse_hostport(raw, 783),
            "SpamAssassin's spamd (SPAM_ENGINE=spamassassin); learning needs spamd's "
            "`--allow-tell`."),
    Setting("SPAM_TIMEOUT", "10s", parse_duration,
            "How long a scan by Rspamd or spamd may take; past it, or with the engine down, "
            "the sender is told to retry (451 4.7.1)."),
    Setting("SPAM_QUARANTINE_SCORE", "5", parse_score,
            "Spam score at which mail is held in its owner's quarantine (normal sensitivity; "
            "relaxed adds 2 points, strict takes 2 away)."),
    Setting("SPAM_REJECT_SCORE", "10", parse_score,
            "Spam score at which mail is refused during SMTP (550 5.7.1), same shifts."),
    Setting("SPAM_TEST_PATTERNS", "auto", parse_optional_bool,
            "Whether the quarantine test pattern (GTUBE with `YJS` for `XJS`) is honoured: "
            "`auto` means on in local mode, off in production. The standard GTUBE is always "
            "rejected."),
    Setting("SPAM_SCAN_LIMIT", "256K", parse_size,
            "Bytes of each text part the builtin engine's classifier reads; longer parts are "
            "truncated, never skipped."),
    Setting("SPAM_MODEL", "", parse_str,
            "Model file for the builtin engine (made by `mailcloak spam train`); empty means "
            "the model shipped with Mailcloak."),
    Setting("QUARANTINE_DAYS", "7", parse_positive_int,
            "Days blocked mail stays in its owner's quarantine (and rejections in its log) "
            "before it is deleted for good."),
    Setting("DELIVERY_RECORD_DAYS", "30", parse_record_days,
            "Days the record of a delivered or bounced message (envelope sender, recipients, "
            "receiving server, last error) and the bounces and refused replies shown to alias "
            "owners are kept before they are deleted (at least 7, the span sending reputation "
            "looks at). The content itself goes as soon as the message is delivered."),
    Setting("QUARANTINE_KEY", "", parse_key,
            "Key that encrypts quarantined mail (32 bytes, base64). When unset one is generated "
            "into `DATA_DIR/quarantine.key` on first use; nodes sharing a database need the "
            "same key."),
    Setting("QUARANTINE_OLD_KEYS", "", parse_key_list,
            "Earlier quarantine keys, comma-separated, still used to read mail stored before "
            "a key rotation (see docs/quarantine.md)."),
    Setting("SEND_MESSAGES_PER_USER", "100/h,500/d", parse_rates,
            "Messages a user may send from all their aliases (replies and new conversations), "
            "e.g. `100/h,500/d`; over it the sender gets 452 4.7.1. Counted in the database, "
            "so the limit holds across every node."),
    Setting("SEND_RECIPIENTS_PER_USER", "200/h,1000/d", parse_rates,
            "Recipients a user may send to from all their aliases, per hour and per day."),
    Setting("SEND_MESSAGES_PER_ALIAS", "50/h,200/d", parse_rates,
            "Messages one alias may send."),
    Setting("SEND_RECIPIENTS_PER_ALIAS", "100/h,400/d", parse_rates,
            "Recipients one alias may send to."),
    Setting("ALIAS_CREATIONS_PER_USER", "50/h,300/d", parse_rates,
            "Aliases a user may create (web, API and command line together)."),
    Setting("CATCH_ALL_CREATIONS_PER_DOMAIN", "20/h", parse_rates,
            "Aliases a catch-all may create on one user domain (mail to an unknown address "
            "there creates it); over it the sender gets 450 4.7.1 and tries again later."),
    Setting("DOMAIN_CHECK_INTERVAL", "6h", parse_duration,
            "How often the workers check the DNS records of users' own domains."),
    Setting("DOMAIN_VERIFICATION_GRACE", "24h", parse_duration,
            "How long a verified user domain may fail its checks (and at least 3 in a row) "
            "before it stops taking mail, so one DNS outage does not bounce mail."),
    Setting("NEW_ACCOUNT_DAYS", "7", parse_int,
            "Accounts younger than this many days get the reduced limits below."),
    Setting("NEW_ACCOUNT_LIMIT_PERCENT", "20", parse_positive_int,
            "Percentage of every sending limit that new accounts get (at least 1)."),
    Setting("PAUSE_BOUNCE_PERCENT", "10", parse_positive_int,
            "Sending from an alias (or from all of a user's aliases) is paused when this "
            "share of its recipients over the last 7 days bounced; an operator resumes it in "
            "the admin."),
    Setting("PAUSE_COMPLAINT_PERCENT", "1", parse_positive_int,
            "Likewise for spam complaints (feedback reports) about mail sent from aliases."),
    Setting("PAUSE_MIN_RECIPIENTS", "20", parse_positive_int,
            "Recipients over the last 7 days below which sending is never paused (too few to "
            "judge)."),
    Setting("LOG_LEVEL", "info", parse_choice("debug", "info", "warning", "error"),
            "Log verbosity."),
    Setting("LOG_FORMAT", "text", parse_choice("text", "json"),
            "Log lines as `key=value` text or as one JSON object per line. Either way they "
            "carry queue ids, decisions and reply codes, never message content."),
    Setting("LOG_ADDRESSES", "false", parse_bool,
            "Log full email addresses, for debugging. Off: an address is logged as a keyed "
            "hash of its local part and its domain (`[3f9a0c1be2]@example.org`)."),
    Setting("METRICS_TOKEN", "", parse_str,
            "Bearer token that Prometheus must send to read `/metrics` (empty: no metrics "
            "endpoint)."),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Config:
    """Parsed settings. Attribute names are the setting names in lower case."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name.upper()]
        except KeyError:
            raise AttributeError(name) from None

    @functools.cached_property
    def data_path(self) -> Path:
        # Resolved once: the DKIM keys and the database are found through it for every
        # message, and resolve() is a system call per path component.
        return Path(self.values["DATA_DIR"]).resolve()

    @property
    def primary_domain(self) -> str:
        return str(self.values["DOMAINS"][0])

    @property
    def is_production(self) -> bool:
        return bool(self.values["MODE"] == "production")


def load(environ: Mapping[str, str] | None = None, *, create_secret: bool = True) -> Config:
    """Read every setting from `environ`, apply defaults and derived values, validate."""
    env = os.environ if environ is None else environ
    unknown = sorted(k for k in env if k.startswith(PREFIX) and k[len(PREFIX):] not in _BY_NAME
                     and not k.startswith(PREFIX + "TEST_"))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown setting (see the README's configuration table)")
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.env, setting.default)
        try:
            values[setting.name] = setting.parse(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{setting.env}={raw!r}: {exc}") from None
    _derive(values, create_secret=create_secret)
    if values["MODE"] == "production":
        _check_production(values)
    return Config(values)


def _derive(values: dict[str, Any], *, create_secret: bool) -> None:
    data_dir = Path(values["DATA_DIR"]).expanduser()
    values["DATA_DIR"] = str(data_dir)
    if not values["DOMAINS"]:
        raise ConfigError("MAILCLOAK_DOMAINS: at least one alias domain is required")
    if not values["HOSTNAME"]:
        values["HOSTNAME"] = "mail." + values["DOMAINS"][0]
    if not values["DATABASE_URL"]:
        values["DATABASE_URL"] = f"sqlite:///{(data_dir / 'mailcloak.sqlite3').resolve()}"
    if not values["PUBLIC_URL"]:
        values["PUBLIC_URL"] = f"http://{values['WEB_LISTEN']}"
    values["PUBLIC_URL"] = values["PUBLIC_URL"].rstrip("/")
    if bool(values["TLS_CERT"]) != bool(values["TLS_KEY"]):
        raise ConfigError("MAILCLOAK_TLS_CERT and MAILCLOAK_TLS_KEY must be set together")
    if not values["SECRET_KEY"]:
        values["SECRET_KEY"] = _stored_secret(data_dir, create=create_secret)


def _stored_secret(data_dir: Path, *, create: bool) -> str:
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    if not create:
        return "not-yet-generated-" + "x" * 40
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"MAILCLOAK_DATA_DIR={str(data_dir)!r}: cannot write: {exc}") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def _check_production(values: dict[str, Any]) -> None:
    """Production refuses settings that only make sense on a test machine."""
    for domain in values["DOMAINS"]:
        if domain == "localhost" or domain.endswith((".localhost", ".test", ".invalid")):
            raise ConfigError(f"MAILCLOAK_DOMAINS: {domain!r} is not a public domain "
                              "(production mode)")
    if not values["PUBLIC_URL"].startswith("https://"):
        raise ConfigError("MAILCLOAK_PUBLIC_URL: production mode needs an https:// URL")
    if not values["TLS_CERT"]:
        raise ConfigError("MAILCLOAK_TLS_CERT: production mode needs a TLS certificate for SMTP")
    if len(values["SECRET_KEY"]) < 32:
        raise ConfigError("MAILCLOAK_SECRET_KEY: production mode needs at least 32 characters")


def markdown_table() -> str:
    """The README's configuration table."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for setting in SETTINGS:
        default = f"`{setting.default}`" if setting.default else "(empty)"
        lines.append(f"| `{setting.env}` | {default} | {setting.doc} |")
    return "\n".join(lines)


_current: Config | None = None


def get() -> Config:
    """The process-wide configuration, loaded once from the environment."""
    global _current
    if _current is None:
        _current = load()
    return _current


def reset() -> None:
    """Forget the loaded configuration (tests change the environment)."""
    global _current
    _current = None
