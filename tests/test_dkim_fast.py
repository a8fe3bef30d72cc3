"""MessageSigner makes dkimpy's DKIM-Signature headers byte for byte, for messages of many
shapes, and they verify with dkimpy against the records `mailcloak dns` prints."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import dkim
import pytest
from dkim.canonicalization import Relaxed

from mailcloak.mail import dkim_fast
from mailcloak.mail.dkim_fast import MessageSigner, parse, relaxed_body, relaxed_headers
from mailcloak.mail.dkimkeys import DkimKey
from mailcloak.mail.dnsrecords import domain_records
from mailcloak.mail.sign import SigningError, headers_to_sign, sign_message
from tests.support.dns_server import DnsServer
from tests.support.message_shapes import CORPUS, MESSAGES, WHITESPACE_BODY

FIXED_TIME = 1796385600.75  # the t= tag both ways (dkimpy reads time.time() itself)

DOMAINS = ("alias.test", "Bücher.test.")


@pytest.fixture(scope="module")
def dns_server(keys: tuple[DkimKey, DkimKey]) -> Iterator[DnsServer]:
    with DnsServer() as server:
        for domain in ("alias.test", "xn--bcher-kva.test"):
            for record in domain_records(domain, "mail.alias.test", keys):
                server.add(record.name, record.type, record.value)
        yield server


@pytest.fixture
def fixed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: FIXED_TIME)


@pytest.fixture(autouse=True)
def dkimpy_canonicalisation(monkeypatch: pytest.MonkeyPatch) -> None:
    """dkimpy as it ships, for the reference signatures: install() (done when the ARC module
    is imported) gives it our canonicalisation, which must not be compared with itself."""
    monkeypatch.setattr(Relaxed, "canonicalize_headers",
                        staticmethod(dkim_fast.DKIMPY_RELAXED_HEADERS))
    monkeypatch.setattr(Relaxed, "canonicalize_body", staticmethod(dkim_fast.DKIMPY_RELAXED_BODY))


def dkimpy_signed(content: bytes, domain: str, keys: tuple[DkimKey, ...]) -> bytes:
    """What sign_message produced before MessageSigner: dkimpy's DKIM.sign(), once per key."""
    linesep = b"\r\n" if b"\r\n" in content[:1000] else b"\n"
    signer = dkim.DKIM(content, linesep=linesep)
    include = headers_to_sign(signer.headers)
    signing_domain = domain.strip().rstrip(".").lower().encode("idna")
    signatures = [
        signer.sign(key.selector.encode(), signing_domain, key.private,
                    signature_algorithm=key.signature_algorithm,
                    canonicalize=(b"relaxed", b"relaxed"), include_headers=include)
        for key in keys
    ]
    return b"".join(signatures) + content


@pytest.mark.usefixtures("fixed_time")
@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("shape", MESSAGES)
def test_same_bytes_as_dkimpy(shape: str, domain: str, keys: tuple[DkimKey, DkimKey]) -> None:
    content = MESSAGES[shape]
    ours = sign_message(content, domain, keys)
    assert ours == dkimpy_signed(content, domain, keys)
    assert ours.count(b"DKIM-Signature: ") == 2
    assert f"t={int(FIXED_TIME)};".encode() in ours


@pytest.mark.usefixtures("fixed_time")
def test_same_bytes_as_dkimpy_on_the_test_corpus(keys: tuple[DkimKey, DkimKey]) -> None:
    assert len(CORPUS) > 100
    for path in CORPUS:
        content = path.read_bytes()
        for variant in (content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), content):
            try:
                expected: bytes | str = dkimpy_signed(variant, "alias.test", keys)
            except dkim.MessageFormatError:  # a corpus message whose header does not parse
                expected = "refused"
            try:
                ours: bytes | str = sign_message(variant, "alias.test", keys)
            except SigningError:
                ours = "refused"
            assert ours == expected, path.name


@pytest.mark.parametrize("shape", MESSAGES)
def test_signatures_verify(shape: str, keys: tuple[DkimKey, DkimKey],
                           dns_server: DnsServer) -> None:
    signed = sign_message(MESSAGES[shape], "Bücher.test.", keys)
    verifier = dkim.DKIM(signed)
    dnsfunc = dns_server.resolver().dkim_dnsfunc
    assert [verifier.verify(idx=index, dnsfunc=dnsfunc) for index in range(2)] == [True, True]


