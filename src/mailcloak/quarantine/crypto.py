"""Encryption at rest for quarantined mail: AES-256-GCM with a key id, so keys can rotate.

A sealed message is `version (1 byte) | key id (4 bytes) | nonce (12 bytes) | ciphertext+tag`;
the version and key id are authenticated too. New messages are sealed with the current key
(MAILCLOAK_QUARANTINE_KEY, or one generated into DATA_DIR/quarantine.key on first use); the
keys in MAILCLOAK_QUARANTINE_OLD_KEYS still open what they sealed until it expires.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mailcloak import settings as mailcloak_settings

VERSION = b"\x01"
KEY_ID_BYTES = 4
NONCE_BYTES = 12
HEADER_BYTES = len(VERSION) + KEY_ID_BYTES + NONCE_BYTES
KEY_FILE = "quarantine.key"


class QuarantineKeyError(Exception):
    """A sealed message cannot be opened (unknown key, damaged data); str() says why."""


def key_id(key: bytes) -> bytes:
    """A short public name for a key: it identifies the key without revealing it."""
    return hashlib.sha256(b"mailcloak quarantine key id\0" + key).digest()[:KEY_ID_BYTES]


@dataclass(frozen=True)
class Keyring:
    current: bytes
    old: tuple[bytes, ...] = ()

    @property
    def current_id(self) -> str:
        return key_id(self.current).hex()

    def seal(self, plaintext: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        header = VERSION + key_id(self.current) + nonce
        return header + AESGCM(self.current).encrypt(nonce, plaintext, header)

    def open(self, sealed: bytes) -> bytes:
        if len(sealed) < HEADER_BYTES or sealed[:1] != VERSION:
            raise QuarantineKeyError("the stored message is damaged (unknown format)")
        wanted = sealed[1:1 + KEY_ID_BYTES]
        key = next((k for k in (self.current, *self.old) if key_id(k) == wanted), None)
        if key is None:
            raise QuarantineKeyError(
                f"the stored message was encrypted with quarantine key {wanted.hex()}, which "
                "is not configured here: set the same MAILCLOAK_QUARANTINE_KEY on every node "
                "and keep earlier keys in MAILCLOAK_QUARANTINE_OLD_KEYS")
        header, ciphertext = sealed[:HEADER_BYTES], sealed[HEADER_BYTES:]
        try:
            return AESGCM(key).decrypt(header[-NONCE_BYTES:], ciphertext, header)
        except InvalidTag:
            raise QuarantineKeyError("the stored message is damaged (authentication failed)"
                                     ) from None


_keyring: tuple[mailcloak_settings.Config, Keyring] | None = None


def keyring() -> Keyring:
    """The configured keys, read once per process (again after the settings are reloaded)."""
    global _keyring
    config = mailcloak_settings.get()
    if _keyring is None or _keyring[0] is not config:
        current = config.quarantine_key or stored_key(config.data_path)
        _keyring = (config, Keyring(current, tuple(config.quarantine_old_keys)))
    return _keyring[1]


def new_key() -> str:
    """A fresh key, in the form MAILCLOAK_QUARANTINE_KEY takes."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def stored_key(data_dir: Path) -> bytes:
    """The key in DATA_DIR/quarantine.key, created (mode 0600) if there is none yet.

    Processes starting together agree on one key: the file appears complete or not at all.
    """
    path = data_dir / KEY_FILE
    if not path.exists():
        _create_key_file(path)
    try:
        return mailcloak_settings.parse_key(path.read_text())
    except (OSError, ValueError) as exc:
        raise mailcloak_settings.ConfigError(
            f"MAILCLOAK_QUARANTINE_KEY: cannot use {path}: {exc}") from None


def _create_key_file(path: Path) -> None:
    temporary = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(new_key() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process was first: use its key
            os.link(temporary, path)
    except OSError as exc:
        raise mailcloak_settings.ConfigError(
            f"MAILCLOAK_DATA_DIR={str(path.parent)!r}: cannot write {KEY_FILE}: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
