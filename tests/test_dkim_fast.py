"""MessageSigner makes dkimpy's DKIM-Signature headers byte for byte, for messages of many
shapes, and they verify with dkimpy against the records `mailcloak dns` prints."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
from dkim.canonicalization import Relaxed

from mailcloak.mail import dkim_fast
from mailcloak.mail.dkim_fast import MessageSigner, parse, relaxed_body, relaxed_headers
from mailcloak.mail.dkimkeys import DkimKey
from mailcloak.mail.dnsrecords import domain_records
from mailcloak.mail.sign import SigningError, headers_to_sign, sign_message
from tests.support.dns_server import DnsServer

FIXED_TIME = 1796385600.75  # the t= tag both ways (dkimpy reads time.time() itself)

HEAD = (
    b"From: Someone <someone@alias.test>\r\n"
    b"To: Friend <friend@example.test>\r\n"
    b"Subject: Lunch on Friday?\r\n"
    b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <abc123@alias.test>\r\n"
)
FOLDED_HEAD = (
    b"Received: from mx.example.test (mx.example.test [192.0.2.1])\r\n"
    b"\tby mail.alias.test with ESMTPS id 4Xyz\r\n"
    b"\tfor <k3v9x2q7m1p0a8zt@alias.test>; Fri, 04 Dec 2026 10:00:01 +0000\r\n"
    b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=alias.test; s=mcr1; t=1796385600;\r\n"
    b"        b=abcdefghijklmnopqrstuvwxyz0123456789\r\n"
    b"Authentication-Results: mail.alias.test; spf=pass smtp.mailfrom=example.test\r\n"
    b"From:   \"Someone,  Esq.\"\r\n <someone@alias.test>  \r\n"
    b"To: Friend <friend@example.test>,\r\n\t Other <other@example.test>\r\n"
    b"cc: first@example.test\r\n"
    b"CC:   second@example.test \t\r\n"
    b"Subject: =?utf-8?q?Caf=C3=A9?= and a subject folded\r\n"
    b"   over   three\r\n \t lines\r\n"
    b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <abc123@alias.test>\r\n"
    b"In-Reply-To: <prev@example.test>\r\n"
    b"References: <a@example.test>\r\n <b@example.test>\r\n\t<c@example.test>\r\n"
    b"Reply-To: replies@alias.test\r\n"
    b"List-Id: The list <list.example.test>\r\n"
    b"List-Unsubscribe: <mailto:unsubscribe@alias.test>, <https://alias.test/u/1>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/alternative;\r\n boundary=\"b1\"\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"X-Mailer: something\r\n"
)
WHITESPACE_BODY = (
    b"tabs\there\t\tand  there \t and trailing \r\n"
    b"   leading spaces\r\n"
    b"\t\r\n"
    b" \r\n"
    b"a lone\rCR and a lone\nLF\r\n"
    b"\r\n\r\n\r\n"
)
LONG_LINE_BODY = b"x" * 5000 + b"\r\n" + b"word " * 2000 + b"\r\n" + b"A" * 998 + b"\r\n"

MESSAGES = {
    "plain 8-bit": HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xc3\xa9 du coin.\r\n",
    "folded headers": FOLDED_HEAD + b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b1--\r\n",
    "lf line endings": (HEAD + b"\r\nShall we  meet?\r\n\r\n").replace(b"\r\n", b"\n"),
    "lf folded headers": (FOLDED_HEAD + b"\r\nbody\r\n").replace(b"\r\n", b"\n"),
    "empty body": HEAD + b"\r\n",
    "no body separator": HEAD,
    "only blank lines": HEAD + b"\r\n\r\n\r\n\r\n",
    "no final line break": HEAD + b"\r\nlast line without CRLF",
    "whitespace body": HEAD + b"\r\n" + WHITESPACE_BODY,
    "long lines": HEAD + b"Subject: " + b"very long subject " * 40 + b"\r\n\r\n"
                  + LONG_LINE_BODY,
    "8-bit header": HEAD.replace(b"Lunch on Friday?", b"D\xc3\xa9jeuner \xe2\x98\x95")
                    + b"\r\nok\r\n",
    "base64 body": HEAD + b"Content-Transfer-Encoding: base64\r\n\r\n"
                   + b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n" * 60,
    "mbox from line": b"From someone@alias.test Fri Dec  4 10:00:00 2026\r\n" + HEAD
                      + b"\r\nhi\r\n",
    "starts with a blank line": b"\r\nFrom: a@alias.test\r\n\r\nbody\r\n",
    "mixed line endings": HEAD + b"\r\nline one\nline two\r\n\n\r\n",
    "no signed header but from": b"From: a@alias.test\r\nX-Other: 1\r\n\r\nbody\r\n",
}
DOMAINS = ("alias.test", "Bücher.test.")
CORPUS = sorted((Path(__file__).parent / "data").glob("**/*.eml"))  # forwarded, replies, spam


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
