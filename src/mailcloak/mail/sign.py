"""DKIM signing of outbound mail: an RSA-SHA256 and an Ed25519-SHA256 signature on each message.

Receivers that know Ed25519 (RFC 8463) check that one; the others check the RSA one. Both
use relaxed/relaxed canonicalisation, which survives the header re-folding and whitespace
changes common on the way, and oversign From so no second From can be added later.
"""

from __future__ import annotations

import logging

import dkim

from mailcloak.mail import rsa_openssl
from mailcloak.mail.dkimkeys import DkimKey, signing_keys

rsa_openssl.install()

SIGNED_HEADERS = frozenset({
    "from", "to", "cc", "subject", "date", "message-id", "in-reply-to", "references",
    "reply-to", "list-id", "list-unsubscribe", "list-unsubscribe-post", "mime-version",
    "content-type", "content-transfer-encoding",
})
OVERSIGNED_HEADERS = ("from",)  # listed once more than present: adding one breaks the signature
CANONICALIZATION = (b"relaxed", b"relaxed")

_dkim_log = logging.getLogger("mailcloak.dkim")


class SigningError(Exception):
    """The message cannot be signed (its header section does not parse)."""


def _signing_domain(domain: str) -> bytes:
    return domain.strip().rstrip(".").lower().encode("idna")


def _headers_to_sign(signer: dkim.DKIM) -> list[bytes]:
    present = [name.lower() for name, _ in signer.headers
               if name.decode("ascii", "replace").lower() in SIGNED_HEADERS]
    return present + [name.encode() for name in OVERSIGNED_HEADERS]


def sign_message(content: bytes, domain: str,
                 keys: tuple[DkimKey, ...] | None = None) -> bytes:
    """`content` with two DKIM-Signature headers for `domain` prepended (RSA, then Ed25519)."""
    linesep = b"\r\n" if b"\r\n" in content[:1000] else b"\n"
    try:
        signer = dkim.DKIM(content, linesep=linesep, logger=_dkim_log)
        include = _headers_to_sign(signer)
        signatures = [
            signer.sign(key.selector.encode(), _signing_domain(domain), key.private,
                        signature_algorithm=key.signature_algorithm,
                        canonicalize=CANONICALIZATION, include_headers=include)
            for key in (keys if keys is not None else signing_keys())
        ]
    except dkim.DKIMException as exc:
        raise SigningError(f"cannot DKIM-sign the message: {exc}") from None
    return b"".join(signatures) + content
