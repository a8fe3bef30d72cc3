"""The SpamAssassin engine against a real spamd on loopback (local tests only, TELL allowed).

Tests that need the daemon skip with the reason when spamd is not installed
(scripts/install-spam-daemons installs it; CI does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mailcloak.mail import dns as mail_dns
from mailcloak.mail.spam.spamassassin import SpamAssassinEngine, parse_reply, parse_report
from mailcloak.mail.spam.verdict import (
    Action,
    EngineUnavailable,
    Reason,
    ScanRequest,
    Thresholds,
)
from tests.support.daemons import (
    GTUBE,
    SpamdDaemon,
    canned_server,
    ham,
    missing,
    running_spamd,
    spammy,
)
from tests.support.dns_server import DnsServer
from tests.support.processes import free_port

THRESHOLDS = Thresholds(quarantine=5.0, reject=10.0)


@pytest.fixture(scope="module")
def spamd() -> Iterator[SpamdDaemon]:
    if reason := missing("spamd", "sa-learn"):
        pytest.skip(reason)
    with running_spamd() as daemon:
        yield daemon


@pytest.fixture
def engine(spamd: SpamdDaemon) -> SpamAssassinEngine:
    return SpamAssassinEngine(spamd.host, spamd.port, timeout=60, hostname="mx.alias.test")


# --- against the real daemon ---------------------------------------------------------------------


def test_gtube_is_rejected(engine: SpamAssassinEngine) -> None:
    verdict = asyncio.run(engine.scan(ScanRequest(raw=GTUBE), THRESHOLDS))
    assert verdict.action is Action.REJECT
    assert verdict.score >= 1000
    assert verdict.engine == "spamassassin"
    assert Reason("GTUBE", "BODY: Generic Test for Unsolicited Bulk Email", 1000.0) \
        in verdict.reasons


def test_clean_message_is_delivered(engine: SpamAssassinEngine) -> None:
    verdict = asyncio.run(engine.scan(ScanRequest(raw=ham()), THRESHOLDS))
    assert verdict.action is Action.DELIVER
    assert verdict.score < THRESHOLDS.quarantine


def test_reasons_are_the_rules_that_scored_in_words(engine: SpamAssassinEngine) -> None:
    verdict = asyncio.run(engine.scan(ScanRequest(raw=spammy()), THRESHOLDS))
    assert verdict.reasons
    assert sum(reason.score for reason in verdict.reasons) == pytest.approx(verdict.score,
                                                                             abs=0.05)
    for reason in verdict.reasons:
        assert reason.code.replace("_", "").isalnum()
        assert reason.text and reason.score != 0


def test_learning_reaches_the_bayes_database(engine: SpamAssassinEngine,
                                             spamd: SpamdDaemon) -> None:
    before = spamd.bayes_counts()
    asyncio.run(engine.learn(spammy(), is_spam=True))
    asyncio.run(engine.learn(spammy(), is_spam=True))  # again: nothing to do, still fine
    asyncio.run(engine.learn(ham(), is_spam=False))
    assert spamd.bayes_counts() == {"nspam": before["nspam"] + 1, "nham": before["nham"] + 1}


# --- the hop we add in front of the message ------------------------------------------------------


def test_trace_headers_name_the_peer_and_the_envelope_sender() -> None:
    engine = SpamAssassinEngine("127.0.0.1", hostname="mx.alias.test")
    with DnsServer({"mx.sender.test": {"A": ["192.0.2.7"]}}) as server:
        server.add_ptr("192.0.2.7", "mx.sender.test")
        with mail_dns.use_resolver(server.resolver()):
            known = asyncio.run(engine.trace_headers(ScanRequest(
                raw=b"", peer_ip="192.0.2.7", helo="mx.sender.test", mail_from="a@sender.test")))
            unknown = asyncio.run(engine.trace_headers(ScanRequest(raw=b"", peer_ip="192.0.2.8")))
    assert known.startswith(b"Return-Path: <a@sender.test>\r\n"
                            b"Received: from mx.sender.test (mx.sender.test [192.0.2.7])\r\n"
                            b"\tby mx.alias.test (Mailcloak) with ESMTP;\r\n\t")
    assert unknown.startswith(b"Received: from [192.0.2.8] (unknown [192.0.2.8])\r\n")
    assert known.endswith(b"\r\n") and unknown.endswith(b"\r\n")


def test_no_envelope_no_trace_headers() -> None:
    engine = SpamAssassinEngine("127.0.0.1")
    assert asyncio.run(engine.trace_headers(ScanRequest(raw=b""))) == b""


# --- when spamd cannot answer --------------------------------------------------------------------


def test_spamd_down_is_engine_unavailable() -> None:
    engine = SpamAssassinEngine("127.0.0.1", free_port(), timeout=5)
    with pytest.raises(EngineUnavailable, match="unreachable"):
        asyncio.run(engine.scan(ScanRequest(raw=ham()), THRESHOLDS))
    with pytest.raises(EngineUnavailable, match="unreachable"):
        asyncio.run(engine.learn(ham(), is_spam=False))


def test_spamd_silent_is_engine_unavailable() -> None:
    with canned_server(None) as port:
        engine = SpamAssassinEngine("127.0.0.1", port, timeout=0.3)
        with pytest.raises(EngineUnavailable, match=r"did not answer within 0\.3s"):
            asyncio.run(engine.scan(ScanRequest(raw=ham()), THRESHOLDS))


@pytest.mark.parametrize(("reply", "message"), [
    (b"SPAMD/1.1 69 Service Unavailable: TELL commands are not enabled, set the --allow-tell "
     b"switch.\r\n", "refused REPORT: 69 Service Unavailable"),
    (b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n", "no Spam: header"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", "not spamd's protocol"),
    (b"", "not spamd's protocol"),
])
def test_unusable_replies_are_engine_unavailable(reply: bytes, message: str) -> None:
    with canned_server(reply) as port:
        engine = SpamAssassinEngine("127.0.0.1", port, timeout=5)
        with pytest.raises(EngineUnavailable, match=message):
            asyncio.run(engine.scan(ScanRequest(raw=ham()), THRESHOLDS))


def test_refused_tell_is_engine_unavailable() -> None:
    reply = b"SPAMD/1.1 69 Service Unavailable: TELL commands are not enabled\r\n"
    with canned_server(reply) as port:
        engine = SpamAssassinEngine("127.0.0.1", port, timeout=5)
        with pytest.raises(EngineUnavailable, match="refused TELL"):
            asyncio.run(engine.learn(spammy(), is_spam=True))


# --- parsing, without the daemon -----------------------------------------------------------------

REPORT = """\
Spam detection software, running on the system "mx",
has identified this incoming email as possible spam.

