"""TLS for the SMTP server's STARTTLS: the configured certificate, or in local mode a
self-signed one made once for MAILCLOAK_HOSTNAME under DATA_DIR/tls/."""

from __future__ import annotations

import datetime
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailcloak.settings import Config, ConfigError

SELF_SIGNED_VALIDITY = datetime.timedelta(days=3650)


def server_context(config: Config) -> ssl.SSLContext:
    """An SSL context for the server side of STARTTLS."""
    certificate, key = certificate_files(config)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certificate, key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ConfigError(f"MAILCLOAK_TLS_CERT={str(certificate)!r}: cannot load the "
                          f"certificate and key: {reason}") from None
    return context


def certificate_files(config: Config) -> tuple[Path, Path | None]:
    """(certificate, key) to load; the key is None when it is in the certificate file."""
    if config.tls_cert:
        return Path(config.tls_cert), Path(config.tls_key)
    if config.is_production:
        raise ConfigError("MAILCLOAK_TLS_CERT: production mode needs a TLS certificate for SMTP")
    return ensure_self_signed(config.data_path / "tls", config.hostname), None


def ensure_self_signed(directory: Path, hostname: str) -> Path:
    """A PEM file holding a private key and a self-signed certificate for `hostname`, made
    on first use. Key and certificate share one file, written by atomic rename, so several
    server processes starting at once never load a key with another process's certificate."""
    path = directory / f"{hostname}.pem"
    if path.exists():
        return path
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = directory / f".{hostname}.{os.getpid()}.tmp"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(_self_signed_pem(hostname))
        os.replace(partial, path)
    except OSError as exc:
        raise ConfigError(f"MAILCLOAK_DATA_DIR: cannot write a TLS certificate to "
                          f"{str(directory)!r}: {exc.strerror}") from None
    return path


def _self_signed_pem(hostname: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + SELF_SIGNED_VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem + certificate.public_bytes(serialization.Encoding.PEM)
