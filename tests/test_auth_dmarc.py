"""DMARC: alignment, the policies and what they ask for, subdomain policies and organisational
domains, with policy records served by a real DNS server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import dkim
import pytest

from mailcloak.mail import auth_dns
from mailcloak.mail import dns as mail_dns
from mailcloak.mail.auth import AuthResult, authenticate
from mailcloak.mail.auth_dmarc import organizational_domain, parse_record
from mailcloak.mail.dkimkeys import DkimKey, create_keys, load_keys
from tests.support.dns_server import DnsServer

GOOD_IP = "192.0.2.1"
BAD_IP = "198.51.100.7"
SPF_OK = "v=spf1 ip4:192.0.2.0/24 -all"

POLICIES = {
    "reject.test": "v=DMARC1; p=reject; rua=mailto:dmarc@reject.test",
    "quarantine.test": "v=DMARC1; p=quarantine",
    "monitor.test": "v=DMARC1; p=none",
    "parent.test": "v=DMARC1; p=none; sp=reject",
    "own.parent.test": "v=DMARC1; p=quarantine",
    "strict.test": "v=DMARC1; p=reject; aspf=s; adkim=s",
    "relaxed.test": "v=DMARC1; p=reject",
    "phasein.test": "v=DMARC1; p=reject; pct=0",
    "trial.test": "v=DMARC1; p=quarantine; t=y",
    "badpolicy.test": "v=DMARC1; p=bogus",
    "badpolicy-rua.test": "v=DMARC1; p=bogus; rua=mailto:dmarc@badpolicy-rua.test",
    "example.co.uk": "v=DMARC1; p=reject",
}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> DkimKey:
    directory = tmp_path_factory.mktemp("keys")
    create_keys(directory)
    return load_keys(directory)[0]


@pytest.fixture(scope="module")
def server(key: DkimKey) -> Iterator[DnsServer]:
    with DnsServer() as dns_server:
        for domain, policy in POLICIES.items():
            dns_server.add(f"_dmarc.{domain}", "TXT", policy)
        for domain in [*POLICIES, "nopolicy.test", "twice.test", "dmarcfail.test",
                       "news.parent.test", "bounce.strict.test", "bounce.relaxed.test"]:
            dns_server.add(domain, "TXT", SPF_OK)
            dns_server.add(f"s1._domainkey.{domain}", "TXT", key.txt_record())
        dns_server.add("_dmarc.twice.test", "TXT", "v=DMARC1; p=reject", "v=DMARC1; p=none")
        dns_server.add("_dmarc.nopolicy.test", "TXT", "v=spf1 -all")  # not a DMARC record
        dns_server.fail("_dmarc.dmarcfail.test")
        yield dns_server


@pytest.fixture(autouse=True)
def resolver(server: DnsServer) -> Iterator[mail_dns.Resolver]:
    with mail_dns.use_resolver(server.resolver()) as fresh:
        yield fresh


def message(*senders: str) -> bytes:
    from_field = ", ".join(f"<{sender}>" for sender in senders)
    return (f"From: {from_field}\r\nTo: shop@alias.test\r\nSubject: Invoice\r\n"
            "\r\nPlease pay.\r\n").encode()


def signed(raw: bytes, domain: str, key: DkimKey) -> bytes:
    return dkim.sign(raw, b"s1", domain.encode(), key.private,
                     include_headers=[b"from", b"to", b"subject"]) + raw


def check(raw: bytes, *, ip: str = BAD_IP, mail_from: str = "bounce@elsewhere.test") -> AuthResult:
    return authenticate(raw, peer_ip=ip, helo="mx.sender.test", mail_from=mail_from,
                        authserv_id="mx.mailcloak.test")


def dmarc_reasons(result: AuthResult) -> list[tuple[str, str, float]]:
    return [(r.code, r.text, r.score) for r in result.reasons if r.code.startswith("DMARC")]


def test_a_second_message_from_a_sender_is_checked_from_the_cache(
        key: DkimKey, server: DnsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its DKIM key and DMARC policy come from the resolver's cache, without a lookup thread;
    a cached NXDOMAIN (no DMARC record for the subdomain) too."""
    raw = signed(message("billing@mail.reject.test"), "reject.test", key)
    first = check(raw, ip=GOOD_IP, mail_from="b@reject.test")
    asked = len(server.queries)
    monkeypatch.setattr(auth_dns, "start", None)  # a lookup started on the threads fails
    again = check(raw, ip=GOOD_IP, mail_from="b@reject.test")
    assert again.authentication_results == first.authentication_results
    assert "dkim=pass" in first.authentication_results
    assert "dmarc=pass" in first.authentication_results
    assert len(server.queries) == asked


