"""The resolver behind every DNS lookup, against a real DNS server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from mailcloak import settings as mailcloak_settings
from mailcloak.mail import dns as mailcloak_dns
from mailcloak.mail.dns import (
    DnsTemporaryError,
    MxRecord,
    NoSuchDomain,
    Resolver,
    get_resolver,
    parse_server,
    set_resolver,
    use_resolver,
)
from tests.support.dns_server import DnsServer

RECORDS = {
    "example.test": {
        "MX": ["20 mx2.example.test", "10 mx1.example.test"],
        "TXT": ["v=spf1 mx -all"],
    },
    "mx1.example.test": {"A": ["127.0.0.3"], "AAAA": ["::1"]},
    "mx2.example.test": {"A": ["127.0.0.4"]},
    "alias.example.test": {"CNAME": ["mx1.example.test"]},
    "v6only.example.test": {"AAAA": ["::1"]},
    "nomail.example.test": {"MX": ["0 ."]},
    "long.example.test": {"TXT": ["k" * 600]},
    "huge.example.test": {"TXT": ["h" * 3000]},  # larger than any UDP answer: needs TCP
}


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    with DnsServer(RECORDS) as dns_server:
        dns_server.add_ptr("127.0.0.3", "mx1.example.test")
        dns_server.fail("broken.test")
        yield dns_server


@pytest.fixture
def resolver(server: DnsServer) -> Resolver:
    return server.resolver()


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_mx_records_come_sorted_by_preference(resolver: Resolver) -> None:
    assert run(resolver.mx("example.test")) == [
        MxRecord(10, "mx1.example.test"), MxRecord(20, "mx2.example.test")]
    assert resolver.mx_sync("example.test")[0].exchange == "mx1.example.test"


def test_null_mx_is_recognised(resolver: Resolver) -> None:
    records = run(resolver.mx("nomail.example.test"))
    assert [record.is_null for record in records] == [True]


def test_a_name_without_mx_gives_an_empty_list(resolver: Resolver) -> None:
    assert run(resolver.mx("mx1.example.test")) == []


def test_addresses_are_ipv4_then_ipv6(resolver: Resolver) -> None:
    assert run(resolver.addresses("mx1.example.test")) == ["127.0.0.3", "::1"]
    assert run(resolver.addresses("v6only.example.test")) == ["::1"]
    assert resolver.addresses_sync("mx2.example.test") == ["127.0.0.4"]


def test_cname_is_followed(resolver: Resolver) -> None:
    assert run(resolver.addresses("alias.example.test")) == ["127.0.0.3", "::1"]


def test_unknown_name_is_no_such_domain(resolver: Resolver) -> None:
    with pytest.raises(NoSuchDomain, match=r"nowhere\.test"):
        run(resolver.mx("nowhere.test"))
    with pytest.raises(NoSuchDomain):
        run(resolver.addresses("nowhere.test"))
    with pytest.raises(NoSuchDomain):
        resolver.txt_sync("nowhere.test")


def test_repeated_lookups_are_answered_from_the_cache(server: DnsServer, resolver: Resolver,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer, an empty answer, an answer through a CNAME and NXDOMAIN: asked twice, the
    same outcome, the server asked once, and the second time without a resolution set up."""
    lookups = [("example.test", "TXT"), ("mx2.example.test", "TXT"),
               ("alias.example.test", "A"), ("cached-nowhere.test", "TXT")]

    def outcomes() -> list[object]:
        found: list[object] = []
        for name, rdtype in lookups:
            try:
                found.append([str(rdata) for rdata in resolver.records_sync(name, rdtype)])
            except NoSuchDomain as exc:
                found.append(str(exc))
        return found

    before = len(server.queries)
    first = outcomes()
    asked = server.queries[before:]
    monkeypatch.setattr(resolver._sync, "resolve", None)  # not called again: not callable
    assert outcomes() == first == [['"v=spf1 mx -all"'], [], ["127.0.0.3"],
                                   "cached-nowhere.test: no such domain"]
    assert server.queries[before:] == asked
    assert sorted(asked) == sorted(lookups)


def test_servfail_is_temporary(resolver: Resolver) -> None:
    with pytest.raises(DnsTemporaryError, match=r"broken\.test"):
        run(resolver.mx("broken.test"))
    with pytest.raises(DnsTemporaryError):
        run(resolver.addresses("broken.test"))


def test_a_server_too_slow_times_out_as_temporary() -> None:
    with DnsServer(RECORDS, delay=0.5) as slow:
        resolver = slow.resolver(timeout=0.1, lifetime=0.2)
        with pytest.raises(DnsTemporaryError, match="timeout"):
            run(resolver.mx("example.test"))


def test_txt_strings_are_joined(resolver: Resolver) -> None:
    assert run(resolver.txt("example.test")) == [b"v=spf1 mx -all"]
    assert run(resolver.txt("long.example.test")) == [b"k" * 600]


def test_answers_too_large_for_udp_come_over_tcp(resolver: Resolver) -> None:
    assert resolver.txt_sync("huge.example.test") == [b"h" * 3000]


def test_ptr(resolver: Resolver) -> None:
    assert run(resolver.ptr("127.0.0.3")) == ["mx1.example.test"]
    assert resolver.ptr_sync("127.0.0.3") == ["mx1.example.test"]


def test_dkim_dnsfunc_answers_like_dkimpy_expects(resolver: Resolver) -> None:
    assert resolver.dkim_dnsfunc(b"example.test.") == b"v=spf1 mx -all"
    assert resolver.dkim_dnsfunc(b"nowhere.test.") is None
    with pytest.raises(dkim.DnsTimeoutError):
        resolver.dkim_dnsfunc(b"broken.test.")


@pytest.mark.parametrize(("entry", "host", "port"), [
    ("192.0.2.1", "192.0.2.1", 53),
    ("127.0.0.1:5353", "127.0.0.1", 5353),
    ("2001:db8::1", "2001:db8::1", 53),
    ("[2001:db8::1]:5353", "2001:db8::1", 5353),
])
def test_server_entries(entry: str, host: str, port: int) -> None:
    server = parse_server(entry)
    assert (server.address, server.port) == (host, port)


def test_a_bad_server_entry_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_server("dns.example.test")


def test_without_a_resolver_configuration_every_lookup_fails_clearly(tmp_path: Path) -> None:
    resolver = Resolver.from_settings(resolv_conf=str(tmp_path / "missing-resolv.conf"))
    with pytest.raises(DnsTemporaryError, match="MAILCLOAK_DNS_SERVERS"):
        run(resolver.mx("example.test"))
    with pytest.raises(DnsTemporaryError, match="no DNS resolver configured"):
        resolver.txt_sync("example.test")


def test_the_process_resolver_follows_the_settings(monkeypatch: pytest.MonkeyPatch,
                                                   server: DnsServer) -> None:
    monkeypatch.setenv("MAILCLOAK_DNS_SERVERS", server.nameserver)
    mailcloak_settings.reset()
    set_resolver(None)
    try:
        resolver = get_resolver()
        assert resolver.nameservers == [server.nameserver]
        assert resolver.txt_sync("example.test") == [b"v=spf1 mx -all"]
        assert get_resolver() is resolver
    finally:
        set_resolver(None)


def test_tests_can_inject_a_resolver(resolver: Resolver) -> None:
    with use_resolver(resolver):
        assert get_resolver() is resolver
        assert mailcloak_dns.dkim_dnsfunc(b"example.test.") == b"v=spf1 mx -all"
    assert get_resolver() is not resolver
    set_resolver(None)
