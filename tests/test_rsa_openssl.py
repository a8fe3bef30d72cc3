"""OpenSSL RSA signing gives dkimpy the very bytes its own pure-Python code would."""

from __future__ import annotations

import hashlib

import dkim.crypto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailcloak.mail.rsa_openssl import rsassa_pkcs1_v1_5_sign


def test_same_signature_as_dkimpy() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fields = dkim.crypto.parse_pem_private_key(pem)
    for message in (b"", b"a header hash input", bytes(range(256)) * 8):
        digest = hashlib.sha256(message)
        ours = rsassa_pkcs1_v1_5_sign(digest, fields)
        assert ours == dkim.crypto.RSASSA_PKCS1_v1_5_sign(digest, fields)
        assert dkim.crypto.RSASSA_PKCS1_v1_5_verify(digest, ours, fields)


def test_installed_for_dkim_signing() -> None:
    import dkim

    import mailcloak.mail.arc  # noqa: F401  (installs it for its seals)

    assert dkim.RSASSA_PKCS1_v1_5_sign is rsassa_pkcs1_v1_5_sign


def test_dkimpy_parses_each_key_once() -> None:
    import dkim

    import mailcloak.mail.arc  # noqa: F401  (installs it for its seals)

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    first = dkim.parse_pem_private_key(pem)
    assert first == dkim.crypto.parse_pem_private_key(pem)  # what dkimpy's own parse gives
    assert dkim.parse_pem_private_key(pem) is first  # and not parsed again
