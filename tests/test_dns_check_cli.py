"""`mailcloak dns` and `mailcloak dns check` end to end: the records the first prints, served by
a DNS server on loopback, are what the second accepts; broken ones get a fix and exit 1."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from mailcloak import settings as mailcloak_settings
from mailcloak.cli import main
from mailcloak.mail import dns as mail_dns
from mailcloak.mail.dkimkeys import create_keys
from tests.support.dns_server import DnsServer

SERVER_IP = "192.0.2.10"


def serve_zone(server: DnsServer, zone_text: str) -> None:
    """Serve the records exactly as `mailcloak dns` prints them."""
    for line in zone_text.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        name, _ttl, _class, rdtype, value = line.split(None, 4)
        if rdtype == "TXT":
            rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, value)
            server.add(name, rdtype, tuple(rdata.strings))  # type: ignore[attr-defined]
        else:
            server.add(name, rdtype, value)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("data")
    create_keys(directory / "dkim")
    return directory


@pytest.fixture
def instance(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"DATA_DIR": str(data_dir), "DOMAINS": "alias.example,second.example",
                        "HOSTNAME": "mail.alias.example",
                        "PUBLIC_URL": "https://mailcloak.example",
                        "REPORTS_ADDRESS": "reports@alias.example"}.items():
        monkeypatch.setenv(f"MAILCLOAK_{name}", value)
    mailcloak_settings.reset()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def published(instance: None, capsys: pytest.CaptureFixture[str]) -> Iterator[DnsServer]:
    """A DNS server serving what `mailcloak dns --ip SERVER_IP` prints."""
    status, zone_text, _ = run(capsys, "dns", "--ip", SERVER_IP)
    assert status == 0
    with DnsServer() as server:
        serve_zone(server, zone_text)
        server.add("mailcloak.example", "A", "192.0.2.80")
        yield server


def check(capsys: pytest.CaptureFixture[str], server: DnsServer,
          *argv: str) -> tuple[int, str, str]:
    """`mailcloak dns check ...` with a fresh resolver (no answers cached from before)."""
    with mail_dns.use_resolver(server.resolver()):
        return run(capsys, "dns", "check", *argv)


def lines_about(out: str, kind: str, name: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[1:2] == [kind.split()[0]]
                 and f" {name} " in line + " ")
    following = lines[start + 1:start + 2]
    return lines[start:start + 1] + [line for line in following if "fix:" in line]


def test_what_dns_prints_is_what_dns_check_accepts(published: DnsServer,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = check(capsys, published, "--ip", SERVER_IP)
    assert (status, err) == (0, "")
    assert out.splitlines()[-1] == "all 19 records are ok"
    assert "fix:" not in out
    ok_line = lines_about(out, "MX", "second.example")[0]
    assert ok_line.split() == ["ok", "MX", "second.example", "10", "mail.alias.example"]
    assert lines_about(out, "PTR", "10.2.0.192.in-addr.arpa")[0].split()[0] == "ok"


def test_missing_and_wrong_records_exit_1_with_the_fix(published: DnsServer,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    published.remove("second.example", "MX")
    published.remove("mce1._domainkey.alias.example")
    published.add("mce1._domainkey.alias.example", "TXT", "v=DKIM1; k=ed25519; p=b2xk")
    status, out, _ = check(capsys, published, "--ip", SERVER_IP)
    assert status == 1
    mx = lines_about(out, "MX", "second.example")
    assert mx[0].split()[:3] == ["missing", "MX", "second.example"]
    assert mx[1].split() == ["fix:", "publish:", "second.example.", "3600", "IN", "MX", "10",
                             "mail.alias.example."]
    dkim = lines_about(out, "DKIM", "mce1._domainkey.alias.example")
    assert dkim[0].split()[:4] == ["wrong", "DKIM", "mce1._domainkey.alias.example",
                                   "v=DKIM1;"]
    assert 'IN TXT   "v=DKIM1; k=ed25519; p=' in dkim[1]
    # SPF "mx" cannot pass without an MX: the same missing record explains it
    spf = lines_about(out, "SPF", "second.example")
    assert spf[0].split()[0] == "wrong"
    assert spf[1].split(None, 1)[1] == ("the record is right and names this server by the MX: "
                                        f"fix the MX and A/AAAA lines so they lead to {SERVER_IP}")
    assert out.splitlines()[-1] == "3 of 19 records need attention (1 missing, 2 wrong)"


def test_servfail_is_reported_as_a_dns_error(published: DnsServer,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    published.fail("_dmarc.alias.example")
    status, out, _ = check(capsys, published, "alias.example")
    assert status == 1
    dmarc = lines_about(out, "DMARC", "_dmarc.alias.example")
    assert dmarc[0].split()[:2] == ["error", "DMARC"]
    assert "SERVFAIL" in dmarc[0] and "try again later" in dmarc[1]
    assert out.splitlines()[-1].endswith("(1 error)")


def test_one_domain_and_ips_given_before_check(published: DnsServer,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with mail_dns.use_resolver(published.resolver()):
        status, out, _ = run(capsys, "dns", "--ip", SERVER_IP, "check", "Second.Example.")
    assert status == 0
    subjects = [line for line in out.splitlines() if not line.startswith(" ")]
    assert subjects[:2] == ["second.example", "mail.alias.example"]
    assert "10.2.0.192.in-addr.arpa" in out


def test_an_unknown_domain_is_a_usage_error(instance: None,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "dns", "check", "elsewhere.example")
    assert (status, out) == (2, "")
    assert err == ("mailcloak: elsewhere.example is not a domain of this instance "
                   "(MAILCLOAK_DOMAINS: alias.example, second.example)\n")


def test_a_bad_ip_is_a_usage_error(instance: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["dns", "check", "--ip", "mail.example"])
    assert exit_info.value.code == 2
    assert "not an IP address" in capsys.readouterr().err


def test_missing_keys_in_production_are_a_clear_error(tmp_path: Path, instance: None,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    for name, value in {"DATA_DIR": str(tmp_path), "MODE": "production",
                        "TLS_CERT": str(tmp_path / "cert.pem"),
                        "TLS_KEY": str(tmp_path / "key.pem"),
                        "SECRET_KEY": "s" * 40}.items():
        monkeypatch.setenv(f"MAILCLOAK_{name}", value)
    mailcloak_settings.reset()
    for argv in (["dns"], ["dns", "check"]):
        status, out, err = run(capsys, *argv)
        assert (status, out) == (1, "")
        assert err.startswith("mailcloak: DKIM key ") and "run `mailcloak dkim init`" in err


def test_a_resolver_that_never_answers_is_one_clear_error(instance: None,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: queries go unanswered
        resolver = mail_dns.Resolver([mail_dns.parse_server(
            f"127.0.0.1:{silent.getsockname()[1]}")], timeout=0.1, lifetime=0.2)
        with mail_dns.use_resolver(resolver):
            status, out, err = run(capsys, "dns", "check")
    assert (status, out) == (1, "")
    assert err == ("mailcloak: DNS does not answer (DNS timeout): check MAILCLOAK_DNS_SERVERS "
                   "or /etc/resolv.conf\n")
