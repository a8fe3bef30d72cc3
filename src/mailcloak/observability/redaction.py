"""Addresses as they may appear in logs.

By default an address is logged as a keyed hash of its local part and its domain
(`[3f9a0c1be2]@example.org`): lines about the same address can be matched up, and whoever holds
the secret key can check whether a line is about a given address, but a leaked log names
nobody. MAILCLOAK_LOG_ADDRESSES=1 logs them in full, for debugging.

The brackets are deliberate: a redacted address is not an address, so `scrub_addresses` (the
formatter's safety net for free text such as a remote server's error) leaves it alone.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re

from mailcloak import settings as mailcloak_settings

NULL_SENDER = "<>"
_ATEXT = r"\w!#$%&'*+/=?^`{|}~.-"  # the characters of a local part (RFC 5322 atext, dots)
_ADDRESS = re.compile(rf"(?<![{_ATEXT}])([{_ATEXT}]+)@([\w-]+(?:\.[\w-]+)+)")


@functools.lru_cache(maxsize=4)
def log_key(secret_key: str) -> bytes:
    """The key of the address hashes, derived from the secret key (the same on every node)."""
    return hmac.new(secret_key.encode(), b"mailcloak/log/v1", hashlib.sha256).digest()


def _current_key() -> bytes:
    return log_key(mailcloak_settings.get().secret_key)


def hash_address(address: object, key: bytes | None = None) -> str:
    """The redacted form of `address`, whatever MAILCLOAK_LOG_ADDRESSES says."""
    text = str(address).strip()
    if not text or text == NULL_SENDER:
        return NULL_SENDER
    local, at, domain = text.rpartition("@")
    if not at:
        local, domain = text, ""
    digest = hmac.new(key or _current_key(), local.encode("utf-8", "surrogateescape"),
                      hashlib.sha256).hexdigest()[:10]
    return f"[{digest}]@{domain.lower()}" if domain else f"[{digest}]"


def redact_address(address: object, key: bytes | None = None) -> str:
    """`address` as log lines show it: hashed unless MAILCLOAK_LOG_ADDRESSES is on."""
    if mailcloak_settings.get().log_addresses:
        return str(address) or NULL_SENDER
    return hash_address(address, key)


def scrub_addresses(text: str, key: bytes | None = None) -> str:
    """`text` with every address in it redacted (unless MAILCLOAK_LOG_ADDRESSES is on)."""
    if "@" not in text or mailcloak_settings.get().log_addresses:
        return text
    key = key or _current_key()
    return _ADDRESS.sub(lambda match: hash_address(match.group(0), key), text)
