"""RSA signing for dkimpy through OpenSSL (the `cryptography` package).

dkimpy computes RSA signatures with Python integers, about 7 ms per RSA-2048 signature: on the
delivery path that alone caps a core at ~140 messages a second. PKCS#1 v1.5 signatures are
deterministic, so OpenSSL produces the very same bytes some twenty times faster. DKIM
signatures (dkim_fast.py) call it directly; `install()` points dkimpy's own signing function
(ARC seals) at it. Verification is left to dkimpy. It also keeps dkimpy's parse of each PEM
key, which dkimpy would otherwise repeat for every signature (0.13 ms, three times per
forwarded message).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

_HASHES: dict[str, hashes.HashAlgorithm] = {"sha256": hashes.SHA256()}  # all we sign with
_keys: dict[int, rsa.RSAPrivateKey] = {}
_lock = threading.Lock()


def _private_key(fields: dict[str, int]) -> rsa.RSAPrivateKey:
    """The OpenSSL key for dkimpy's parsed key fields, built once per key."""
    modulus = fields["modulus"]
    key = _keys.get(modulus)
    if key is None:
        numbers = rsa.RSAPrivateNumbers(
            p=fields["prime1"], q=fields["prime2"], d=fields["privateExponent"],
            dmp1=fields["exponent1"], dmq1=fields["exponent2"], iqmp=fields["coefficient"],
            public_numbers=rsa.RSAPublicNumbers(fields["publicExponent"], modulus))
        key = numbers.private_key()
        with _lock:
            _keys[modulus] = key
    return key


def rsassa_pkcs1_v1_5_sign(digest: Any, private_key: dict[str, int]) -> bytes:
    """Drop-in for dkim.crypto.RSASSA_PKCS1_v1_5_sign(hash object, parsed key)."""
    algorithm = _HASHES[digest.name]
    return _private_key(private_key).sign(digest.digest(), padding.PKCS1v15(),
                                          utils.Prehashed(algorithm))


_parse_pem_private_key = dkim.parse_pem_private_key


@functools.lru_cache(maxsize=32)
def parse_pem_private_key(data: bytes) -> dict[str, int]:
    """dkimpy's key parse, once per key (dkimpy only reads the fields it returns)."""
    return _parse_pem_private_key(data)


def install() -> None:
    dkim.RSASSA_PKCS1_v1_5_sign = rsassa_pkcs1_v1_5_sign
    dkim.parse_pem_private_key = parse_pem_private_key
