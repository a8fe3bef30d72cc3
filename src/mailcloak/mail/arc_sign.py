"""The first ARC set of a message, computed as dkimpy's `arc_sign()` does with less work.

dkimpy's ARC signer splits the whole message into lines, canonicalises every header field
twice (once per signature) and once more to look for earlier ARC sets. For a message that
carries no ARC set yet, which is most of what we forward, `first_arc_set()` parses the header
once, canonicalises only the fields it signs, and reuses the DKIM signer's helpers; the RSA
signatures themselves are the same OpenSSL calls. The output is dkimpy's byte for byte
(tests/test_arc_sign.py compares them); a message with ARC fields, or anything unusual, goes
to dkimpy itself.
"""

from __future__ import annotations

import time

import dkim
from authres.core import SyntaxError as AuthResSyntaxError

from mailcloak.mail import arc_results, dkim_fast

ALGORITHM = b"rsa-sha256"
ARC_FIELDS = (b"arc-seal", b"arc-message-signature", b"arc-authentication-results")
# dkimpy's default for ARC-Message-Signature: the RFC 6376 list, From signed once more.
SIGNED = frozenset(dkim.DKIM.SHOULD) | frozenset(dkim.DKIM.FROZEN)
FROZEN = frozenset(dkim.DKIM.FROZEN)
AAR, AMS, AS = b"ARC-Authentication-Results", b"ARC-Message-Signature", b"ARC-Seal"


def arc_sign(message: bytes, selector: bytes, domain: bytes, privkey: bytes, srv_id: bytes, *,
             timestamp: int | None = None, linesep: bytes = b"\r\n",
             logger: object = None) -> list[bytes]:
    """dkim.arc_sign(message, selector, domain, privkey, srv_id, ...) with the defaults
    (RSA-SHA256, dkimpy's header list): the ARC set's three field lines, or [] when the
    message holds no Authentication-Results of `srv_id`."""
    arc_set = first_arc_set(message, selector, domain, privkey, srv_id,
                            timestamp=timestamp, linesep=linesep)
    if arc_set is None:
        return list(dkim.arc_sign(message, selector, domain, privkey, srv_id,
                                  timestamp=timestamp, logger=logger, linesep=linesep))
    return arc_set


def first_arc_set(message: bytes, selector: bytes, domain: bytes, privkey: bytes,
                  srv_id: bytes, *, timestamp: int | None, linesep: bytes
                  ) -> list[bytes] | None:
    """The i=1 set, or None when the message is not one this path takes (earlier ARC fields,
    an arc= result other than none, no From to sign): dkimpy decides those."""
    dkim_fast.parsed_rsa_key(privkey)  # a bad key fails first, as in dkimpy
    headers, body = dkim_fast.parse(message)
    if any(name.lower() in ARC_FIELDS for name, _ in headers):
        return None
    results = _our_results(headers, srv_id, linesep)
    if results is None:
        return None
    if not results:
        return []  # dkimpy: nothing of ours to seal
    include = [name.lower() for name, _ in headers if name.lower() in SIGNED]
    include += [name for name in include if name in FROZEN]
    if b"from" not in include:
        return None
    aar_value = b"i=1; " + results.rstrip() + linesep
    aar = dkim_fast.relaxed_headers([(AAR, aar_value)])
    stamp = str(timestamp or int(time.time())).encode("ascii")
    ams_fields = [
        (b"i", b"1"), (b"a", ALGORITHM), (b"c", dkim_fast.C_VALUE), (b"d", domain),
        (b"s", selector), (b"t", stamp), (b"h", b" : ".join(include)),
        (b"bh", dkim_fast.body_hash(body)), (b"b", dkim_fast.B_PLACEHOLDER),
    ]
    signed = dkim_fast.relaxed_headers(dkim.select_headers(headers, include))
    ams_value = _signed_value(ams_fields, AMS, signed, privkey, linesep)
    ams = dkim_fast.relaxed_headers([(AMS, ams_value)])
    as_fields = [
        (b"i", b"1"), (b"cv", dkim.CV_None), (b"a", ALGORITHM), (b"d", domain),
        (b"s", selector), (b"t", stamp), (b"b", dkim_fast.B_PLACEHOLDER),
    ]
    as_value = _signed_value(as_fields, AS, [*aar, *ams], privkey, linesep)
    return [AS + b": " + as_value, AMS + b": " + ams_value, AAR + b": " + aar_value]


def _our_results(headers: list[tuple[bytes, bytes]], srv_id: bytes,
                 linesep: bytes) -> bytes | None:
    """`srv_id; result; result...` from the Authentication-Results fields of `srv_id`, written
    as dkimpy writes them into the ARC-Authentication-Results; b"" when there are none, None
    when they report a chain (arc= other than a single none), whose status dkimpy checks."""
    values = []
    for name, value in headers:
        if name != b"Authentication-Results":  # dkimpy matches this spelling only
            continue
        try:
            values.append(arc_results.parse(
                "Authentication-Results: " + value.strip().decode("utf-8")))
        except AuthResSyntaxError:
            continue
    ours = srv_id.decode("utf-8")
    found = [header for header in values if header.authserv_id == ours]
    if not found:
        return b""
    results = [result for header in found for result in header.results]
    arc = [result.result.lower() for result in results if result.method == "arc"]
    if arc not in ([], ["none"]):
        return None
    separator = b";" + linesep + b" "
    return srv_id + b"".join(separator + str(result).encode("utf-8") for result in results)


def _signed_value(fields: list[tuple[bytes, bytes]], header_name: bytes,
                  signed: list[tuple[bytes, bytes]], privkey: bytes, linesep: bytes) -> bytes:
    """The field's value with b= filled in, folded and ended as dkimpy's gen_header()."""
    unsigned = dkim_fast.unsigned_value(fields, header_name)
    header_hash = dkim_fast.signature_hash(signed, header_name, unsigned)
    fields[-1] = (b"b", dkim_fast.signature(ALGORITHM, privkey, header_hash))
    return dkim_fast.folded(fields, header_name, linesep, end=linesep)
