"""The DNS records operators publish, and `mailcloak dns` printing them ready to paste."""

from __future__ import annotations

import re
from pathlib import Path

import dns.zone
import pytest

from mailcloak import settings as mailcloak_settings
from mailcloak.cli import main
from mailcloak.mail.dkimkeys import DkimKey
from mailcloak.mail.dnsrecords import (
    SERVER_IP_PLACEHOLDER,
    Record,
    format_zone,
    mta_sts_id,
    mta_sts_policy,
    required_records,
    txt_strings,
)


def config(**values: str) -> mailcloak_settings.Config:
    env = {"MAILCLOAK_DOMAINS": "alias.example,second.example",
           "MAILCLOAK_HOSTNAME": "mail.alias.example"}
    env.update({f"MAILCLOAK_{name.upper()}": value for name, value in values.items()})
    return mailcloak_settings.load(env, create_secret=False)


def by_name_and_type(records: list[Record]) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for record in records:
        found.setdefault((record.name, record.type), []).append(record.value)
    return found


def test_every_domain_gets_mx_spf_both_dkim_keys_and_dmarc(keys: tuple[DkimKey, DkimKey]
                                                           ) -> None:
    records = by_name_and_type(required_records(config(reports_address="dmarc@alias.example"),
                                                keys, ["192.0.2.10"]))
    for domain in ("alias.example", "second.example"):
        assert records[(domain, "MX")] == ["10 mail.alias.example"]
        assert records[(domain, "TXT")] == ["v=spf1 mx -all"]
        assert records[(f"mcr1._domainkey.{domain}", "TXT")] == [keys[0].txt_record()]
        assert records[(f"mce1._domainkey.{domain}", "TXT")] == [keys[1].txt_record()]
        dmarc = records[(f"_dmarc.{domain}", "TXT")][0]
        assert dmarc.startswith("v=DMARC1; p=quarantine;")
        assert "adkim=s" in dmarc and "aspf=s" in dmarc
        assert "rua=mailto:dmarc@alias.example" in dmarc


def test_the_mail_host_gets_address_spf_and_reverse_dns(keys: tuple[DkimKey, DkimKey]) -> None:
    records = by_name_and_type(
        required_records(config(), keys, ["192.0.2.10", "2001:db8::10"]))
    assert records[("mail.alias.example", "A")] == ["192.0.2.10"]
    assert records[("mail.alias.example", "AAAA")] == ["2001:db8::10"]
    assert records[("mail.alias.example", "TXT")] == ["v=spf1 a -all"]
    assert records[("10.2.0.192.in-addr.arpa", "PTR")] == ["mail.alias.example"]
    assert len([key for key in records if key[1] == "PTR"]) == 2


def test_without_the_server_ip_placeholders_say_what_to_fill_in(
        keys: tuple[DkimKey, DkimKey]) -> None:
    records = required_records(config(), keys)
    address = next(r for r in records if r.type == "A" and r.name == "mail.alias.example")
    assert address.value == SERVER_IP_PLACEHOLDER
    assert any(r.type == "PTR" and r.value == "mail.alias.example" for r in records)


def test_long_txt_values_are_split_into_255_character_strings() -> None:
    value = "v=DKIM1; k=rsa; p=" + "A" * 392
    parts = txt_strings(value)
    assert [len(part) for part in parts] == [255, 155]
    assert "".join(parts) == value


def test_the_zone_text_parses_and_carries_the_same_records(keys: tuple[DkimKey, DkimKey]) -> None:
    records = required_records(config(), keys, ["192.0.2.10"])
    text = format_zone(records)
    assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', text))
    zone = dns.zone.from_text(text, origin="example.", relativize=False, check_origin=False)
    dkim_txt = zone.find_rdataset("mcr1._domainkey.alias.example.", "TXT")
    assert b"".join(next(iter(dkim_txt)).strings).decode() == keys[0].txt_record()
    mx = next(iter(zone.find_rdataset("second.example.", "MX")))
    assert (mx.preference, mx.exchange.to_text()) == (10, "mail.alias.example.")


