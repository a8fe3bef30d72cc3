"""The Rspamd engine against a real Rspamd (with Redis for Bayes) on loopback.

Rspamd's DNS is a test DNS server on loopback that also serves our own lookups: SPF and reverse
DNS outcomes are real. Tests that need the daemons skip with the reason when Rspamd or Redis is
not installed (scripts/install-spam-daemons installs them; CI does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mailcloak.mail import dns as mail_dns
from mailcloak.mail.spam.rspamd import RspamdEngine, scan_headers, verdict_from_result
from mailcloak.mail.spam.verdict import (
    Action,
    Direction,
    EngineUnavailable,
    ScanRequest,
    Sensitivity,
    Thresholds,
)
from tests.support.daemons import (
    GTUBE,
    GTUBE_QUARANTINE,
    RspamdDaemon,
    canned_server,
    ham,
    message,
    missing,
    running_redis,
    running_rspamd,
    spammy,
)
from tests.support.dns_server import DnsServer
from tests.support.processes import free_port

THRESHOLDS = Thresholds(quarantine=5.0, reject=10.0)
KNOWN_PEER, UNKNOWN_PEER = "192.0.2.7", "192.0.2.99"


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    with DnsServer({"sender.test": {"TXT": ["v=spf1 ip4:192.0.2.7 -all"]},
                    "mx.sender.test": {"A": [KNOWN_PEER]}}) as server:
        server.add_ptr(KNOWN_PEER, "mx.sender.test")
        yield server


@pytest.fixture(scope="module")
def rspamd(dns_server: DnsServer) -> Iterator[RspamdDaemon]:
    if reason := missing("rspamd", "redis-server"):
        pytest.skip(reason)
    with running_redis() as redis, running_rspamd(redis=redis,
                                                  nameserver=dns_server.nameserver) as daemon:
        yield daemon


@pytest.fixture
def engine(rspamd: RspamdDaemon, dns_server: DnsServer) -> Iterator[RspamdEngine]:
    with mail_dns.use_resolver(dns_server.resolver()):
        yield RspamdEngine(rspamd.url, rspamd.controller_url, password=rspamd.password,
                           timeout=30)


# --- against the real daemon ---------------------------------------------------------------------


def test_gtube_is_rejected(engine: RspamdEngine) -> None:
    verdict = asyncio.run(engine.scan(ScanRequest(raw=GTUBE), THRESHOLDS))
    assert verdict.action is Action.REJECT
    assert verdict.engine == "rspamd"
    assert [(r.code, r.text) for r in verdict.reasons] == [("GTUBE", "Gtube pattern")]


def test_gtube_variant_is_quarantined_whatever_the_sensitivity(engine: RspamdEngine) -> None:
    relaxed = THRESHOLDS.shifted(Sensitivity.RELAXED)
    verdict = asyncio.run(engine.scan(ScanRequest(raw=GTUBE_QUARANTINE), relaxed))
    assert verdict.action is Action.QUARANTINE


def test_clean_message_is_delivered(engine: RspamdEngine) -> None:
    verdict = asyncio.run(engine.scan(ScanRequest(raw=ham()), THRESHOLDS))
    assert verdict.action is Action.DELIVER
    assert verdict.score < THRESHOLDS.quarantine


def test_reasons_say_what_failed_in_words(engine: RspamdEngine) -> None:
    request = ScanRequest(raw=ham(), peer_ip=UNKNOWN_PEER, helo="mx.sender.test",
                          mail_from="someone@sender.test", recipients=("k3v9@alias.test",))
    verdict = asyncio.run(engine.scan(request, THRESHOLDS))
    texts = {reason.code: reason.text for reason in verdict.reasons}
    assert texts["R_SPF_FAIL"] == "SPF verification failed (-all)"
    assert texts["FORGED_SENDER"].endswith("(ada@sender.test, someone@sender.test)")
    assert all(reason.score != 0 for reason in verdict.reasons)


def test_the_envelope_reaches_rspamd(engine: RspamdEngine) -> None:
    request = ScanRequest(raw=ham(), peer_ip=KNOWN_PEER, helo="mx.sender.test",
                          mail_from="ada@sender.test", recipients=("k3v9@alias.test",))
    codes = {reason.code for reason in asyncio.run(engine.scan(request, THRESHOLDS)).reasons}
    assert "R_SPF_ALLOW" in codes
    assert not codes & {"R_SPF_FAIL", "FORGED_SENDER"}


def test_international_addresses_do_not_look_broken(engine: RspamdEngine) -> None:
    for mail_from in ("ada@sendér.test", "jörg@sender.test"):
        request = ScanRequest(raw=ham(), mail_from=mail_from,
                              recipients=("k3v9@alias.test", "zoë@alias.test"))
        verdict = asyncio.run(engine.scan(request, THRESHOLDS))
        assert "BROKEN_HEADERS" not in {reason.code for reason in verdict.reasons}
        assert verdict.action is Action.DELIVER


def test_our_thresholds_decide_not_rspamds(engine: RspamdEngine) -> None:
    raw = spammy()
    verdict = asyncio.run(engine.scan(ScanRequest(raw=raw), THRESHOLDS))
    assert verdict.score > 0
    lower = Thresholds(quarantine=verdict.score - 0.01, reject=verdict.score + 50)
    assert asyncio.run(engine.scan(ScanRequest(raw=raw), lower)).action is Action.QUARANTINE
    lowest = Thresholds(quarantine=-100, reject=verdict.score - 0.01)
    assert asyncio.run(engine.scan(ScanRequest(raw=raw), lowest)).action is Action.REJECT


def test_learning_spam_and_ham_reaches_bayes(engine: RspamdEngine,
                                             rspamd: RspamdDaemon) -> None:
    before = rspamd.bayes_learns()
    asyncio.run(engine.learn(spammy(), is_spam=True))
    asyncio.run(engine.learn(ham(), is_spam=False))
    asyncio.run(engine.learn(ham(), is_spam=False))  # again: already learned, still fine
    after = rspamd.bayes_learns()
    assert after == {"spam": before["spam"] + 1, "ham": before["ham"] + 1}


def test_a_message_too_short_to_learn_is_declined_quietly(
        engine: RspamdEngine, rspamd: RspamdDaemon, caplog: pytest.LogCaptureFixture) -> None:
    before = rspamd.bayes_learns()
    asyncio.run(engine.learn(message("Hi", "ok\n"), is_spam=True))
    assert rspamd.bayes_learns() == before
    assert [r.getMessage() for r in caplog.records] == [
        "rspamd declined to learn a message (HTTP 204)"]


def test_learning_with_a_wrong_password_is_refused(rspamd: RspamdDaemon) -> None:
    engine = RspamdEngine(rspamd.url, rspamd.controller_url, password="wrong", timeout=30)
    with pytest.raises(EngineUnavailable, match="refused the password"):
        asyncio.run(engine.learn(spammy(), is_spam=True))


# --- when Rspamd cannot answer -------------------------------------------------------------------


def test_rspamd_down_is_engine_unavailable() -> None:
    port = free_port()
    engine = RspamdEngine(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}", timeout=5)
    with pytest.raises(EngineUnavailable, match="unreachable"):
        asyncio.run(engine.scan(ScanRequest(raw=ham()), THRESHOLDS))
    with pytest.raises(EngineUnavailable, match="unreachable"):
        asyncio.run(engine.learn(ham(), is_spam=False))


def test_rspamd_silent_is_engine_unavailable() -> None:
    with canned_server(None) as port:
        engine = RspamdEngine(f"http://127.0.0.1:{port}", "http://127.0.0.1:1", timeout=0.3)
        with pytest.raises(EngineUnavailable, match=r"did not answer within 0\.3s"):
            asyncio.run(engine.scan(ScanRequest(raw=ham()), THRESHOLDS))


@pytest.mark.parametrize(("reply", "message"), [
    (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 26\r\n\r\n"
     b'{"error":"out of workers"}', "HTTP 500: out of workers"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "not JSON"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", "without a score"),
    (b"SPAMD/1.1 0 EX_OK\r\n\r\n", "unreachable"),
    (b"", "unreachable"),
])
def test_unusable_replies_are_engine_unavailable(reply: bytes, message: str) -> None:
    with canned_server(reply) as port:
        engine = RspamdEngine(f"http://127.0.0.1:{port}", "http://127.0.0.1:1", timeout=5)
        with pytest.raises(EngineUnavailable, match=message):
            asyncio.run(engine.scan(ScanRequest(raw=ham()), THRESHOLDS))


# --- request and reply, without the daemon -------------------------------------------------------


def test_envelope_headers() -> None:
    request = ScanRequest(raw=b"", helo="mx.sender.test", mail_from="a@sender.test",
                          recipients=("x@alias.test", "y@alias.test"))
    assert asyncio.run(scan_headers(request)) == [
        ("Helo", "mx.sender.test"), ("From", "a@sender.test"),
        ("Rcpt", "x@alias.test"), ("Rcpt", "y@alias.test")]


def test_outbound_mail_is_sent_as_the_aliass_own() -> None:
    request = ScanRequest(raw=b"", direction=Direction.OUTBOUND, mail_from="k3v9@alias.test",
                          recipients=("friend@example.test",))
    assert ("User", "k3v9@alias.test") in asyncio.run(scan_headers(request))


def test_peer_without_verified_name_is_unknown(dns_server: DnsServer) -> None:
    with mail_dns.use_resolver(dns_server.resolver()):
        unknown = asyncio.run(scan_headers(ScanRequest(raw=b"", peer_ip=UNKNOWN_PEER)))
        known = asyncio.run(scan_headers(ScanRequest(raw=b"", peer_ip=KNOWN_PEER)))
    assert unknown == [("IP", UNKNOWN_PEER), ("Hostname", "unknown")]
    assert known == [("IP", KNOWN_PEER), ("Hostname", "mx.sender.test")]


def test_international_addresses_are_sent_as_rspamd_reads_them() -> None:
    request = ScanRequest(raw=b"", helo="mx.xn--sendr-esa.test", mail_from="ada@sendér.test",
                          recipients=("zoë@alias.test", "k3v9@alias.test"))
    assert asyncio.run(scan_headers(request)) == [
        ("Helo", "mx.xn--sendr-esa.test"), ("From", "ada@xn--sendr-esa.test"),
        ("Rcpt", "k3v9@alias.test")]


def test_header_values_stay_on_one_line() -> None:
    request = ScanRequest(raw=b"", helo="evil\r\nX-Injected: 1")
    assert asyncio.run(scan_headers(request)) == [("Helo", "evil X-Injected: 1")]


def result(score: float, action: str = "no action", *, skipped: bool = False,
           **symbols: dict[str, object]) -> dict[str, object]:
    return {"score": score, "action": action, "is_skipped": skipped, "symbols": symbols}


def test_rspamds_own_action_is_ignored_when_it_scored() -> None:
    assert verdict_from_result(result(6.3, "no action"), THRESHOLDS).action is Action.QUARANTINE
    assert verdict_from_result(result(12, "add header"), THRESHOLDS).action is Action.REJECT
    assert verdict_from_result(result(4.9, "reject"), THRESHOLDS).action is Action.DELIVER


def test_forced_actions_are_kept() -> None:
    assert verdict_from_result(result(0, "reject", skipped=True),
                               THRESHOLDS).action is Action.REJECT
    assert verdict_from_result(result(20, "no action", skipped=True),
                               THRESHOLDS).action is Action.DELIVER
    with pytest.raises(EngineUnavailable, match="soft reject"):
        verdict_from_result(result(0, "soft reject", skipped=True), THRESHOLDS)
    with pytest.raises(EngineUnavailable, match="skipped"):
        verdict_from_result(result(0, "", skipped=True), THRESHOLDS)


def test_reasons_from_symbols() -> None:
    verdict = verdict_from_result(result(
        3.5,
        R_SPF_FAIL={"score": 1.0, "description": "SPF verification failed",
                    "options": ["-all", "a", "b", "c"]},
        BAYES_SPAM={"score": 2.5},
        ARC_NA={"score": 0.0, "description": "ARC signature absent"},
    ), THRESHOLDS)
    assert [(r.code, r.text, r.score) for r in verdict.reasons] == [
        ("R_SPF_FAIL", "SPF verification failed (-all, a, b)", 1.0),
        ("BAYES_SPAM", "Bayes spam", 2.5),
    ]
    assert verdict.score == 3.5