@pytest.mark.usefixtures("fixed_time")
def test_one_signer_signs_with_either_key_in_either_order(keys: tuple[DkimKey, DkimKey]) -> None:
    content = MESSAGES["folded headers"]
    assert (sign_message(content, "alias.test", keys[::-1])
            == dkimpy_signed(content, "alias.test", keys[::-1]))
    signer = MessageSigner(content)
    include = headers_to_sign(signer.headers)
    ed25519 = keys[1]
    twice = [signer.sign(selector=ed25519.selector.encode(), domain=b"alias.test",
                         private_key=ed25519.private, algorithm=ed25519.signature_algorithm,
                         include_headers=include, timestamp=int(FIXED_TIME)) for _ in range(2)]
    assert twice[0] == twice[1]  # Ed25519 is deterministic: signing again changes nothing


def test_relaxed_body_matches_dkimpy_on_random_whitespace() -> None:
    pieces = [b" ", b"  ", b"\t", b" \t ", b"\r\n", b"\r\n\r\n", b"\r", b"a", b"b c", b"\xc3\xa9"]
    rng = random.Random(20261204)
    bodies = [b"", b"\r\n", b"\r\n\r\n", b" ", b"\t\r\n"] + [
        b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 40))) for _ in range(3000)]
    for body in bodies:
        assert relaxed_body(body) == dkim_fast.DKIMPY_RELAXED_BODY(body), body


def test_relaxed_headers_match_dkimpy_on_random_fields() -> None:
    pieces = [b" ", b"  ", b"\t", b" \t ", b"\r\n", b"\r\n ", b"\n\t", b"\r", b"\n", b"a",
              b"b c", b"\xc3\xa9", b"\x0b", b"\x0c"]
    names = [b"Subject", b"subject ", b"X-Odd\t", b"FROM"]
    rng = random.Random(5122026)
    fields = [(rng.choice(names), b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 30))))
              for _ in range(3000)]
    fields += [(name, value) for name, value in parse(MESSAGES["folded headers"])[0]]
    for field in fields:
        assert relaxed_headers([field]) == dkim_fast.DKIMPY_RELAXED_HEADERS([field]), field


def test_install_gives_dkimpy_the_same_canonicalisation() -> None:
    """What dkimpy signs and verifies after install() (its ARC seal, DKIM and ARC checks)."""
    assert dkim_fast.DKIMPY_RELAXED_BODY is not relaxed_body
    message = MESSAGES["folded headers"] + WHITESPACE_BODY
    headers, body = dkim.rfc822_parse(message)
    expected = (dkim_fast.DKIMPY_RELAXED_HEADERS(headers), dkim_fast.DKIMPY_RELAXED_BODY(body))
    dkim_fast.install()
    assert (Relaxed.canonicalize_headers(headers), Relaxed.canonicalize_body(body)) == expected


def dkimpy_parse(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes] | str:
    try:
        headers, body = dkim.rfc822_parse(message)
    except (dkim.MessageFormatError, IndexError):
        return "refused"
    return [(name, value) for name, value in headers], body


def our_parse(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes] | str:
    try:
        return parse(message)
    except dkim.MessageFormatError:
        return "refused"


def test_parse_matches_dkimpy_on_random_messages() -> None:
    pieces = [b"From: a", b"To:b", b"X-Y: c d", b"From x", b"\r\n", b"\n", b"\r", b" ", b"\t",
              b"body", b":", b"\r\n\r\n", b"\n\n", b"\xc3\xa9"]
    rng = random.Random(4122026)
    messages = list(MESSAGES.values()) + [
        b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 30))) for _ in range(3000)]
    for message in messages:
        assert our_parse(message) == dkimpy_parse(message), message


def test_a_message_whose_header_does_not_parse_is_refused(keys: tuple[DkimKey, DkimKey]) -> None:
    with pytest.raises(SigningError, match="Unexpected characters"):
        sign_message(b"this is not a header line\r\n\r\nbody\r\n", "alias.test", keys)
    with pytest.raises(SigningError, match="folded line"):  # dkimpy: IndexError
        sign_message(b" continued: x\r\nFrom: a@alias.test\r\n\r\nbody\r\n", "alias.test", keys)


def test_an_unusable_key_is_a_signing_error(keys: tuple[DkimKey, DkimKey]) -> None:
    rsa_key, ed25519_key = keys
    broken = (DkimKey(rsa_key.selector, "rsa", b"not a PEM key", rsa_key.public),
              DkimKey(ed25519_key.selector, "ed25519", b"c2hvcnQ=", ed25519_key.public))
    for key in broken:
        with pytest.raises(SigningError, match="key"):
            sign_message(MESSAGES["plain 8-bit"], "alias.test", (key,))