# --- pass ----------------------------------------------------------------------------------------


def test_pass_through_aligned_spf() -> None:
    result = check(message("billing@reject.test"), ip=GOOD_IP, mail_from="b@reject.test")
    assert (result.dmarc.result, result.dmarc.spf_aligned, result.dmarc.dkim_aligned) == (
        "pass", True, False)
    assert not result.dmarc_reject
    assert dmarc_reasons(result) == [("DMARC_PASS", "DMARC passed for reject.test", -0.2)]
    assert "dmarc=pass (p=reject sp=reject dis=none) header.from=reject.test" in (
        result.authentication_results)


def test_pass_through_aligned_dkim_without_spf(key: DkimKey) -> None:
    result = check(signed(message("billing@reject.test"), "reject.test", key))
    assert result.spf.result == "none"
    assert (result.dmarc.result, result.dmarc.dkim_aligned) == ("pass", True)


def test_relaxed_alignment_accepts_a_subdomain_of_the_same_organisation(key: DkimKey) -> None:
    spf_sub = check(message("a@relaxed.test"), ip=GOOD_IP, mail_from="b@bounce.relaxed.test")
    assert spf_sub.dmarc.result == "pass"
    dkim_sub = check(signed(message("a@relaxed.test"), "bounce.relaxed.test", key))
    assert dkim_sub.dmarc.result == "pass"


def test_strict_alignment_needs_the_exact_domain(key: DkimKey) -> None:
    spf_sub = check(message("a@strict.test"), ip=GOOD_IP, mail_from="b@bounce.strict.test")
    assert spf_sub.spf.result == "pass"
    assert (spf_sub.dmarc.result, spf_sub.dmarc_reject) == ("fail", True)
    dkim_sub = check(signed(message("a@strict.test"), "bounce.strict.test", key))
    assert dkim_sub.dkim[0].result == "pass"
    assert dkim_sub.dmarc.result == "fail"
    exact = check(signed(message("a@strict.test"), "strict.test", key))
    assert exact.dmarc.result == "pass"


def test_a_valid_signature_by_an_unrelated_domain_does_not_align(key: DkimKey) -> None:
    result = check(signed(message("a@reject.test"), "relaxed.test", key))
    assert result.dkim[0].result == "pass"
    assert result.dmarc.result == "fail"


# --- policies ------------------------------------------------------------------------------------


def test_failing_p_reject_asks_for_rejection() -> None:
    result = check(message("ceo@reject.test"))
    assert (result.dmarc.result, result.dmarc.policy, result.dmarc.disposition) == (
        "fail", "reject", "reject")
    assert result.dmarc_reject and not result.dmarc_quarantine
    assert dmarc_reasons(result) == [
        ("DMARC_FAIL_REJECT", "DMARC policy of reject.test says reject", 4.0)]
    assert "dmarc=fail (p=reject sp=reject dis=reject) header.from=reject.test" in (
        result.authentication_results)


def test_failing_p_quarantine_asks_for_quarantine() -> None:
    result = check(message("ceo@quarantine.test"))
    assert result.dmarc_quarantine and not result.dmarc_reject
    assert dmarc_reasons(result) == [
        ("DMARC_FAIL_QUARANTINE", "DMARC policy of quarantine.test says quarantine", 3.0)]


def test_failing_p_none_only_adds_a_little_to_the_score() -> None:
    result = check(message("ceo@monitor.test"))
    assert (result.dmarc.result, result.dmarc.disposition) == ("fail", "none")
    assert not result.dmarc_reject and not result.dmarc_quarantine
    assert dmarc_reasons(result) == [
        ("DMARC_FAIL_NONE", "DMARC failed for monitor.test (its policy asks for no action)",
         1.0)]


