"""The Authentication-Results reader dkimpy uses while sealing: for every value it must build
what authres's own parser builds, and the seal must come out byte for byte the same."""

from __future__ import annotations

from typing import Any

import authres
import dkim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailcloak.mail import arc_results
from mailcloak.mail.arc import ArcResult, arc_seal
from mailcloak.mail.auth_dkim import DkimResult
from mailcloak.mail.auth_dmarc import DmarcResult
from mailcloak.mail.auth_report import authentication_results
from mailcloak.mail.auth_spf import SpfResult
from mailcloak.mail.dkimkeys import DkimKey, create_keys, load_keys

BENCH_LIKE = ("mail.alias.test; spf=none smtp.mailfrom=sender.bench; dkim=none; "
              "dmarc=none header.from=sender.bench; arc=none")
SIGNED = ("mail.alias.test; spf=pass smtp.mailfrom=sender.test; dkim=pass header.d=sender.test "
          "header.s=s1 header.a=rsa-sha256 header.b=AbC+x12k; dkim=fail (body hash mismatch) "
          "header.d=sender.test header.s=s2 header.a=ed25519-sha256 header.b=Qq9-x12k; "
          "dmarc=pass (p=reject sp=reject dis=none) header.from=sender.test; arc=none")


def as_seen(header: Any) -> tuple[Any, ...]:
    """Everything dkimpy (and anyone else) can read from a parsed header."""
    results = [(type(result), result.method, result.version, result.result,
                result.result_comment, result.reason, str(result),
                [(p.type, p.name, p.value, p.comment) for p in result.properties])
               for result in header.results]
    return (type(header), header.authserv_id, header.version, results, str(header))


def authres_reads(field: str) -> tuple[Any, ...] | str:
    try:
        return as_seen(authres.AuthenticationResultsHeader.parse(field))
    except Exception as exc:  # the same failure is expected from ours
        return type(exc).__name__


def ours_reads(field: str) -> tuple[Any, ...] | str:
    try:
        return as_seen(arc_results.parse(field))
    except Exception as exc:
        return type(exc).__name__


@pytest.mark.parametrize("value", [BENCH_LIKE, SIGNED])
def test_plain_values_are_read_without_authres_and_alike(value: str) -> None:
    field = "Authentication-Results: " + value
    assert arc_results._FIELD.fullmatch(field) is not None  # the fast reading applies
    assert ours_reads(field) == authres_reads(field)


@pytest.mark.parametrize("value", [
    'mail.alias.test; dkim=pass header.d=sender.test header.b="AbC+/x12"',  # quoted last
    'mail.alias.test; dkim=fail header.d="we ird.org" header.s=s2',  # authres drops header.d
    "mail.alias.test; dkim=pass header.i=jane@sender.test",
    "mail.alias.test 1; spf=pass smtp.mailfrom=sender.test",
    "mail.alias.test; none",
    "mail.alias.test; auth=pass (cram-md5) smtp.auth=sender@example.net",
    "mail.alias.test; spf=pass (a (nested) comment) smtp.mailfrom=sender.test",
    "mail.alias.test; spf=pass reason=fine smtp.mailfrom=sender.test",
    "mail.alias.test; bogus",
    "",
])
def test_other_values_go_to_authres(value: str) -> None:
    field = "Authentication-Results: " + value
    assert arc_results._FIELD.fullmatch(field) is None
    assert ours_reads(field) == authres_reads(field)


_LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_DOMAIN = st.builds(".".join, st.lists(_LABEL, min_size=1, max_size=3))
_ODD = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=14)
_NAME = st.one_of(_DOMAIN, _ODD)
_SIG = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=8)


@st.composite
def our_values(draw: st.DrawFn) -> str:
    """Authentication-Results values as auth_report writes them, with odd inputs too."""
    spf = SpfResult(draw(st.sampled_from(["pass", "fail", "softfail", "none", "temperror"])),
                    draw(st.sampled_from(["mailfrom", "helo"])), draw(st.one_of(_NAME,
                                                                                st.just(""))))
    signatures = draw(st.lists(st.builds(
        DkimResult, _NAME, _NAME, st.sampled_from(["pass", "fail", "permerror", "neutral"]),
        st.sampled_from(["", "rsa-sha256", "ed25519-sha256"]), _SIG,
        st.one_of(st.just(""), _ODD)), max_size=3))
    dmarc = DmarcResult(draw(st.sampled_from(["pass", "fail", "none", "permerror"])),
                        draw(st.one_of(_NAME, st.just(""))),
                        draw(st.sampled_from(["", "none", "reject"])),
                        draw(st.sampled_from(["", "none", "quarantine"])))
    arc = ArcResult(draw(st.sampled_from(["none", "pass", "fail"])),
                    comment=draw(st.one_of(st.just(""), _ODD)))
    authserv_id = draw(st.one_of(_DOMAIN, st.sampled_from(["Mail.Alias.TEST", "mx"])))
    return authentication_results(authserv_id, spf, signatures, dmarc, arc)


@settings(max_examples=400, deadline=None)
@given(our_values())
def test_every_value_we_write_reads_as_authres_reads_it(value: str) -> None:
    field = "Authentication-Results: " + value
    assert ours_reads(field) == authres_reads(field)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(min_codepoint=9, max_codepoint=126), max_size=120))
def test_any_text_reads_as_authres_reads_it(value: str) -> None:
    field = "Authentication-Results: " + value
    assert ours_reads(field) == authres_reads(field)


# --- the seal itself --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[DkimKey, DkimKey]:
    directory = tmp_path_factory.mktemp("keys")
    create_keys(directory)
    return load_keys(directory)


MESSAGE = (b"Authentication-Results: mx.other.test; spf=pass smtp.mailfrom=sender.test\r\n"
           b"From: Jane <reply-1@alias.test>\r\nTo: owner@mailbox.test\r\nSubject: notes\r\n"
           b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\nMessage-ID: <n@sender.test>\r\n\r\n"
           b"Notes.\r\n")


@pytest.mark.parametrize("value", [BENCH_LIKE, SIGNED,
                                   'mail.alias.test; dkim=pass header.b="AbC+/x12"; arc=none'])
def test_the_seal_is_the_same_byte_for_byte(value: str, rsa_keys: tuple[DkimKey, DkimKey],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def seal() -> bytes:
        return arc_seal(MESSAGE, auth_results=value, domain="alias.test", keys=rsa_keys,
                        timestamp=1796000000)

    assert isinstance(dkim.authres, arc_results._AuthresForDkim)  # installed by mailcloak.arc
    ours = seal()
    monkeypatch.setattr(dkim, "authres", authres)
    assert seal() == ours
    assert ours.startswith(b"ARC-Seal: i=1; cv=none;")
