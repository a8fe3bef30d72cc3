"""Inbound authentication: SPF and DKIM outcomes, the Authentication-Results value and the
reasons, with every record served by a real DNS server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
from authres import AuthenticationResultsHeader

from mailcloak.mail import dns as mail_dns
from mailcloak.mail.auth import AuthResult, authenticate, authenticate_async
from mailcloak.mail.dkimkeys import DkimKey, create_keys, load_keys
from mailcloak.mail.dnsrecords import domain_records, host_records
from mailcloak.mail.sign import sign_message
from tests.support.dns_server import DnsServer

AUTHSERV = "mx.mailcloak.test"
GOOD_IP = "192.0.2.1"  # allowed by the test domains' SPF records
BAD_IP = "198.51.100.7"
SPF_OK = "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"

Keys = tuple[DkimKey, DkimKey]


def make_message(sender: str = "jane@signed.test", *, headers: bytes = b"",
                 body: bytes = b"See you at noon.\r\n") -> bytes:
    return (b"From: Jane <" + sender.encode() + b">\r\n"
            b"To: shop@alias.test\r\n"
            b"Subject: Lunch\r\n"
            b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
            b"Message-ID: <lunch@example.test>\r\n" + headers + b"\r\n" + body)


def dkim_sign(message: bytes, domain: str, key: DkimKey, selector: str = "s1") -> bytes:
    signature = dkim.sign(message, selector.encode(), domain.encode(), key.private,
                          signature_algorithm=key.signature_algorithm,
                          canonicalize=(b"relaxed", b"relaxed"),
                          include_headers=[b"from", b"to", b"subject", b"date"])
    return signature + message


@pytest.fixture(scope="module")
def other_rsa_key(tmp_path_factory: pytest.TempPathFactory) -> DkimKey:
    directory = tmp_path_factory.mktemp("other-keys")
    create_keys(directory)
    return load_keys(directory)[0]


@pytest.fixture(scope="module")
def server(keys: Keys, other_rsa_key: DkimKey) -> Iterator[DnsServer]:
    rsa, ed = keys
    records: dict[str, dict[str, list[str]]] = {
        "spf-pass.test": {"TXT": [SPF_OK]},
        "spf-soft.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 ~all"]},
        "spf-neutral.test": {"TXT": ["v=spf1 ?all"]},
        "spf-none.test": {"A": ["192.0.2.1"]},
        "spf-broken.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 moo -all"]},
        "spf-mx.test": {"MX": ["10 mx.spf-mx.test"],
                        "TXT": ["v=spf1 mx include:_spf.provider.test -all"]},
        "mx.spf-mx.test": {"A": ["192.0.2.25"]},
        "_spf.provider.test": {"TXT": ["v=spf1 ip4:203.0.113.0/24 -all"]},
        "mx.helo.test": {"A": ["192.0.2.40"], "TXT": ["v=spf1 a -all"]},
        "signed.test": {"TXT": [SPF_OK]},
        "s1._domainkey.signed.test": {"TXT": [rsa.txt_record()]},
        "ed1._domainkey.signed.test": {"TXT": [ed.txt_record()]},
        "_dmarc.signed.test": {"TXT": ["v=DMARC1; p=reject"]},
        "s1._domainkey.relay.test": {"TXT": [rsa.txt_record()]},
        "s1._domainkey.wrongkey.test": {"TXT": [other_rsa_key.txt_record()]},
        "s1._domainkey.badkey.test": {"TXT": ["v=DKIM1; k=rsa; p=bm90IGEga2V5"]},
        "nokey.test": {"TXT": [SPF_OK]},
        "keyfail.test": {"TXT": ["v=spf1 -all"]},
        "_dmarc.keyfail.test": {"TXT": ["v=DMARC1; p=reject"]},
    }
    with DnsServer(records) as dns_server:
        dns_server.fail("spf-servfail.test")
        dns_server.fail("s1._domainkey.keyfail.test")
        for record in domain_records("instance.test", "mail.instance.test", keys):
            dns_server.add(record.name, record.type, record.value)
        for record in host_records("mail.instance.test", ["192.0.2.60"]):
            dns_server.add(record.name, record.type, record.value)
        yield dns_server


@pytest.fixture(autouse=True)
def resolver(server: DnsServer) -> Iterator[mail_dns.Resolver]:
    with mail_dns.use_resolver(server.resolver()) as fresh:  # a fresh cache for each test
        yield fresh


def check(raw: bytes, *, ip: str = GOOD_IP, mail_from: str = "bounce@signed.test",
          helo: str = "mx.sender.test") -> AuthResult:
    return authenticate(raw, peer_ip=ip, helo=helo, mail_from=mail_from, authserv_id=AUTHSERV)


def codes(result: AuthResult) -> dict[str, float]:
    return {reason.code: reason.score for reason in result.reasons}


def parsed_header(result: AuthResult) -> AuthenticationResultsHeader:
    return AuthenticationResultsHeader.parse(result.header_field().decode())


# --- SPF -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("domain", "ip", "expected"), [
    ("spf-pass.test", GOOD_IP, "pass"),
    ("spf-pass.test", BAD_IP, "fail"),
    ("spf-pass.test", "2001:db8::25", "pass"),
    ("spf-pass.test", "::ffff:192.0.2.9", "pass"),
    ("spf-soft.test", BAD_IP, "softfail"),
    ("spf-neutral.test", BAD_IP, "neutral"),
    ("spf-none.test", GOOD_IP, "none"),
    ("unknown-domain.test", GOOD_IP, "none"),
    ("spf-broken.test", GOOD_IP, "permerror"),
    ("spf-servfail.test", GOOD_IP, "temperror"),
    ("spf-mx.test", "192.0.2.25", "pass"),
    ("spf-mx.test", "203.0.113.9", "pass"),
    ("spf-mx.test", GOOD_IP, "fail"),
])
def test_spf_result_for_the_envelope_sender(domain: str, ip: str, expected: str) -> None:
    result = check(make_message(), ip=ip, mail_from=f"bounce@{domain}")
    assert (result.spf.result, result.spf.identity, result.spf.domain) == (
        expected, "mailfrom", domain)
    assert f"spf={expected} smtp.mailfrom={domain}" in result.authentication_results


def test_spf_reasons_say_what_happened_in_words() -> None:
    failed = check(make_message(), ip=BAD_IP, mail_from="x@spf-pass.test")
    assert [(r.code, r.text, r.score) for r in failed.reasons if r.code.startswith("SPF")] == [
        ("SPF_FAIL", "SPF failed for spf-pass.test", 2.0)]
    soft = check(make_message(), ip=BAD_IP, mail_from="x@spf-soft.test")
    assert codes(soft)["SPF_SOFTFAIL"] > 0
    dns_trouble = check(make_message(), mail_from="x@spf-servfail.test")
    assert codes(dns_trouble)["SPF_TEMPERROR"] == 0  # our DNS trouble is not the sender's fault
    passed = check(make_message(), mail_from="x@spf-pass.test")
    assert codes(passed)["SPF_PASS"] <= 0


def test_an_empty_envelope_sender_checks_the_helo_name() -> None:
    bounce = check(make_message(), ip="192.0.2.40", mail_from="", helo="mx.helo.test")
    assert (bounce.spf.result, bounce.spf.identity, bounce.spf.domain) == (
        "pass", "helo", "mx.helo.test")
    assert "spf=pass smtp.helo=mx.helo.test" in bounce.authentication_results
    forged = check(make_message(), ip=BAD_IP, mail_from="", helo="mx.helo.test")
    assert forged.spf.result == "fail"
    assert "SPF failed for the server name mx.helo.test" in [r.text for r in forged.reasons]


def test_spf_without_a_usable_client_address_or_domain_is_none() -> None:
    assert check(make_message(), ip="not-an-ip", mail_from="x@spf-pass.test").spf.result == "none"
    no_domain = check(make_message(), mail_from="", helo="[192.0.2.1]")
    assert (no_domain.spf.result, no_domain.spf.domain) == ("none", "")
    assert "spf=none;" in no_domain.authentication_results


# --- DKIM ----------------------------------------------------------------------------------------


def test_a_valid_signature_by_the_sender_domain(keys: Keys) -> None:
    result = check(dkim_sign(make_message(), "signed.test", keys[0]))
    [signature] = result.dkim
    assert (signature.domain, signature.selector, signature.result, signature.algorithm) == (
        "signed.test", "s1", "pass", "rsa-sha256")
    assert codes(result)["DKIM_VALID_AU"] == -1.0
    assert "DKIM signature by signed.test is valid" in [r.text for r in result.reasons]
    prefix = signature.signature_prefix  # a "/" (a tspecial) needs quoting (RFC 8601)
    value = f'"{prefix}"' if "/" in prefix else prefix
    assert (f"dkim=pass header.d=signed.test header.s=s1 header.a=rsa-sha256 "
            f"header.b={value}") in result.authentication_results


def test_every_signature_is_checked_and_credited_once_per_domain(keys: Keys) -> None:
    rsa, ed = keys
    message = dkim_sign(dkim_sign(make_message(), "signed.test", rsa), "signed.test", ed, "ed1")
    message = dkim_sign(message, "relay.test", rsa)
    result = check(message)
    assert [(r.domain, r.selector, r.result) for r in result.dkim] == [
        ("relay.test", "s1", "pass"), ("signed.test", "ed1", "pass"),
        ("signed.test", "s1", "pass")]
    dkim_reasons = [(r.code, r.score) for r in result.reasons if r.code.startswith("DKIM")]
    assert dkim_reasons == [("DKIM_VALID", -0.1), ("DKIM_VALID_AU", -1.0)]
    assert parsed_header(result).results[1].result == "pass"
    assert result.authentication_results.count("dkim=pass") == 3


def test_a_changed_body_fails(keys: Keys) -> None:
    signed = dkim_sign(make_message(), "signed.test", keys[0])
    result = check(signed.replace(b"noon", b"midnight"))
    assert [(r.result, r.comment) for r in result.dkim] == [("fail", "body changed")]
    assert "DKIM signature by signed.test does not verify (body changed)" in [
        r.text for r in result.reasons]
    assert "dkim=fail (body changed) header.d=signed.test" in result.authentication_results


def test_a_signature_that_does_not_match_the_published_key_fails(keys: Keys) -> None:
    result = check(dkim_sign(make_message("jane@wrongkey.test"), "wrongkey.test", keys[0]),
                   mail_from="x@wrongkey.test")
    assert [(r.result, r.comment) for r in result.dkim] == [("fail", "bad signature")]


@pytest.mark.parametrize(("domain", "expected"), [
    ("nokey.test", ("permerror", "no key")),
    ("unpublished.test", ("permerror", "no key")),
    ("badkey.test", ("permerror", "unusable key")),
    ("keyfail.test", ("temperror", "key lookup failed")),
])
def test_key_problems(keys: Keys, domain: str, expected: tuple[str, str]) -> None:
    result = check(dkim_sign(make_message(f"jane@{domain}"), domain, keys[0]),
                   mail_from=f"x@{domain}")
    assert [(r.result, r.comment) for r in result.dkim] == [expected]


def test_a_key_lookup_failure_never_makes_dmarc_reject(keys: Keys) -> None:
    # keyfail.test publishes p=reject and an SPF record no server passes: only the DKIM
    # signature could pass, and its key cannot be fetched right now.
    result = check(dkim_sign(make_message("jane@keyfail.test"), "keyfail.test", keys[0]),
                   mail_from="x@keyfail.test")
    assert result.spf.result == "fail"
    assert result.dmarc.result == "temperror"
    assert not result.dmarc_reject and not result.dmarc_quarantine
    assert codes(result)["DKIM_TEMPERROR"] == 0


def test_a_malformed_signature_is_a_permanent_error() -> None:
    broken = make_message(headers=b"DKIM-Signature: v=1; a=rsa-sha256; d=signed.test\r\n")
    result = check(broken)
    assert [(r.domain, r.result, r.comment) for r in result.dkim] == [
        ("signed.test", "permerror", "malformed signature")]


def test_an_unsigned_message_has_dkim_none() -> None:
    result = check(make_message())
    assert result.dkim == ()
    assert "dkim=none" in result.authentication_results
    assert "DKIM_NONE" in codes(result)


# --- the whole result ----------------------------------------------------------------------------


def test_mail_from_another_mailcloak_passes_everything_as_mailcloak_dns_prints_it(
        keys: Keys) -> None:
    signed = sign_message(make_message("someone@instance.test"), "instance.test", keys)
    result = check(signed, ip="192.0.2.60", mail_from="bounce@instance.test",
                   helo="mail.instance.test")
    assert result.spf.result == "pass"
    assert [r.result for r in result.dkim] == ["pass", "pass"]
    assert (result.dmarc.result, result.dmarc.policy) == ("pass", "quarantine")
    assert result.dmarc.spf_aligned and result.dmarc.dkim_aligned
    assert result.score < 0


def test_the_header_value_parses_and_names_us_first(keys: Keys) -> None:
    result = check(dkim_sign(make_message(), "signed.test", keys[0]))
    assert result.authentication_results.startswith(AUTHSERV + "; ")
    field = result.header_field()
    assert field.startswith(b"Authentication-Results: ") and field.endswith(b"\r\n")
    assert b";\r\n\tdkim=pass" in field  # folded after each result
    header = parsed_header(result)
    assert header.authserv_id == AUTHSERV
    assert [(r.method, r.result) for r in header.results] == [
        ("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass"), ("arc", "none")]
    assert b"\n" not in result.header_field(b"\n").replace(b";\n\t", b"")[:-1]


def test_forged_signature_tags_cannot_inject_results(keys: Keys) -> None:
    forged = make_message(headers=(
        b'DKIM-Signature: v=1; a=rsa-sha256; d=signed.test; s=x"; dkim=pass;'
        b" h=from; bh=AAAA; b=BBBB\r\n"))
    result = check(forged)
    header = parsed_header(result)
    assert [(r.method, r.result) for r in header.results] == [
        ("spf", "pass"), ("dkim", "permerror"), ("dmarc", "pass"), ("arc", "none")]
    assert 'header.s="x\\""' in result.authentication_results


def test_a_malformed_header_line_does_not_escape_dmarc() -> None:
    spoof = make_message(headers=b"this line is not a header field\r\n")
    result = check(spoof, ip=BAD_IP, mail_from="x@spf-pass.test")
    assert result.dmarc.domain == "signed.test"
    assert result.dmarc_reject


def test_the_authserv_id_defaults_to_the_host_name(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("MAILCLOAK_HOSTNAME", "mx1.mailcloak.test")
    monkeypatch.setenv("MAILCLOAK_DATA_DIR", str(tmp_path))
    result = authenticate(make_message(), peer_ip=GOOD_IP, helo="h.test",
                          mail_from="bounce@signed.test")
    assert result.authentication_results.startswith("mx1.mailcloak.test; spf=pass")


def test_the_async_form_gives_the_same_result(keys: Keys) -> None:
    signed = dkim_sign(make_message(), "signed.test", keys[0])
    result = asyncio.run(authenticate_async(signed, peer_ip=GOOD_IP, helo="mx.sender.test",
                                            mail_from="bounce@signed.test",
                                            authserv_id=AUTHSERV))
    expected = check(signed)
    assert (result.spf, result.dkim, result.dmarc, result.arc, result.reasons) == (
        expected.spf, expected.dkim, expected.dmarc, expected.arc, expected.reasons)


def test_lf_line_endings_verify_like_crlf(keys: Keys) -> None:
    signed = dkim_sign(make_message(), "signed.test", keys[0]).replace(b"\r\n", b"\n")
    assert [r.result for r in check(signed).dkim] == ["pass"]
