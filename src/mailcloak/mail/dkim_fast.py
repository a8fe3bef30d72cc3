"""Several DKIM signatures of one message, with the work they share done once.

Every message we send carries two DKIM-Signature headers (RSA and Ed25519). dkimpy's
`DKIM.sign()` starts from scratch for each: it canonicalises and hashes the body, then
canonicalises every header field, and derives the Ed25519 key from its seed; on a 4 KB
message that repeated work cost more than the RSA signature itself. `MessageSigner` parses,
canonicalises and body-hashes the message once and keys are prepared once per process.

The output is dkimpy's, byte for byte: the tag list, its order, the folding and the header
hash follow `DKIM.sign()` and `DomainSigner.gen_header()` of dkimpy 1.1 (relaxed/relaxed
only), and reuse its fold and header selection. tests/test_dkim_fast.py signs the same
messages both ways and compares the bytes, and checks `parse`, `relaxed_headers` and
`relaxed_body` against dkimpy's own on thousands of random inputs. The first ARC set of a
message (arc_sign.py) is built from the same parts.

`install()` also gives dkimpy itself the faster relaxed canonicalisation (the same bytes), for
what still goes through it: ARC seals of messages that carry a chain, and every DKIM and ARC
verification.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Sequence

import dkim
import nacl.encoding
import nacl.signing
from dkim.canonicalization import Relaxed, correct_empty_body, strip_trailing_lines

from mailcloak.mail import rsa_openssl

HEADER_NAME = b"DKIM-Signature"
C_VALUE = b"relaxed/relaxed"
B_PLACEHOLDER = b"0" * 60  # dkimpy's: makes b= fold onto a line of its own

# A run of WSP other than one lone space: replacing only these gives what dkimpy's
# `[\t ]+` -> " " gives, without rewriting every single space of a text body.
_WSP_RUN = re.compile(rb"\t[\t ]*| [\t ]+")
_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
_FIELD_NAME = re.compile(rb"([\x21-\x7e]+?):")  # dkimpy's
_LINE_END = re.compile(rb"\r?\n")

# dkimpy's own, before install(): the tests compare against them.
DKIMPY_RELAXED_HEADERS = Relaxed.canonicalize_headers
DKIMPY_RELAXED_BODY = Relaxed.canonicalize_body


def parse(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """dkim.rfc822_parse(message): the header fields, and the body with CRLF line ends.

    dkimpy splits the whole message into lines to find the body and joins them again, and
    looks its field-name expression up again for every line; this reads the header section
    only, with the expression compiled once, and leaves a CRLF body as it is."""
    end = _header_end(message)
    head, body = message[:end], message[end:]
    fields: list[list[bytes]] = []
    for line in _LINE_END.split(head):
        if not line:
            break
        if line[0] in (0x09, 0x20):
            if not fields:
                raise dkim.MessageFormatError("the header section starts with a folded line")
            fields[-1][1] += line + b"\r\n"
        elif (name := _FIELD_NAME.match(line)) is not None:
            fields.append([name.group(1), line[name.end():] + b"\r\n"])
        elif not line.startswith(b"From "):  # an mbox separator is skipped
            raise dkim.MessageFormatError(f"Unexpected characters in RFC822 header: {line!r}")
    if body.count(b"\n") != body.count(b"\r\n"):
        body = _LINE_END.sub(b"\r\n", body)
    return [(name, value) for name, value in fields], body


def _header_end(message: bytes) -> int:
    """Where the body starts: after the first empty line (CRLF or LF), else the end."""
    for empty in (b"\r\n", b"\n"):
        if message.startswith(empty):
            return len(empty)
    ends = [at + len(blank) for blank in (b"\n\r\n", b"\n\n")
            if (at := message.find(blank)) >= 0]
    return min(ends) if ends else len(message)


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 relaxed body canonicalisation of a CRLF body, as dkimpy computes it.

    The substring checks skip the regular expressions when they would change nothing,
    which is the case for most text and every base64 body."""
    if b" \r\n" in body or b"\t\r\n" in body:
        body = _TRAILING_WSP.sub(b"\r\n", body)
    if b"\t" in body or b"  " in body:
        body = _WSP_RUN.sub(b" ", body)
    return bytes(correct_empty_body(strip_trailing_lines(body)))


