"""ARC: validating the chain a message arrives with, and sealing what Mailcloak forwards,
verified by dkimpy against records served by a real DNS server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from mailcloak.mail import dkimkeys
from mailcloak.mail import dns as mail_dns
from mailcloak.mail.arc import SealError, arc_seal, without_own_results
from mailcloak.mail.auth import AuthResult, authenticate
from mailcloak.mail.dkimkeys import DkimKey, signing_keys
from mailcloak.mail.dnsrecords import domain_records
from tests.support.dns_server import DnsServer

OURS = "mx.alias.test"  # our authserv-id
FORWARDER = "mx.forwarder.test"
FORWARDER_IP = "203.0.113.5"

Keys = tuple[DkimKey, DkimKey]

ORIGINAL = (
    b"From: Jane <jane@sender.test>\r\n"
    b"To: list@forwarder.test\r\n"
    b"Subject: Meeting notes\r\n"
    b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <notes@sender.test>\r\n"
    b"\r\n"
    b"Notes attached.\r\n"
)


@pytest.fixture(scope="module")
def server(keys: Keys) -> Iterator[DnsServer]:
    rsa = keys[0]
    with DnsServer({
        "sender.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
        "_dmarc.sender.test": {"TXT": ["v=DMARC1; p=reject"]},
        "s1._domainkey.sender.test": {"TXT": [rsa.txt_record()]},
        "arc1._domainkey.forwarder.test": {"TXT": [rsa.txt_record()]},
    }) as dns_server:
        for record in domain_records("alias.test", "mail.alias.test", keys):
            dns_server.add(record.name, record.type, record.value)
        yield dns_server


@pytest.fixture(autouse=True)
def resolver(server: DnsServer) -> Iterator[mail_dns.Resolver]:
    with mail_dns.use_resolver(server.resolver()) as fresh:
        yield fresh


def sender_signed(key: DkimKey) -> bytes:
    return dkim.sign(ORIGINAL, b"s1", b"sender.test", key.private,
                     include_headers=[b"from", b"to", b"subject", b"date"]) + ORIGINAL


def forwarded_by_list(message: bytes, key: DkimKey) -> bytes:
    """What a mailing list at forwarder.test does: check, add a footer, seal."""
    results = (f"Authentication-Results: {FORWARDER}; spf=pass smtp.mailfrom=sender.test; "
               "dkim=pass header.d=sender.test; dmarc=pass header.from=sender.test\r\n")
    changed = results.encode() + message + b"-- \r\nThe forwarder.test list\r\n"
    arc_set = dkim.arc_sign(changed, b"arc1", b"forwarder.test", key.private,
                            FORWARDER.encode())
    return b"".join(arc_set) + changed


def receive(message: bytes, ip: str = FORWARDER_IP) -> AuthResult:
    return authenticate(message, peer_ip=ip, helo=FORWARDER, mail_from="list@forwarder.test",
                        authserv_id=OURS)


def verify_chain(message: bytes, server: DnsServer) -> tuple[bytes | None, list[dict], str]:
    cv, sets, comment = dkim.arc_verify(message, dnsfunc=server.resolver().dkim_dnsfunc)
    return cv, sets, comment


# --- validating ----------------------------------------------------------------------------------


def test_a_message_without_arc_sets_has_arc_none(keys: Keys) -> None:
    result = receive(sender_signed(keys[0]))
    assert (result.arc.result, result.arc.instances) == ("none", 0)
    assert result.authentication_results.endswith("; arc=none")
    assert not [r for r in result.reasons if r.code.startswith("ARC")]


def test_a_valid_chain_passes_and_names_its_sealer(keys: Keys) -> None:
    result = receive(forwarded_by_list(sender_signed(keys[0]), keys[0]))
    assert result.dkim[0].result == "fail"  # the footer broke the sender's signature
    assert (result.arc.result, result.arc.instances, result.arc.sealer) == (
        "pass", 1, "forwarder.test")
    assert "arc=pass" in result.authentication_results
    assert [(r.code, r.score) for r in result.reasons if r.code.startswith("ARC")] == [
        ("ARC_PASS", -0.1)]


def test_a_message_changed_after_sealing_breaks_the_chain(keys: Keys) -> None:
    sealed = forwarded_by_list(sender_signed(keys[0]), keys[0])
    result = receive(sealed.replace(b"Notes attached.", b"Pay this invoice."))
    assert (result.arc.result, result.arc.comment) == ("fail", "broken chain")
    assert "arc=fail (broken chain)" in result.authentication_results
    assert "The forwarding record (ARC chain) is broken" in [r.text for r in result.reasons]


def test_a_tampered_seal_breaks_the_chain(keys: Keys) -> None:
    sealed = forwarded_by_list(sender_signed(keys[0]), keys[0])
    tampered = sealed.replace(b"dmarc=pass header.from=sender.test\r\n",
                              b"dmarc=pass header.from=bank.test\r\n", 1)
    assert tampered != sealed
    assert receive(tampered).arc.result == "fail"


def test_a_seal_whose_key_is_not_published_fails(keys: Keys) -> None:
    sealed = forwarded_by_list(sender_signed(keys[0]), keys[0])
    unknown = sealed.replace(b"s=arc1;", b"s=arc9;")
    assert receive(unknown).arc.result == "fail"


def test_an_overlong_chain_fails_without_any_lookup(keys: Keys, server: DnsServer) -> None:
    sealed = forwarded_by_list(sender_signed(keys[0]), keys[0])
    overlong = sealed.replace(b"ARC-Seal: i=1;", b"ARC-Seal: i=51;", 1)
    server.queries.clear()
    result = receive(overlong, ip="192.0.2.9")
    assert (result.arc.result, result.arc.comment) == ("fail", "too many ARC sets")
    assert not [name for name, _ in server.queries if "_domainkey.forwarder" in name]


# --- sealing -------------------------------------------------------------------------------------


def test_our_seal_verifies_and_carries_our_results(keys: Keys, server: DnsServer) -> None:
    message = sender_signed(keys[0])
    result = authenticate(message, peer_ip="192.0.2.9", helo="mx.sender.test",
                          mail_from="bounce@sender.test", authserv_id=OURS)
    sealed = arc_seal(message, auth_results=result.authentication_results,
                      domain="alias.test", keys=keys)
    assert sealed.endswith(message)
    assert sealed.startswith(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=alias.test; s=mcr1;")
    cv, sets, comment = verify_chain(sealed, server)
    assert (cv, comment) == (b"pass", "success")
    assert [s["instance"] for s in sets] == [1]
    results = sets[0]["aar-value"]
    assert results.startswith(b"i=1; mx.alias.test;")
    for expected in (b"spf=pass smtp.mailfrom=sender.test", b"dkim=pass header.d=sender.test",
                     b"dmarc=pass header.from=sender.test"):
        assert expected in results
    assert results.endswith(b"; arc=none\r\n")  # a new chain


def test_our_seal_survives_for_the_next_receiver(keys: Keys) -> None:
    message = sender_signed(keys[0])
    first = authenticate(message, peer_ip="192.0.2.9", helo="mx.sender.test",
                         mail_from="bounce@sender.test", authserv_id=OURS)
    rewritten = message.replace(b"From: Jane <jane@sender.test>",
                                b"From: Jane via Mailcloak <reply-1@alias.test>")
    sealed = arc_seal(rewritten, auth_results=first.authentication_results,
                      domain="alias.test", keys=keys)
    downstream = authenticate(sealed, peer_ip="198.51.100.7", helo="mail.alias.test",
                              mail_from="bounce@alias.test", authserv_id="mx.mailbox.test")
    assert downstream.dkim[0].result == "fail"  # the rewrite broke the sender's signature
    assert (downstream.arc.result, downstream.arc.sealer) == ("pass", "alias.test")


def test_sealing_a_forwarded_chain_extends_it(keys: Keys, server: DnsServer) -> None:
    incoming = forwarded_by_list(sender_signed(keys[0]), keys[0])
    result = receive(incoming)
    assert result.arc.result == "pass"
    sealed = arc_seal(incoming, auth_results=result.authentication_results,
                      domain="alias.test", keys=keys)
    assert sealed.startswith(b"ARC-Seal: i=2; cv=pass;")
    cv, sets, _ = verify_chain(sealed, server)
    assert cv == b"pass"
    assert sorted(s["instance"] for s in sets) == [1, 2]


def test_a_failed_chain_is_sealed_as_failed(keys: Keys, server: DnsServer) -> None:
    broken = forwarded_by_list(sender_signed(keys[0]), keys[0]).replace(b"Notes", b"Bills")
    result = receive(broken)
    sealed = arc_seal(broken, auth_results=result.authentication_results,
                      domain="alias.test", keys=keys)
    assert sealed.startswith(b"ARC-Seal: i=2; cv=fail;")
    assert verify_chain(sealed, server)[0] is None  # the chain is over, as RFC 8617 wants


def test_results_about_a_chain_that_was_removed_start_a_new_one(keys: Keys,
                                                                server: DnsServer) -> None:
    incoming = forwarded_by_list(sender_signed(keys[0]), keys[0])
    result = receive(incoming)
    without_chain = b"".join(
        line for line in incoming.splitlines(keepends=True)
        if not line.lower().startswith((b"arc-", b" ", b"\t")))
    sealed = arc_seal(without_chain, auth_results=result.authentication_results,
                      domain="alias.test", keys=keys)
    assert sealed.startswith(b"ARC-Seal: i=1; cv=none;")
    assert verify_chain(sealed, server)[0] == b"pass"


def test_results_that_arrived_claiming_to_be_ours_are_dropped(keys: Keys,
                                                              server: DnsServer) -> None:
    forged = (b"Authentication-Results: MX.ALIAS.TEST; dkim=pass header.d=bank.test\r\n"
              b"Authentication-Results: mx.alias.test (forged);\r\n\tspf=pass\r\n"
              b"Authentication-Results: mx.elsewhere.test; spf=fail\r\n") + ORIGINAL
    sealed = arc_seal(forged, auth_results=f"{OURS}; spf=none; dkim=none; dmarc=none; arc=none",
                      domain="alias.test", keys=keys)
    assert b"bank.test" not in sealed
    assert b"(forged)" not in sealed
    assert b"Authentication-Results: mx.elsewhere.test; spf=fail\r\n" in sealed
    assert verify_chain(sealed, server)[0] == b"pass"


def test_lf_messages_are_sealed_with_lf(keys: Keys, server: DnsServer) -> None:
    message = ORIGINAL.replace(b"\r\n", b"\n")
    sealed = arc_seal(message, auth_results=f"{OURS}; spf=pass smtp.mailfrom=sender.test",
                      domain="alias.test", keys=keys)
    assert b"\r" not in sealed
    assert verify_chain(sealed, server)[0] == b"pass"


def test_sealing_uses_the_instance_rsa_key_by_default(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAILCLOAK_DATA_DIR", str(tmp_path))
    dkimkeys.forget_loaded_keys()
    try:
        instance_keys = signing_keys()
        sealed = arc_seal(ORIGINAL, auth_results=f"{OURS}; spf=none", domain="alias.test")
    finally:
        dkimkeys.forget_loaded_keys()
    with DnsServer() as instance_dns:
        for record in domain_records("alias.test", "mail.alias.test", instance_keys):
            instance_dns.add(record.name, record.type, record.value)
        assert verify_chain(sealed, instance_dns)[0] == b"pass"


@pytest.mark.parametrize(("auth_results", "domain", "message"), [
    ("spf=pass", "alias.test", "authserv-id"),
    ("not_a_host; spf=pass", "alias.test", "authserv-id"),
    ("mx.alias.test; spf=", "alias.test", "does not parse"),
    ("mx.alias.test; arc=pass; spf=", "alias.test", "not an Authentication-Results value"),
    ("mx.alias.test; spf=pass", "not a domain", "not a domain name"),
])
def test_unusable_input_is_refused_with_a_clear_error(
        keys: Keys, auth_results: str, domain: str, message: str) -> None:
    with pytest.raises(SealError, match=message):
        arc_seal(ORIGINAL, auth_results=auth_results, domain=domain, keys=keys)


def test_sealing_needs_an_rsa_key(keys: Keys) -> None:
    with pytest.raises(SealError, match="RSA"):
        arc_seal(ORIGINAL, auth_results=f"{OURS}; spf=none", domain="alias.test",
                 keys=(keys[1],))


def test_without_own_results_keeps_everything_else() -> None:
    message = (b"Received: from a\r\n\tby b\r\n"
               b"Authentication-Results: mx.alias.test; spf=pass\r\n"
               b"Subject: x\r\n\r\nAuthentication-Results: mx.alias.test; in the body\r\n")
    assert without_own_results(message, OURS) == (
        b"Received: from a\r\n\tby b\r\nSubject: x\r\n\r\n"
        b"Authentication-Results: mx.alias.test; in the body\r\n")