def test_a_subdomain_without_a_record_gets_the_parent_subdomain_policy() -> None:
    result = check(message("news@news.parent.test"))
    dmarc = result.dmarc
    assert (dmarc.domain, dmarc.record_domain, dmarc.policy, dmarc.subdomain_policy) == (
        "news.parent.test", "parent.test", "none", "reject")
    assert (dmarc.applied_policy, dmarc.disposition) == ("reject", "reject")
    assert result.dmarc_reject
    assert "DMARC policy of news.parent.test says reject" in [r.text for r in result.reasons]
    parent = check(message("ceo@parent.test"))
    assert (parent.dmarc.disposition, parent.dmarc_reject) == ("none", False)


def test_a_subdomain_with_its_own_record_uses_it() -> None:
    result = check(message("a@own.parent.test"))
    assert (result.dmarc.record_domain, result.dmarc.disposition) == (
        "own.parent.test", "quarantine")


def test_a_policy_being_phased_in_is_applied_one_step_milder() -> None:
    sampled_out = check(message("a@phasein.test"))
    assert (sampled_out.dmarc.policy, sampled_out.dmarc.disposition) == ("reject", "quarantine")
    assert sampled_out.dmarc_quarantine and not sampled_out.dmarc_reject
    assert "applied as quarantine" in dmarc_reasons(sampled_out)[0][1]
    testing = check(message("a@trial.test"))
    assert (testing.dmarc.policy, testing.dmarc.disposition) == ("quarantine", "none")


@pytest.mark.parametrize("domain", ["nopolicy.test", "twice.test", "badpolicy.test",
                                    "unknown.test"])
def test_no_usable_record_means_dmarc_none(domain: str) -> None:
    result = check(message(f"a@{domain}"))
    assert (result.dmarc.result, result.dmarc_reject, result.dmarc_quarantine) == (
        "none", False, False)
    assert dmarc_reasons(result) == [
        ("DMARC_NONE", f"{domain} publishes no DMARC policy", 0.1)]


def test_an_invalid_policy_with_reporting_is_read_as_p_none() -> None:
    result = check(message("a@badpolicy-rua.test"))
    assert (result.dmarc.result, result.dmarc.policy) == ("fail", "none")


def test_a_policy_lookup_failure_is_a_temporary_error() -> None:
    result = check(message("a@dmarcfail.test"))
    assert result.dmarc.result == "temperror"
    assert not result.dmarc_reject
    assert dmarc_reasons(result)[0][2] == 0.0


def test_no_readable_from_is_a_permanent_error() -> None:
    result = check(b"To: shop@alias.test\r\nSubject: hi\r\n\r\nbody\r\n")
    assert result.dmarc.result == "permerror"
    assert [r.code for r in result.reasons if r.code.startswith("DMARC")] == ["DMARC_NO_FROM"]
    assert "dmarc=permerror;" in result.authentication_results


def test_several_from_domains_get_the_strictest_failing_policy() -> None:
    result = check(message("a@monitor.test", "b@reject.test", "c@quarantine.test"))
    assert (result.dmarc.domain, result.dmarc.disposition) == ("reject.test", "reject")
    assert result.dmarc_reject


def test_the_organisational_domain_comes_from_the_public_suffix_list() -> None:
    result = check(message("a@shop.example.co.uk"))  # the record is at example.co.uk
    assert (result.dmarc.record_domain, result.dmarc.disposition) == ("example.co.uk", "reject")
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organizational_domain("mail.example.test") == "example.test"
    assert organizational_domain("Example.ORG.") == "example.org"
    assert organizational_domain("co.uk") == "co.uk"
    assert organizational_domain("www.ck") == "www.ck"  # an exception rule of the list


def test_record_parsing() -> None:
    record = parse_record("v=DMARC1; p=Quarantine; sp=none; adkim=s; pct=50; t=y")
    assert record is not None
    assert (record.policy, record.subdomain_policy, record.adkim, record.aspf) == (
        "quarantine", "none", "s", "r")
    assert (record.percent, record.testing) == (50, True)
    assert parse_record("p=reject; v=DMARC1") is None  # v= must come first
    assert parse_record("v=DMARC2; p=reject") is None
    assert parse_record("v=DMARC1") is None  # no policy and no reporting address
    assert parse_record("v=DMARC1; pct=abc; p=reject") == parse_record("v=DMARC1; p=reject")