def relaxed_headers(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """RFC 6376 relaxed header canonicalisation, as dkimpy computes it: name lowercased,
    value unfolded, WSP runs made one space, stripped. The regular expressions run only on
    values they would change (dkimpy ran two on every field of every signature)."""
    canonical = []
    for name, value in headers:
        if value.endswith(b"\r\n"):  # the field's own line end, which every parsed value has
            value = value[:-2]
        if b"\n" in value:
            value = _LINE_END.sub(b"", value)
        if b"\t" in value or b"  " in value:
            value = _WSP_RUN.sub(b" ", value)
        canonical.append((name.lower().rstrip(), value.strip() + b"\r\n"))
    return canonical


def install() -> None:
    """Make dkimpy canonicalise with `relaxed_headers` and `relaxed_body` (same output)."""
    Relaxed.canonicalize_headers = staticmethod(relaxed_headers)
    Relaxed.canonicalize_body = staticmethod(relaxed_body)


@functools.lru_cache(maxsize=8)
def _ed25519_key(seed_base64: bytes) -> nacl.signing.SigningKey:
    """The signing key for a base64 seed, derived once per key rather than per signature."""
    try:
        return nacl.signing.SigningKey(seed_base64, encoder=nacl.encoding.Base64Encoder)
    except ValueError:  # nacl's own ValueError and binascii.Error both derive from it
        raise dkim.KeyFormatError("invalid ed25519 private key or format") from None


def parsed_rsa_key(pem: bytes) -> dict[str, int]:
    try:
        return rsa_openssl.parse_pem_private_key(pem)
    except dkim.UnparsableKeyError as exc:
        raise dkim.KeyFormatError(str(exc)) from None


def _signature(algorithm: bytes, private_key: bytes, header_hash: hashlib._Hash) -> bytes:
    """The raw signature of the header hash."""
    if algorithm == b"rsa-sha256":
        return rsa_openssl.rsassa_pkcs1_v1_5_sign(header_hash, parsed_rsa_key(private_key))
    if algorithm == b"ed25519-sha256":  # RFC 8463 signs the SHA-256 digest of the headers
        return bytes(_ed25519_key(private_key).sign(header_hash.digest()).signature)
    raise dkim.ParameterError(f"unsupported signature algorithm {algorithm!r}")


class MessageSigner:
    """DKIM-Signature headers for one message, relaxed/relaxed, SHA-256 (RSA or Ed25519).

    Raises dkim.MessageFormatError when the header section does not parse."""

    def __init__(self, message: bytes, linesep: bytes = b"\r\n") -> None:
        self.headers, body = parse(message)
        self._linesep = linesep
        self._body_hash = body_hash(body)
        self._canonical: dict[tuple[bytes, ...], list[tuple[bytes, bytes]]] = {}

    def sign(self, *, selector: bytes, domain: bytes, private_key: bytes, algorithm: bytes,
             include_headers: Sequence[bytes], timestamp: int) -> bytes:
        """One `DKIM-Signature: ...` header line, ending in the message's line separator.

        `private_key` is what dkimpy takes: PEM for RSA, the base64 seed for Ed25519."""
        include = tuple(name.lower() for name in include_headers)
        if b"from" not in include:
            raise dkim.ParameterError("The From header field MUST be signed")
        fields = [
            (b"v", b"1"), (b"a", algorithm), (b"c", C_VALUE), (b"d", domain),
            (b"i", b"@" + domain), (b"q", b"dns/txt"), (b"s", selector),
            (b"t", str(timestamp).encode("ascii")), (b"h", b" : ".join(include)),
            (b"bh", self._body_hash), (b"b", B_PLACEHOLDER),
        ]
        header_hash = self._header_hash(include, unsigned_value(fields, HEADER_NAME))
        fields[-1] = (b"b", signature(algorithm, private_key, header_hash))
        return HEADER_NAME + b": " + folded(fields, HEADER_NAME, self._linesep,
                                            end=self._linesep)

    def _header_hash(self, include: tuple[bytes, ...], unsigned: bytes) -> hashlib._Hash:
        """SHA-256 over the signed header fields and the signature's own, b= empty
        (dkim.hash_headers, with the selected fields canonicalised once per message)."""
        signed = self._canonical.get(include)
        if signed is None:
            selected = dkim.select_headers(self.headers, include)
            signed = self._canonical[include] = relaxed_headers(selected)
        return signature_hash(signed, HEADER_NAME, unsigned)


def signature_hash(signed: Sequence[tuple[bytes, bytes]], header_name: bytes,
                   unsigned_value: bytes) -> hashlib._Hash:
    """SHA-256 over canonical signed fields, then the signature field itself with its b=
    empty and without its line end (dkim.hash_headers)."""
    own = relaxed_headers([(header_name, b" " + unsigned_value)])
    digest = hashlib.sha256()
    for name, value in [*signed, *((name, value.rstrip()) for name, value in own)]:
        digest.update(name)
        digest.update(b":")
        digest.update(value)
    return digest


def body_hash(body: bytes) -> bytes:
    """bh=: base64 SHA-256 of the relaxed canonical body."""
    return base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())


def signature(algorithm: bytes, private_key: bytes, header_hash: hashlib._Hash) -> bytes:
    """The base64 b= value: the header hash signed with `private_key` (as dkimpy takes it)."""
    return base64.b64encode(_signature(algorithm, private_key, header_hash))


def unsigned_value(fields: list[tuple[bytes, bytes]], header_name: bytes) -> bytes:
    """The field's value folded as dkimpy folds it, b= emptied: what the header hash covers."""
    return bytes(dkim.RE_BTAG.sub(rb"\1", folded(fields, header_name, b"\r\n")))


def folded(fields: list[tuple[bytes, bytes]], header_name: bytes, linesep: bytes,
           end: bytes = b"") -> bytes:
    """`tag=value; ...` folded at column 72 after `header_name: ` (dkim.fold)."""
    value = b"; ".join(b"=".join(field) for field in fields) + end
    return bytes(dkim.fold(value, namelen=len(header_name), linesep=linesep))
