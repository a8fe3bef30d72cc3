"""DKIM keys and signatures, verified by dkimpy against the records `mailcloak dns` prints,
served by a real DNS server."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from mailcloak import settings as mailcloak_settings
from mailcloak.mail import dkimkeys
from mailcloak.mail.dkimkeys import (
    ED25519_SELECTOR,
    RSA_SELECTOR,
    DkimKey,
    DkimKeyError,
    create_keys,
    load_keys,
    signing_keys,
)
from mailcloak.mail.dnsrecords import domain_records
from mailcloak.mail.sign import SigningError, sign_message
from tests.support.dns_server import DnsServer

MESSAGE = (
    b"From: Someone <someone@alias.test>\r\n"
    b"To: Friend <friend@example.test>\r\n"
    b"Cc: other@example.test\r\n"
    b"Subject: Lunch on Friday?\r\n"
    b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <abc123@alias.test>\r\n"
    b"In-Reply-To: <prev@example.test>\r\n"
    b"References: <prev@example.test>\r\n"
    b"List-Unsubscribe: <mailto:unsubscribe@alias.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"X-Mailer: something\r\n"
    b"\r\n"
    b"Shall we meet at noon?\r\n"
    b"Caf\xc3\xa9 du coin.\r\n"
)


@pytest.fixture(scope="module")
def dns_server(keys: tuple[DkimKey, DkimKey]) -> Iterator[DnsServer]:
    with DnsServer() as server:
        for record in domain_records("alias.test", "mail.alias.test", keys):
            server.add(record.name, record.type, record.value)
        yield server


def verify_all(message: bytes, server: DnsServer) -> dict[bytes, bool]:
    """Each DKIM-Signature's algorithm and whether it verifies."""
    verifier = dkim.DKIM(message)
    dnsfunc = server.resolver().dkim_dnsfunc
    outcome = {}
    for index in range(2):
        try:
            valid = verifier.verify(idx=index, dnsfunc=dnsfunc)
        except dkim.ValidationError:  # e.g. body hash mismatch
            valid = False
        outcome[verifier.signature_fields[b"a"]] = valid
    return outcome


def test_both_signatures_verify_against_the_published_records(
        keys: tuple[DkimKey, DkimKey], dns_server: DnsServer) -> None:
    signed = sign_message(MESSAGE, "alias.test", keys)
    assert signed.endswith(MESSAGE)
    assert signed.count(b"DKIM-Signature:") == 2
    assert verify_all(signed, dns_server) == {b"rsa-sha256": True, b"ed25519-sha256": True}


def test_signatures_use_relaxed_canonicalisation_and_the_agreed_headers(
        keys: tuple[DkimKey, DkimKey]) -> None:
    signed = sign_message(MESSAGE, "alias.test", keys)
    verifier = dkim.DKIM(signed)
    verifier.verify_headerprep(0)
    fields = verifier.signature_fields
    assert fields[b"c"] == b"relaxed/relaxed"
    assert fields[b"d"] == b"alias.test"
    assert fields[b"s"] == RSA_SELECTOR.encode()
    signed_headers = [name.strip() for name in fields[b"h"].replace(b"\r\n", b"").split(b":")]
    assert signed_headers.count(b"from") == 2  # oversigned
    for name in (b"to", b"cc", b"subject", b"date", b"message-id", b"in-reply-to",
                 b"references", b"list-unsubscribe", b"mime-version", b"content-type",
                 b"content-transfer-encoding"):
        assert name in signed_headers
    assert b"x-mailer" not in signed_headers


def test_a_changed_body_fails_verification(keys: tuple[DkimKey, DkimKey],
                                           dns_server: DnsServer) -> None:
    signed = sign_message(MESSAGE, "alias.test", keys)
    tampered = signed.replace(b"noon", b"midnight")
    assert verify_all(tampered, dns_server) == {b"rsa-sha256": False, b"ed25519-sha256": False}


def test_an_added_from_header_fails_verification(keys: tuple[DkimKey, DkimKey],
                                                 dns_server: DnsServer) -> None:
    signed = sign_message(MESSAGE, "alias.test", keys)
    head, _, body = signed.partition(b"\r\n\r\n")
    forged = head + b"\r\nFrom: attacker@evil.test\r\n\r\n" + body
    assert verify_all(forged, dns_server) == {b"rsa-sha256": False, b"ed25519-sha256": False}


def test_refolded_headers_still_verify(keys: tuple[DkimKey, DkimKey],
                                       dns_server: DnsServer) -> None:
    signed = sign_message(MESSAGE, "alias.test", keys)
    refolded = signed.replace(b"Subject: Lunch on Friday?", b"Subject: Lunch\r\n  on  Friday?")
    assert verify_all(refolded, dns_server) == {b"rsa-sha256": True, b"ed25519-sha256": True}


def test_lf_messages_are_signed_with_lf_headers(keys: tuple[DkimKey, DkimKey],
                                                dns_server: DnsServer) -> None:
    message = MESSAGE.replace(b"\r\n", b"\n")
    signed = sign_message(message, "alias.test", keys)
    assert b"\r" not in signed
    assert verify_all(signed, dns_server) == {b"rsa-sha256": True, b"ed25519-sha256": True}


def test_a_message_whose_header_does_not_parse_is_refused(keys: tuple[DkimKey, DkimKey]) -> None:
    with pytest.raises(SigningError):
        sign_message(b"this is not a header line\r\n\r\nbody\r\n", "alias.test", keys)


def test_keys_are_created_owner_only_and_never_replaced(tmp_path: Path) -> None:
    assert create_keys(tmp_path) == [(RSA_SELECTOR, True), (ED25519_SELECTOR, True)]
    for selector in (RSA_SELECTOR, ED25519_SELECTOR):
        mode = (tmp_path / f"{selector}.pem").stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
    first = load_keys(tmp_path)
    assert create_keys(tmp_path) == [(RSA_SELECTOR, False), (ED25519_SELECTOR, False)]
    assert load_keys(tmp_path) == first
    rsa_key, ed_key = first
    assert (rsa_key.algorithm, ed_key.algorithm) == ("rsa", "ed25519")
    assert len(rsa_key.public) > 300  # 2048-bit modulus
    assert ed_key.txt_record().startswith("v=DKIM1; k=ed25519; p=")


def test_local_mode_creates_keys_on_first_use_and_loads_them_once(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAILCLOAK_DATA_DIR", str(tmp_path))
    mailcloak_settings.reset()
    dkimkeys.forget_loaded_keys()
    keys = signing_keys()
    assert (tmp_path / "dkim" / f"{RSA_SELECTOR}.pem").exists()
    (tmp_path / "dkim" / f"{RSA_SELECTOR}.pem").unlink()
    assert signing_keys() is keys  # cached: the hot path reads no files
    dkimkeys.forget_loaded_keys()


def test_production_mode_asks_for_dkim_init_when_keys_are_missing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = mailcloak_settings.load({
        "MAILCLOAK_MODE": "production", "MAILCLOAK_DATA_DIR": str(tmp_path),
        "MAILCLOAK_DOMAINS": "example.org", "MAILCLOAK_PUBLIC_URL": "https://example.org",
        "MAILCLOAK_TLS_CERT": "/cert.pem", "MAILCLOAK_TLS_KEY": "/key.pem",
        "MAILCLOAK_SECRET_KEY": "s" * 40,
    })
    with pytest.raises(DkimKeyError, match="mailcloak dkim init"):
        signing_keys(config)
    assert not (tmp_path / "dkim").exists()
