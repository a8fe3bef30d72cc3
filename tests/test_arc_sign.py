"""arc_sign() makes dkimpy's ARC set byte for byte: the first set of messages of many shapes
on its own path, and what it hands to dkimpy (earlier sets, arc= results) unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import authres
import dkim
import pytest
from dkim.canonicalization import Relaxed

from mailcloak.mail import dkim_fast
from mailcloak.mail.arc_sign import arc_sign, first_arc_set
from mailcloak.mail.dkimkeys import DkimKey
from tests.support.message_shapes import CORPUS, MESSAGES

SRV = b"mx.alias.test"
STAMP = 1796385600
RESULTS = {
    "ours, arc=none": SRV + b"; spf=pass smtp.mailfrom=example.test; dkim=none; "
                            b"dmarc=none header.from=example.test; arc=none",
    "ours, no arc": SRV + b"; spf=softfail (not permitted) smtp.mailfrom=example.test; "
                          b"dkim=pass header.d=example.test header.s=sel",
    "quoted value": SRV + b'; dkim=pass header.i="@example.test"; spf=none',
    "no results": SRV + b"; none",
    "another server's": b"mx.elsewhere.test; spf=pass smtp.mailfrom=example.test",
}


@pytest.fixture(autouse=True)
def dkimpy_as_shipped(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The reference is dkimpy with its own canonicalisation and authres's own parser (the ARC
    module gives it ours on import)."""
    monkeypatch.setattr(Relaxed, "canonicalize_headers",
                        staticmethod(dkim_fast.DKIMPY_RELAXED_HEADERS))
    monkeypatch.setattr(Relaxed, "canonicalize_body", staticmethod(dkim_fast.DKIMPY_RELAXED_BODY))
    monkeypatch.setattr(dkim, "authres", authres)
    yield


def stamped(message: bytes, *results: bytes) -> bytes:
    linesep = b"\r\n" if b"\r\n" in message[:1000] else b"\n"
    return b"".join(b"Authentication-Results: " + value + linesep for value in results) + message


def both_ways(message: bytes, key: DkimKey, *, linesep: bytes = b"\r\n"
              ) -> tuple[list[bytes] | str, list[bytes] | str]:
    """Each signer's ARC set, or the name of the exception it raised."""
    args = (message, key.selector.encode(), b"alias.test", key.private, SRV)
    outcomes: list[list[bytes] | str] = []
    for signer in (arc_sign, dkim.arc_sign):
        try:
            outcomes.append(list(signer(*args, timestamp=STAMP, linesep=linesep)))
        except dkim.DKIMException as exc:
            outcomes.append(type(exc).__name__)
    return outcomes[0], outcomes[1]


@pytest.mark.parametrize("results", RESULTS)
@pytest.mark.parametrize("shape", MESSAGES)
def test_same_set_as_dkimpy(shape: str, results: str, keys: tuple[DkimKey, DkimKey]) -> None:
    message = stamped(MESSAGES[shape], RESULTS[results])
    linesep = b"\r\n" if b"\r\n" in message[:1000] else b"\n"
    ours, theirs = both_ways(message, keys[0], linesep=linesep)
    assert ours == theirs
    if results == "another server's":
        assert ours == []
    elif shape == "starts with a blank line":  # its From is in the body
        assert ours == "ParameterError"
    elif b"ARC-Seal" not in message:
        assert len(ours) == 3  # sealed, and on our own path:
        assert first_arc_set(message, keys[0].selector.encode(), b"alias.test", keys[0].private,
                             SRV, timestamp=STAMP, linesep=linesep) == ours


def test_same_set_for_every_test_message(keys: tuple[DkimKey, DkimKey]) -> None:
    assert len(CORPUS) > 100
    for path in CORPUS:
        message = stamped(path.read_bytes(), RESULTS["ours, arc=none"])
        linesep = b"\r\n" if b"\r\n" in message[:1000] else b"\n"
        ours, theirs = both_ways(message, keys[0], linesep=linesep)
        assert ours == theirs, path.name


def test_two_fields_of_ours_are_sealed_as_one(keys: tuple[DkimKey, DkimKey]) -> None:
    message = stamped(MESSAGES["plain 8-bit"], SRV + b"; spf=pass smtp.mailfrom=example.test",
                      SRV + b"; dkim=none")
    ours, theirs = both_ways(message, keys[0])
    assert ours == theirs
    assert b"spf=pass" in ours[2] and b"dkim=none" in ours[2]


def test_a_chain_verdict_without_a_chain_is_refused_as_dkimpy_does(
        keys: tuple[DkimKey, DkimKey]) -> None:
    message = stamped(MESSAGES["plain 8-bit"], SRV + b"; spf=none; arc=pass")
    for signer in (arc_sign, dkim.arc_sign):
        with pytest.raises(dkim.ParameterError):
            signer(message, b"mcr1", b"alias.test", keys[0].private, SRV, timestamp=STAMP)


def test_a_message_without_from_is_refused_as_dkimpy_does(keys: tuple[DkimKey, DkimKey]) -> None:
    message = stamped(b"Subject: no sender\r\n\r\nbody\r\n", RESULTS["ours, no arc"])
    for signer in (arc_sign, dkim.arc_sign):
        with pytest.raises(dkim.ParameterError):
            signer(message, b"mcr1", b"alias.test", keys[0].private, SRV, timestamp=STAMP)


def test_an_unusable_key_fails_before_anything_else() -> None:
    message = stamped(MESSAGES["plain 8-bit"], RESULTS["another server's"])
    for signer in (arc_sign, dkim.arc_sign):
        with pytest.raises(dkim.KeyFormatError):
            signer(message, b"mcr1", b"alias.test", b"not a key", SRV, timestamp=STAMP)
