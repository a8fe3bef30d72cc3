"""Which spam engine scans, and with which thresholds.

    engine = get_engine()                               # MAILCLOAK_SPAM_ENGINE, made once
    verdict = await engine.scan(request, thresholds_for(owner.spam_sensitivity))

Also what the adapters for external engines (Rspamd, spamd) share: the peer's verified host
name, which they pass on as an MTA would, and the quarantine test pattern, which every engine
honours when MAILCLOAK_SPAM_TEST_PATTERNS allows it (the standard GTUBE needs no help: both
daemons reject it themselves).
"""

from __future__ import annotations

import asyncio
import ipaddress

from mailcloak import settings as mailcloak_settings
from mailcloak.mail import dns as mail_dns
from mailcloak.mail.spam import testpatterns
from mailcloak.mail.spam.verdict import Sensitivity, SpamEngine, Thresholds, Verdict

HOSTNAME_LOOKUP_TIMEOUT = 2.0

_engine: tuple[mailcloak_settings.Config, SpamEngine] | None = None


def get_engine() -> SpamEngine:
    """The engine MAILCLOAK_SPAM_ENGINE names, built once per process (and again only when the
    settings are reloaded, as tests do)."""
    global _engine
    config = mailcloak_settings.get()
    if _engine is None or _engine[0] is not config:
        _engine = (config, build_engine(config))
    return _engine[1]


def build_engine(config: mailcloak_settings.Config) -> SpamEngine:
    """A new engine for `config`; the modules of engines not chosen are never imported."""
    if config.spam_engine == "rspamd":
        from mailcloak.mail.spam.rspamd import RspamdEngine

        return RspamdEngine.from_settings(config)
    if config.spam_engine == "spamassassin":
        from mailcloak.mail.spam.spamassassin import SpamAssassinEngine

        return SpamAssassinEngine.from_settings(config)
    from mailcloak.mail.spam.builtin import BuiltinEngine

    return BuiltinEngine.from_settings(config)


def reset_engine() -> None:
    """Forget the engine (the next get_engine() builds a new one)."""
    global _engine
    _engine = None


def base_thresholds(config: mailcloak_settings.Config | None = None) -> Thresholds:
    """The thresholds the settings give (MAILCLOAK_SPAM_QUARANTINE_SCORE and _REJECT_SCORE),
    before any owner's sensitivity."""
    config = config or mailcloak_settings.get()
    return Thresholds(quarantine=float(config.spam_quarantine_score),
                      reject=float(config.spam_reject_score))


def thresholds_for(sensitivity: Sensitivity | str = Sensitivity.NORMAL) -> Thresholds:
    """The thresholds for an owner who picked `sensitivity` (relaxed / normal / strict)."""
    return base_thresholds().shifted(Sensitivity(sensitivity))


async def verified_hostname(ip: str) -> str:
    """The peer's forward-confirmed reverse DNS name, or "unknown" as MTAs say when there is
    none (or DNS did not answer in time)."""
    try:
        address = ipaddress.ip_address(ip)
        resolver = mail_dns.get_resolver()
        async with asyncio.timeout(HOSTNAME_LOOKUP_TIMEOUT):
            for name in (await resolver.ptr(ip))[:3]:
                forward = await resolver.addresses(name)
                if any(ipaddress.ip_address(found) == address for found in forward):
                    return name
    except (ValueError, TimeoutError, mail_dns.DnsError):
        pass
    return "unknown"


def quarantine_pattern_enabled(config: mailcloak_settings.Config) -> bool:
    """MAILCLOAK_SPAM_TEST_PATTERNS, by default (auto) on in local mode and off in production."""
    configured = config.spam_test_patterns
    return (not config.is_production) if configured is None else bool(configured)


def quarantine_test_pattern(raw: bytes, thresholds: Thresholds, *, engine: str) -> Verdict | None:
    """The quarantine verdict when the message carries the quarantine test pattern."""
    if testpatterns.find(raw) is not testpatterns.TestPattern.QUARANTINE:
        return None
    return testpatterns.verdict(testpatterns.TestPattern.QUARANTINE, thresholds,
                                variants_enabled=True, engine=engine)
