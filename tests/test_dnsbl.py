"""DNS blocklists for the connecting IP and for link domains, against fake list zones served by
a real DNS server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailcloak import settings as mailcloak_settings
from mailcloak.mail import dns as mail_dns
from mailcloak.mail.dnsbl import (
    blocklist_reasons,
    check_domains,
    check_ip,
    ip_query_name,
    link_domains,
)
from tests.support.dns_server import DnsServer

LISTED_IP = "81.2.69.160"  # a global address: only its name is asked, of the loopback server
CLEAN_IP = "81.2.69.161"
REFUSED_IP = "81.2.69.162"
LISTED_V6 = "2a00:1450:4001:80b::2005"

LINKS = (
    b"From: shop@example.test\r\n"
    b"Subject: Deals\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b"\r\n'
    b"\r\n"
    b"--b\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Visit https://www.Clean.test/deals and http://user@tracker.spam.test:8080/x=\r\n"
    b"?id=3D1 or www.shop.example.test\r\n"
    b"--b\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"PGEgaHJlZj0iaHR0cHM6Ly9sb2dpbi5ldmlsLnRlc3QvIj5DbGljazwvYT4=\r\n"  # login.evil.test
    b"--b--\r\n"
)


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    with DnsServer({
        "160.69.2.81.bl.test": {"A": ["127.0.0.2"]},
        "160.69.2.81.other-bl.test": {"A": ["127.0.0.4"]},
        "162.69.2.81.bl.test": {"A": ["127.255.255.254"]},  # the list refusing our resolver
        "spam.test.uribl.test": {"A": ["127.0.1.2"]},
        "evil.test.uribl.test": {"A": ["127.0.1.2"]},
        "clean.test.uribl.test": {"A": ["127.0.1.255"]},  # the list's error code
        "example.test.uribl.test": {"A": ["127.0.0.1"]},  # another list's "query refused"
        ip_query_name(LISTED_V6, "bl.test"): {"A": ["127.0.0.2"]},
    }) as dns_server:
        dns_server.fail("161.69.2.81.broken-bl.test")
        yield dns_server


@pytest.fixture(autouse=True)
def resolver(server: DnsServer) -> Iterator[mail_dns.Resolver]:
    server.queries.clear()
    with mail_dns.use_resolver(server.resolver()) as fresh:
        yield fresh


def test_query_names_reverse_the_address() -> None:
    assert ip_query_name("81.2.69.160", "bl.test") == "160.69.2.81.bl.test"
    assert ip_query_name("::ffff:81.2.69.160", "bl.test") == "160.69.2.81.bl.test"
    v6 = ip_query_name(LISTED_V6, "bl.test")
    assert v6.endswith(".b.0.8.0.1.0.0.4.0.5.4.1.0.0.a.2.bl.test")
    assert len(v6.removesuffix(".bl.test").split(".")) == 32


def test_a_listed_ip_gives_a_reason_per_list() -> None:
    reasons = check_ip(LISTED_IP, ["bl.test", "other-bl.test", "empty-bl.test"])
    assert [(r.code, r.text, r.score) for r in reasons] == [
        ("DNSBL_LISTED", f"The sending server {LISTED_IP} is listed by bl.test", 3.0),
        ("DNSBL_LISTED", f"The sending server {LISTED_IP} is listed by other-bl.test", 3.0)]
    assert check_ip(LISTED_V6, ["bl.test"])[0].code == "DNSBL_LISTED"


@pytest.mark.parametrize("ip", [CLEAN_IP, REFUSED_IP])
def test_unlisted_or_refused_ips_give_nothing(ip: str) -> None:
    assert check_ip(ip, ["bl.test", "broken-bl.test"]) == ()


@pytest.mark.parametrize("ip", ["127.0.0.2", "10.1.2.3", "192.168.1.1", "::1", "fe80::1",
                                "not an ip"])
def test_addresses_no_list_knows_are_never_asked_about(ip: str, server: DnsServer) -> None:
    assert check_ip(ip, ["bl.test"]) == ()
    assert server.queries == []


def test_link_domains_come_from_every_text_part_decoded() -> None:
    assert link_domains(LINKS) == ["www.clean.test", "tracker.spam.test",
                                   "www.shop.example.test", "login.evil.test"]


def test_listed_link_domains_are_looked_up_by_their_registered_domain(server: DnsServer) -> None:
    reasons = check_domains(link_domains(LINKS), ["uribl.test"])
    assert [r.text for r in reasons] == [
        "The message links to spam.test, which is listed by uribl.test",
        "The message links to evil.test, which is listed by uribl.test"]
    assert {r.code for r in reasons} == {"URIBL_LISTED"}
    asked = {name for name, _ in server.queries}
    assert asked == {"clean.test.uribl.test", "spam.test.uribl.test",
                     "example.test.uribl.test", "evil.test.uribl.test"}


def config(tmp_path: Path, **values: str) -> mailcloak_settings.Config:
    env = {"MAILCLOAK_DATA_DIR": str(tmp_path)}
    env.update({f"MAILCLOAK_{name.upper()}": value for name, value in values.items()})
    return mailcloak_settings.load(env)


def test_blocklists_are_off_by_default(tmp_path: Path, server: DnsServer) -> None:
    assert blocklist_reasons(LINKS, LISTED_IP, config(tmp_path)) == ()
    assert server.queries == []


def test_configured_lists_are_all_asked(tmp_path: Path) -> None:
    settings = config(tmp_path, dnsbl="bl.test, Other-BL.test", uribl="uribl.test")
    assert settings.dnsbl == ("bl.test", "other-bl.test")
    codes = [r.code for r in blocklist_reasons(LINKS, LISTED_IP, settings)]
    assert codes == ["DNSBL_LISTED", "DNSBL_LISTED", "URIBL_LISTED", "URIBL_LISTED"]


def test_a_bad_zone_setting_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(mailcloak_settings.ConfigError, match="MAILCLOAK_DNSBL"):
        config(tmp_path, dnsbl="not a zone")