def test_mailcloak_dns_prints_the_records(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MAILCLOAK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MAILCLOAK_DOMAINS", "alias.example")
    mailcloak_settings.reset()
    assert main(["dkim", "init"]) == 0
    assert "created DKIM key mcr1" in capsys.readouterr().out
    assert main(["dns", "--ip", "192.0.2.10"]) == 0
    out = capsys.readouterr().out
    assert "mcr1._domainkey.alias.example." in out
    assert "_dmarc.alias.example." in out
    assert "10.2.0.192.in-addr.arpa." in out
    assert main(["dkim", "init"]) == 0
    assert "kept existing DKIM key mcr1" in capsys.readouterr().out


def test_mailcloak_dns_refuses_a_bad_ip(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["dns", "--ip", "mail.example"])
    assert exit_info.value.code == 2
    assert "not an IP address" in capsys.readouterr().err


def records_of(config_: mailcloak_settings.Config, keys: tuple[DkimKey, DkimKey]
               ) -> dict[tuple[str, str], list[str]]:
    return by_name_and_type(required_records(config_, keys, ["192.0.2.10"]))


def test_mta_sts_record_names_the_policy_and_its_host(keys: tuple[DkimKey, DkimKey]) -> None:
    testing = config(public_url="https://mailcloak.example")
    records = records_of(testing, keys)
    policy = mta_sts_policy(testing)
    assert policy == ("version: STSv1\r\nmode: testing\r\nmx: mail.alias.example\r\n"
                      "max_age: 604800\r\n")
    assert records[("_mta-sts.alias.example", "TXT")] == [f"v=STSv1; id={mta_sts_id(policy)}"]
    assert re.fullmatch(r"[0-9a-f]{20}", mta_sts_id(policy))  # RFC 8461: 1-32 alphanumerics
    assert records[("mta-sts.second.example", "CNAME")] == ["mailcloak.example"]
    enforcing = records_of(config(public_url="https://mailcloak.example",
                                  mta_sts_mode="enforce"), keys)
    assert enforcing[("_mta-sts.alias.example", "TXT")] != records[("_mta-sts.alias.example",
                                                                    "TXT")]
    by_ip = records_of(config(public_url="https://[2001:db8::80]"), keys)
    assert by_ip[("mta-sts.alias.example", "AAAA")] == ["2001:db8::80"]


def test_reports_go_to_the_configured_mailbox(keys: tuple[DkimKey, DkimKey]) -> None:
    records = records_of(config(reports_address="reports@elsewhere.example"), keys)
    assert records[("_smtp._tls.alias.example", "TXT")] == [
        "v=TLSRPTv1; rua=mailto:reports@elsewhere.example"]
    assert records[("_dmarc.second.example", "TXT")] == [
        "v=DMARC1; p=quarantine; adkim=s; aspf=s; rua=mailto:reports@elsewhere.example"]
    # RFC 7489 7.1: the other domain agrees to receive reports about ours
    assert records[("second.example._report._dmarc.elsewhere.example", "TXT")] == ["v=DMARC1"]
    same_domain = records_of(config(reports_address="reports@alias.example"), keys)
    assert not [name for name, _ in same_domain if "._report._dmarc." in name
                and name.startswith("alias.example.")]


def test_without_a_reports_address_dmarc_has_no_rua_and_says_so(
        keys: tuple[DkimKey, DkimKey]) -> None:
    records = required_records(config(), keys)
    dmarc = next(r for r in records if r.name == "_dmarc.alias.example")
    assert dmarc.value == "v=DMARC1; p=quarantine; adkim=s; aspf=s"
    assert "MAILCLOAK_REPORTS_ADDRESS" in dmarc.purpose and "p=none" in dmarc.purpose
    tls_rpt = next(r for r in records if r.name == "_smtp._tls.alias.example")
    assert tls_rpt.value == "v=TLSRPTv1; rua=mailto:<a mailbox you read>"
    assert not any("._report._dmarc." in r.name for r in records)


def test_mailcloak_dns_prints_a_section_per_domain(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MAILCLOAK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MAILCLOAK_DOMAINS", "alias.example,second.example")
    mailcloak_settings.reset()
    assert main(["dns"]) == 0
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith(";;")]
    assert headers == [
        ";; alias.example: publish in the zone of alias.example",
        ";; second.example: publish in the zone of second.example",
        ";; mail.alias.example: the mail server's own name and reverse DNS"]
    second = out.split(headers[1])[1].split(headers[2])[0]
    names = {line.split()[0] for line in second.splitlines() if line and line[0] != ";"}
    assert names == {"second.example.", "mcr1._domainkey.second.example.",
                     "mce1._domainkey.second.example.", "_dmarc.second.example.",
                     "_mta-sts.second.example.", "mta-sts.second.example.",
                     "_smtp._tls.second.example."}


@pytest.mark.parametrize(("name", "value"), [
    ("REPORTS_ADDRESS", "not an address"), ("REPORTS_ADDRESS", "a@b.example,c@d.example"),
    ("REPORTS_ADDRESS", "nobody@localhost"), ("MTA_STS_MAX_AGE", "400d"),
    ("MTA_STS_MODE", "none")])
def test_bad_report_and_policy_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(mailcloak_settings.ConfigError, match=f"MAILCLOAK_{name}="):
        config(**{name.lower(): value})
