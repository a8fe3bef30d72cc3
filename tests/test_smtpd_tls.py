"""STARTTLS: the configured certificate (verified by the client), or a self-signed one in
local mode."""

import os
import smtplib
import ssl

import pytest
import trustme
from cryptography import x509

from mailcloak import settings as mailcloak_settings
from mailcloak.mail import tls
from mailcloak.mail.models import QueuedMessage
from mailcloak.mail.smtpd import ServerOptions
from mailcloak.settings import ConfigError
from tests.support.smtp_client import RunningServer

MESSAGE = b"From: a@sender.test\r\nSubject: over TLS\r\n\r\nbody\r\n"

pytestmark = pytest.mark.usefixtures("lenient_spam_thresholds")


def config_with(**settings: str) -> mailcloak_settings.Config:
    env = dict(os.environ)
    env.update({f"MAILCLOAK_{name}": value for name, value in settings.items()})
    return mailcloak_settings.load(env)


@pytest.fixture
def ca():
    return trustme.CA()


@pytest.fixture
def tls_config(ca, tmp_path):
    issued = ca.issue_cert("mail.alias.test", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return config_with(TLS_CERT=str(cert), TLS_KEY=str(key))


@pytest.mark.django_db(transaction=True)
def test_starttls_with_a_verified_certificate(ca, tls_config, alias):
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with RunningServer(ServerOptions.from_config(tls_config)) as server, \
            smtplib.SMTP(server.host, server.port) as client:
        client.ehlo("client.test")
        assert client.has_extn("starttls")
        assert client.starttls(context=client_context)[0] == 220
        assert client.sock.getpeercert()["subjectAltName"][0] == ("DNS", "mail.alias.test")
        client.ehlo("client.test")
        assert not client.has_extn("starttls")
        assert client.docmd("STARTTLS")[0] == 503
        client.sendmail("a@sender.test", [alias.address], MESSAGE)
    assert QueuedMessage.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_client_refuses_a_certificate_it_does_not_trust(tls_config):
    untrusting = ssl.create_default_context()
    trustme.CA().configure_trust(untrusting)
    with RunningServer(ServerOptions.from_config(tls_config)) as server, \
            smtplib.SMTP(server.host, server.port) as client:
        client.ehlo("client.test")
        with pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(context=untrusting)


@pytest.mark.django_db(transaction=True)
def test_transaction_state_is_reset_by_starttls(ca, tls_config, alias):
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with RunningServer(ServerOptions.from_config(tls_config)) as server, \
            smtplib.SMTP(server.host, server.port) as client:
        client.ehlo("client.test")
        client.mail("a@sender.test")
        client.starttls(context=client_context)
        assert client.docmd("RCPT TO:<" + alias.address + ">")[0] == 503  # EHLO first
        client.ehlo("client.test")
        assert client.docmd("RCPT TO:<" + alias.address + ">")[0] == 503  # MAIL first


def test_self_signed_certificate_made_once_in_local_mode(tmp_path):
    config = config_with(DATA_DIR=str(tmp_path), HOSTNAME="mx.local.test", TLS_CERT="",
                         TLS_KEY="")
    certificate, key = tls.certificate_files(config)
    assert key is None
    assert certificate == tmp_path.resolve() / "tls" / "mx.local.test.pem"
    assert certificate.stat().st_mode & 0o077 == 0  # it holds the private key
    first = certificate.read_bytes()
    tls.server_context(config)
    assert certificate.read_bytes() == first
    parsed = x509.load_pem_x509_certificate(first)
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["mx.local.test"]


@pytest.mark.django_db(transaction=True)
def test_self_signed_certificate_serves_starttls(tmp_path):
    config = config_with(DATA_DIR=str(tmp_path), TLS_CERT="", TLS_KEY="")
    generated = tls.certificate_files(config)[0]
    client_context = ssl.create_default_context(cafile=str(generated))
    client_context.check_hostname = False  # issued to mail.alias.test, reached as 127.0.0.1
    with RunningServer(ServerOptions.from_config(config)) as server, \
            smtplib.SMTP(server.host, server.port) as client:
        client.ehlo("client.test")
        assert client.starttls(context=client_context)[0] == 220
        assert client.noop()[0] == 250


def test_unreadable_certificate_names_the_setting(tmp_path):
    config = config_with(TLS_CERT=str(tmp_path / "missing.pem"),
                         TLS_KEY=str(tmp_path / "missing.key"))
    with pytest.raises(ConfigError, match="MAILCLOAK_TLS_CERT="):
        tls.server_context(config)
