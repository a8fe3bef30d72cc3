"""Record checks (mailcloak.mail.dnscheck) against a real DNS server on loopback serving right,
missing and wrong records, and answering SERVFAIL or nothing at all."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.dkimkeys import DkimKey
from mailcloak.mail.dns import Resolver, parse_server
from mailcloak.mail.dnscheck import (
    RecordCheck,
    check_dkim,
    check_dmarc,
    check_domain,
    check_host,
    check_instance,
    check_mta_sts,
    check_mx,
    check_spf,
    check_tls_rpt,
)
from mailcloak.mail.dnsrecords import domain_records, host_records
from tests.support.dns_server import DnsServer

SERVER_IP = "192.0.2.10"
HOSTNAME = "mail.alias.example"
Keys = tuple[DkimKey, DkimKey]


def make_config(**values: str) -> mailcloak_settings.Config:
    env = {"MAILCLOAK_DOMAINS": "alias.example,second.example", "MAILCLOAK_HOSTNAME": HOSTNAME,
           "MAILCLOAK_PUBLIC_URL": "https://mailcloak.example",
           "MAILCLOAK_REPORTS_ADDRESS": "reports@alias.example"}
    env.update({f"MAILCLOAK_{name.upper()}": value for name, value in values.items()})
    return mailcloak_settings.load(env, create_secret=False)


@pytest.fixture
def config() -> mailcloak_settings.Config:
    return make_config()


def publish(server: DnsServer, config: mailcloak_settings.Config, keys: Keys) -> None:
    """Everything `mailcloak dns` asks for, correctly published."""
    for domain in config.domains:
        for record in domain_records(domain, config.hostname, keys, config):
            server.add(record.name, record.type, record.value)
        server.add("mailcloak.example", "A", "192.0.2.80")
    for record in host_records(config.hostname, [SERVER_IP]):
        server.add(record.name, record.type, record.value)


@pytest.fixture
def server(config: mailcloak_settings.Config, keys: Keys) -> Iterator[DnsServer]:
    with DnsServer() as dns_server:
        publish(dns_server, config, keys)
        yield dns_server


@pytest.fixture
def resolver(server: DnsServer) -> Resolver:
    return server.resolver()


def statuses(checks: list[RecordCheck]) -> dict[tuple[str, str], str]:
    return {(check.kind, check.name): check.status for check in checks}


def test_everything_published_is_ok(config: mailcloak_settings.Config, keys: Keys,
                                    resolver: Resolver) -> None:
    results = check_instance(config.domains, [SERVER_IP], resolver=resolver, config=config,
                             keys=keys)
    assert list(results) == ["alias.example", "second.example", HOSTNAME]
    checks = [check for group in results.values() for check in group]
    assert [c for c in checks if not c.ok] == []
    kinds = [check.kind for check in results["alias.example"]]
    assert kinds == ["MX", "SPF", "DKIM", "DKIM", "DMARC", "MTA-STS", "MTA-STS host", "TLS-RPT"]
    assert [check.kind for check in results[HOSTNAME]] == ["A/AAAA", "SPF", "PTR"]
    assert all(check.fix == "" for check in checks)


def test_tls_policies_can_be_left_out(config: mailcloak_settings.Config, resolver: Resolver,
                                      keys: Keys) -> None:
    checks = check_domain("Alias.Example.", resolver=resolver, config=config,
                          tls_policies=False, keys=keys)
    assert [check.kind for check in checks] == ["MX", "SPF", "DKIM", "DKIM", "DMARC"]
    assert checks[0].name == "alias.example"


# --- MX -------------------------------------------------------------------------------------


def test_mx_missing_wrong_and_unknown_domain(config: mailcloak_settings.Config,
                                             server: DnsServer, resolver: Resolver) -> None:
    server.remove("alias.example", "MX")
    missing = check_mx("alias.example", resolver=resolver, config=config)
    assert (missing.status, missing.found) == ("missing", "no MX record")
    assert missing.fix == "publish: alias.example.  3600 IN MX    10 mail.alias.example."

    server.add("second.example", "MX", "20 mx.elsewhere.example.")
    wrong = check_mx("second.example", resolver=resolver, config=config)
    assert wrong.status == "wrong"
    assert wrong.found == "10 mail.alias.example, 20 mx.elsewhere.example"
    assert wrong.fix.startswith("replace every MX record of second.example with:")

    nowhere = check_mx("nowhere.example", resolver=resolver, config=config)
    assert (nowhere.status, nowhere.found) == ("missing",
                                               "nowhere.example does not exist in DNS")


def test_servfail_is_an_error_not_a_missing_record(config: mailcloak_settings.Config,
                                                   server: DnsServer,
                                                   resolver: Resolver) -> None:
    server.fail("alias.example")
    check = check_mx("alias.example", resolver=resolver, config=config)
    assert check.status == "error"
    assert check.found == "no DNS server answered (SERVFAIL or refused)"
    assert "try again" in check.fix


def test_a_silent_dns_server_is_a_timeout_error(config: mailcloak_settings.Config) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: queries go unanswered
        port = silent.getsockname()[1]
        resolver = Resolver([parse_server(f"127.0.0.1:{port}")], timeout=0.1, lifetime=0.2)
        checks = [check_mx("alias.example", resolver=resolver, config=config),
                  check_dmarc("alias.example", resolver=resolver, config=config)]
    assert [check.status for check in checks] == ["error", "error"]
    assert [check.found for check in checks] == ["DNS timeout", "DNS timeout"]


# --- SPF ------------------------------------------------------------------------------------


def test_spf_authorising_another_server_is_wrong(config: mailcloak_settings.Config,
                                                 server: DnsServer, resolver: Resolver) -> None:
    server.remove("alias.example", "TXT")
    server.add("alias.example", "TXT", "v=spf1 ip4:198.51.100.1 -all", "google-site=abc")
    check = check_spf("alias.example", [SERVER_IP], resolver=resolver, config=config)
    assert check.status == "wrong"
    assert check.found == f"v=spf1 ip4:198.51.100.1 -all (SPF fail for {SERVER_IP})"
    assert check.fix == (f'authorise this server ({SERVER_IP}): '
                         'alias.example.  3600 IN TXT   "v=spf1 mx -all"')


def test_spf_passes_for_an_ip_listed_by_address(config: mailcloak_settings.Config,
                                                server: DnsServer, resolver: Resolver) -> None:
    server.remove("alias.example", "TXT")
    server.add("alias.example", "TXT", f"v=spf1 ip4:{SERVER_IP} ~all")
    assert check_spf("alias.example", [SERVER_IP], resolver=resolver, config=config).ok
    other = check_spf("alias.example", ["192.0.2.99"], resolver=resolver, config=config)
    assert other.status == "wrong" and "softfail for 192.0.2.99" in other.found


def test_spf_without_ips_tests_the_host_names_addresses(config: mailcloak_settings.Config,
                                                        server: DnsServer,
                                                        resolver: Resolver) -> None:
    assert check_spf("alias.example", resolver=resolver, config=config).ok
    server.remove(HOSTNAME, "A")
    server.add(HOSTNAME, "A", "192.0.2.11")
    server.remove("second.example", "TXT")
    server.add("second.example", "TXT", f"v=spf1 ip4:{SERVER_IP} -all")
    check = check_spf("second.example", resolver=server.resolver(), config=config)
    assert check.status == "wrong" and "fail for 192.0.2.11" in check.found


def test_spf_without_any_address_reads_the_mechanisms(config: mailcloak_settings.Config,
                                                      server: DnsServer,
                                                      resolver: Resolver) -> None:
    server.remove(HOSTNAME, "A")
    assert check_spf("alias.example", resolver=resolver, config=config).ok
    server.remove("second.example", "TXT")
    server.add("second.example", "TXT", "v=spf1 include:_spf.provider.example -all")
    check = check_spf("second.example", resolver=resolver, config=config)
    assert check.status == "wrong" and "give --ip" in check.fix


def test_spf_missing_duplicated_and_unanswered(config: mailcloak_settings.Config,
                                               server: DnsServer, resolver: Resolver) -> None:
    server.remove("alias.example", "TXT")
    missing = check_spf("alias.example", [SERVER_IP], resolver=resolver, config=config)
    assert (missing.status, missing.fix) == (
        "missing", 'publish: alias.example.  3600 IN TXT   "v=spf1 mx -all"')

    server.add("alias.example", "TXT", "v=spf1 mx -all", "v=spf1 a -all")
    twice = check_spf("alias.example", [SERVER_IP], resolver=server.resolver(), config=config)
    assert twice.status == "wrong" and twice.fix.startswith("2 SPF records make SPF fail")

    server.remove("second.example", "TXT")
    server.add("second.example", "TXT", "v=spf1 include:broken.example -all")
    server.fail("broken.example")
    unanswered = check_spf("second.example", [SERVER_IP], resolver=resolver, config=config)
    assert unanswered.status == "error" and "temperror" in unanswered.found


# --- DKIM -----------------------------------------------------------------------------------


def test_dkim_keys_published_through_a_cname_are_ok(config: mailcloak_settings.Config,
                                                    keys: Keys, server: DnsServer,
                                                    resolver: Resolver) -> None:
    for key in keys:
        server.add(f"{key.selector}._domainkey.own.example", "CNAME",
                   f"{key.selector}._domainkey.alias.example.")
    checks = check_dkim("own.example", resolver=resolver, config=config, keys=keys)
    assert [check.status for check in checks] == ["ok", "ok"]
    assert checks[0].found == keys[0].txt_record()


def test_dkim_missing_and_wrong_keys(config: mailcloak_settings.Config, keys: Keys,
                                     server: DnsServer, resolver: Resolver) -> None:
    server.remove("mcr1._domainkey.second.example")
    server.remove("mce1._domainkey.second.example")
    server.add("mce1._domainkey.second.example", "TXT",
               "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    rsa, ed25519 = check_dkim("second.example", resolver=resolver, config=config, keys=keys)
    assert (rsa.status, rsa.found) == ("missing", "no DKIM key")
    assert rsa.fix.startswith('publish: mcr1._domainkey.second.example.  3600 IN TXT   '
                              '"v=DKIM1; k=rsa; p=')
    assert rsa.fix.endswith("(or a CNAME to our key: mcr1._domainkey.second.example.  3600 IN "
                            "CNAME mcr1._domainkey.alias.example.)")
    assert ed25519.status == "wrong"
    assert ed25519.expected == keys[1].txt_record()


def test_the_primary_domains_keys_are_only_offered_as_txt(config: mailcloak_settings.Config,
                                                          keys: Keys, server: DnsServer,
                                                          resolver: Resolver) -> None:
    server.remove("mcr1._domainkey.alias.example")
    rsa = check_dkim("alias.example", resolver=resolver, config=config, keys=keys)[0]
    assert rsa.status == "missing" and "CNAME" not in rsa.fix


# --- DMARC, MTA-STS, TLS-RPT ----------------------------------------------------------------


def test_dmarc_missing_unparseable_and_duplicated(config: mailcloak_settings.Config,
                                                  server: DnsServer,
                                                  resolver: Resolver) -> None:
    server.remove("_dmarc.alias.example")
    missing = check_dmarc("alias.example", resolver=resolver, config=config)
    assert missing.status == "missing"
    assert missing.fix == ('publish: _dmarc.alias.example.  3600 IN TXT   "v=DMARC1; '
                           'p=quarantine; adkim=s; aspf=s; rua=mailto:reports@alias.example"')
    server.add("_dmarc.alias.example", "TXT", "v=DMARC1; p=maybe")
    assert check_dmarc("alias.example", resolver=server.resolver(),
                       config=config).status == "wrong"
    server.add("_dmarc.alias.example", "TXT", "v=DMARC1; p=none")
    twice = check_dmarc("alias.example", resolver=server.resolver(), config=config)
    assert twice.status == "wrong" and twice.fix.startswith("2 DMARC records count as none")
    server.remove("_dmarc.alias.example")
    server.add("_dmarc.alias.example", "TXT", "v=DMARC1; p=none; rua=mailto:me@example.org")
    assert check_dmarc("alias.example", resolver=server.resolver(), config=config).ok


def test_a_stale_mta_sts_id_is_wrong(keys: Keys, server: DnsServer,
                                     resolver: Resolver) -> None:
    enforcing = make_config(mta_sts_mode="enforce")  # a new policy, so a new id
    sts, host = check_mta_sts("alias.example", resolver=resolver, config=enforcing)
    assert sts.status == "wrong"
    assert "senders keep using the policy they cached" in sts.fix
    assert sts.expected != sts.found and sts.expected in sts.fix
    assert host.ok


def test_mta_sts_host_and_tls_rpt_missing(config: mailcloak_settings.Config,
                                          server: DnsServer, resolver: Resolver) -> None:
    server.remove("mta-sts.alias.example")
    server.remove("_smtp._tls.alias.example")
    host = check_mta_sts("alias.example", resolver=resolver, config=config)[1]
    assert host.status == "missing"
    assert host.fix == ("publish: mta-sts.alias.example.  3600 IN CNAME mailcloak.example.")
    report = check_tls_rpt("alias.example", resolver=resolver, config=config)
    assert report.status == "missing"
    server.add("_smtp._tls.alias.example", "TXT", "v=TLSRPTv1")
    assert check_tls_rpt("alias.example", resolver=server.resolver(),
                         config=config).status == "wrong"


def test_tls_rpt_without_a_reports_address_asks_for_the_setting(
        server: DnsServer, resolver: Resolver) -> None:
    config = make_config(reports_address="")
    server.remove("_smtp._tls.alias.example")
    check = check_tls_rpt("alias.example", resolver=resolver, config=config)
    assert check.fix.startswith("set MAILCLOAK_REPORTS_ADDRESS to a mailbox you read, then")
    server.add("_smtp._tls.alias.example", "TXT", check.expected)  # pasted as is
    assert check_tls_rpt("alias.example", resolver=server.resolver(),
                         config=config).status == "wrong"


# --- the host name --------------------------------------------------------------------------


def test_host_address_and_reverse_dns(config: mailcloak_settings.Config, server: DnsServer,
                                      resolver: Resolver) -> None:
    ipv6 = "2001:db8::10"
    server.add_ptr(ipv6, "static.provider.example")
    address, spf, ptr4, ptr6 = check_host([SERVER_IP, ipv6], resolver=resolver, config=config)
    assert (address.status, address.found) == ("wrong", SERVER_IP)
    assert address.fix == "publish: mail.alias.example.  3600 IN AAAA  2001:db8::10"
    assert ptr4.ok
    assert (spf.status, spf.found) == ("wrong", "v=spf1 a -all (SPF fail for 2001:db8::10)")
    assert spf.fix == ("the record is right and names this server by its address records: "
                       "fix the MX and A/AAAA lines so they lead to 2001:db8::10")
    assert (ptr6.status, ptr6.found) == ("wrong", "static.provider.example")
    assert ptr6.name == "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
    assert "reverse DNS to mail.alias.example" in ptr6.fix
    server.remove(HOSTNAME)
    address, spf = check_host(resolver=server.resolver(), config=config)
    assert address.status == "missing" and spf.status == "missing"


def test_results_are_plain_frozen_values() -> None:
    check = RecordCheck("MX", "alias.example", "ok", "10 mail.alias.example", "", "")
    with pytest.raises(AttributeError):
        check.status = "wrong"  # type: ignore[misc]
    assert check.ok



def test_a_subdomain_may_follow_its_parents_dmarc_record(server: DnsServer) -> None:
    config = make_config(domains="alias.example,mail.provider.example")
    server.add("_dmarc.provider.example", "TXT", "v=DMARC1; p=reject; sp=quarantine")
    check = check_dmarc("mail.provider.example", resolver=server.resolver(), config=config)
    assert (check.status, check.found) == (
        "ok", "inherited from _dmarc.provider.example: v=DMARC1; p=reject; sp=quarantine")
    server.remove("_dmarc.provider.example")
    server.add("_dmarc.provider.example", "TXT", "v=DMARC1; p=reject; sp=sometimes")
    check = check_dmarc("mail.provider.example", resolver=server.resolver(), config=config)
    assert check.status == "missing"
    assert check.fix.startswith("publish: _dmarc.mail.provider.example.")
