"""DKIM keys: one RSA-2048 and one Ed25519 key, shared by every domain Mailcloak signs for.

The keys live in DATA_DIR/dkim/ as PEM files named after their selector, readable by the
owner only. `mailcloak dkim init` creates them; local mode creates them on first use.
They are loaded once per process: signing is on the hot path.
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailcloak import settings as mailcloak_settings

RSA_SELECTOR = "mcr1"
ED25519_SELECTOR = "mce1"
RSA_BITS = 2048


class DkimKeyError(Exception):
    """The DKIM keys are missing or unusable; str() says what to do."""


@dataclass(frozen=True)
class DkimKey:
    selector: str
    algorithm: str  # the DKIM k= tag: "rsa" or "ed25519"
    private: bytes  # what dkimpy's sign() takes: PKCS#1 PEM for RSA, base64 seed for Ed25519
    public: str  # the DKIM p= tag

    @property
    def signature_algorithm(self) -> bytes:
        return b"rsa-sha256" if self.algorithm == "rsa" else b"ed25519-sha256"

    def txt_record(self) -> str:
        """The TXT value to publish at SELECTOR._domainkey.DOMAIN."""
        return f"v=DKIM1; k={self.algorithm}; p={self.public}"


def key_directory(config: mailcloak_settings.Config | None = None) -> Path:
    return (config or mailcloak_settings.get()).data_path / "dkim"


def _key_path(directory: Path, selector: str) -> Path:
    return directory / f"{selector}.pem"


def _generate_pem(selector: str) -> bytes:
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if selector == RSA_SELECTOR:
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        key_format = serialization.PrivateFormat.TraditionalOpenSSL
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        key_format = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, key_format,
                             serialization.NoEncryption())


def _write_new(path: Path, data: bytes) -> bool:
    """Write `path` (mode 0600) unless it exists; another process may race us to it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)  # atomic, and fails if the key already exists
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def create_keys(directory: Path) -> list[tuple[str, bool]]:
    """Create whichever keys are missing; existing keys are never replaced.

    Returns (selector, created) for both keys."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        results = []
        for selector in (RSA_SELECTOR, ED25519_SELECTOR):
            path = _key_path(directory, selector)
            created = not path.exists() and _write_new(path, _generate_pem(selector))
            results.append((selector, created))
    except OSError as exc:
        raise DkimKeyError(f"cannot write DKIM keys in {directory}: {exc}") from None
    return results


def _load_key(path: Path, selector: str) -> DkimKey:
    try:
        pem = path.read_bytes()
        key = serialization.load_pem_private_key(pem, password=None)
    except FileNotFoundError:
        raise DkimKeyError(f"DKIM key {path} is missing: run `mailcloak dkim init`") from None
    except (OSError, ValueError, TypeError) as exc:
        raise DkimKeyError(f"DKIM key {path} is unreadable: {exc}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        return DkimKey(selector, "rsa", private, base64.b64encode(public_der).decode())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = serialization.Encoding.Raw
        seed = key.private_bytes(raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        public_raw = key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
        return DkimKey(selector, "ed25519", base64.b64encode(seed),
                       base64.b64encode(public_raw).decode())
    raise DkimKeyError(f"DKIM key {path} is neither RSA nor Ed25519")


def load_keys(directory: Path) -> tuple[DkimKey, DkimKey]:
    """The RSA and the Ed25519 key, read from disk."""
    return (_load_key(_key_path(directory, RSA_SELECTOR), RSA_SELECTOR),
            _load_key(_key_path(directory, ED25519_SELECTOR), ED25519_SELECTOR))


_loaded: dict[Path, tuple[DkimKey, DkimKey]] = {}
_loading = threading.Lock()


def signing_keys(config: mailcloak_settings.Config | None = None) -> tuple[DkimKey, DkimKey]:
    """The keys to sign with, read once per process (created first in local mode)."""
    config = config or mailcloak_settings.get()
    directory = key_directory(config)
    with _loading:
        keys = _loaded.get(directory)
        if keys is None:
            if not config.is_production:
                create_keys(directory)
            keys = _loaded[directory] = load_keys(directory)
    return keys


def forget_loaded_keys() -> None:
    """Make the next signing_keys() read the files again (after `dkim init`, in tests)."""
    with _loading:
        _loaded.clear()


def init_command(config: mailcloak_settings.Config | None = None) -> str:
    """`mailcloak dkim init`: create missing keys; says what was created or kept."""
    config = config or mailcloak_settings.get()
    directory = key_directory(config)
    lines = [f"{'created' if created else 'kept existing'} DKIM key {selector} in "
             f"{_key_path(directory, selector)}" for selector, created in create_keys(directory)]
    forget_loaded_keys()
    load_keys(directory)  # proves both keys are usable
    lines.append("publish the DNS records that `mailcloak dns` prints")
    return "\n".join(lines)