Content preview:  Win money now
 1.0 FAKE_RULE in the preview is message text, not a rule

Content analysis details:   (7.3 points, 5.0 required)

 pts rule name              description
---- ---------------------- --------------------------------------------------
1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email
 2.5 URIBL_ABUSE_SURBL      Contains an URL listed in the ABUSE SURBL
                            blocklist
                            [URIs: prizes.test]
-0.0 NO_RELAYS              Informational: message was not relayed via SMTP
-1.9 BAYES_00               BODY: Bayes spam probability is 0 to 1%
 0.0 TVD_SPACE_RATIO        No description available.
 0.1 T_LOCAL_rule_1         No description available.

"""


def test_report_table_is_parsed() -> None:
    assert parse_report(REPORT) == (
        Reason("GTUBE", "BODY: Generic Test for Unsolicited Bulk Email", 1000.0),
        Reason("URIBL_ABUSE_SURBL",
               "Contains an URL listed in the ABUSE SURBL blocklist [URIs: prizes.test]", 2.5),
        Reason("BAYES_00", "BODY: Bayes spam probability is 0 to 1%", -1.9),
        Reason("T_LOCAL_rule_1", "T local rule 1", 0.1),
    )


def test_report_without_a_table_has_no_reasons() -> None:
    assert parse_report("Content preview:  hello\n 1.0 LOOKS_LIKE_A_RULE but is text\n") == ()


def test_reply_is_split_into_status_headers_and_body() -> None:
    reply = parse_reply(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 4\r\nSpam: True ; 15.0 / 5.0"
                        b"\r\n\r\nbody")
    assert (reply.code, reply.message, reply.body) == (0, "EX_OK", "body")
    assert reply.headers == {"content-length": "4", "spam": "True ; 15.0 / 5.0"}
